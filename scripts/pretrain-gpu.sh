#!/usr/bin/env bash
# The world model's GPU phase (README, "The world model"): continues the committed model on one
# GPU for the preset's max_seconds (PRESET, default world-gpu3: phase 10), then evaluates it on
# the probe seeds 0, 1 and 2. Two can run side by side (different OUTDIRs, --set workers=7). Needs python3 with a CUDA torch,
# transformers, tokenizers, pyyaml and tqdm (no install step: it runs from the checkout).
# Usage: scripts/pretrain-gpu.sh OUTDIR [--set KEY=VALUE ...]
# OUTDIR receives the weights as shards of at most 15 MB (model-*.safetensors and their index),
# pretrain.json, eval-s0.json .. eval-s2.json and pretrain.log; join them with the committed model's config and
# tokenizer (scripts/join-gpu-model.py).
set -uo pipefail
out=${1:?usage: scripts/pretrain-gpu.sh OUTDIR [--set KEY=VALUE ...]}
shift
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
tmp=/tmp/gpu-$(basename "$out")
rm -rf "$tmp" "$tmp-split"
timeout "${PRETRAIN_TIMEOUT:-500}" python3 -m reverie.cli world pretrain --preset "${PRESET:-world-gpu3}" \
    --set init_from=reverie/assets/world "$@" --out "$tmp" >"$out/pretrain.log" 2>&1
echo "pretrain exit $?"
tr '\r' '\n' <"$out/pretrain.log" | grep -E "closed_book|Error|error|wrote" | sort -u | tail -20
tr '\r' '\n' <"$out/pretrain.log" | grep "step" | tail -2
cp "$tmp/pretrain.json" "$out/" || exit 1
for s in 0 1 2; do
    python3 -m reverie.cli world eval --model "$tmp" --seed $s --json "$out/eval-s$s.json" >/dev/null 2>&1
done
python3 - "$tmp" "$out" <<'PY'
import json, sys
from transformers import AutoModelForCausalLM
AutoModelForCausalLM.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[1] + "-split", max_shard_size="15MB")
for s in range(3):
    e = json.load(open(f"{sys.argv[2]}/eval-s{s}.json"))
    print(sys.argv[2], "seed", s, {k: e[k] for k in ("closed_book", "open_book", "abstention", "known_abstain", "refusal")})
PY
cp "$tmp"-split/model*.safetensors* "$out/"
ls -la "$out"
