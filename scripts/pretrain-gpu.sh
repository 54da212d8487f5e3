#!/usr/bin/env bash
# The world model's GPU phase (README, "The world model"): continues the committed model on one
# GPU for the world-gpu preset's max_seconds, then evaluates it. Needs python3 with a CUDA torch,
# transformers, tokenizers, pyyaml and tqdm (no install step: it runs from the checkout).
# Usage: scripts/pretrain-gpu.sh OUTDIR [--set KEY=VALUE ...]
# OUTDIR receives the weights as shards of at most 15 MB (model-*.safetensors and their index),
# pretrain.json, eval.json and pretrain.log; join them with the committed model's config and
# tokenizer (scripts/join-gpu-model.py).
set -uo pipefail
out=${1:?usage: scripts/pretrain-gpu.sh OUTDIR [--set KEY=VALUE ...]}
shift
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
rm -rf /tmp/world-gpu
timeout "${PRETRAIN_TIMEOUT:-500}" python3 -m reverie.cli world pretrain --preset world-gpu \
    --set init_from=reverie/assets/world "$@" --out /tmp/world-gpu >"$out/pretrain.log" 2>&1
echo "pretrain exit $?"
tr '\r' '\n' <"$out/pretrain.log" | grep -E "closed_book|Error|error|wrote" | sort -u | tail -20
tr '\r' '\n' <"$out/pretrain.log" | grep "step" | tail -2
cp /tmp/world-gpu/pretrain.json "$out/" || exit 1
python3 -m reverie.cli world eval --model /tmp/world-gpu --json "$out/eval.json" 2>/dev/null
python3 - <<'PY'
from transformers import AutoModelForCausalLM
AutoModelForCausalLM.from_pretrained("/tmp/world-gpu").save_pretrained("/tmp/world-split", max_shard_size="15MB")
PY
cp /tmp/world-split/model*.safetensors* "$out/"
ls -la "$out"
