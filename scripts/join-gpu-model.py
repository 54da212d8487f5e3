"""Join the GPU phase's weight shards (scripts/pretrain-gpu.sh) with the committed model's
config and tokenizer into one plain HF folder.

Usage: python scripts/join-gpu-model.py SHARDS_DIR OUT_DIR [BASE_DIR]
BASE_DIR (default reverie/assets/world) gives config, tokenizer and chat template; SHARDS_DIR
gives model-*.safetensors, their index and pretrain.json.
"""

import shutil
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM


def main(shards: Path, out: Path, base: Path):
    if out.exists():
        sys.exit(f"{out} exists; pass a new directory")
    tmp = out.with_name(out.name + ".parts")
    shutil.copytree(base, tmp)
    (tmp / "model.safetensors").unlink()
    for f in list(shards.glob("model*.safetensors*")) + [shards / "pretrain.json"]:
        shutil.copy(f, tmp / f.name)
    AutoModelForCausalLM.from_pretrained(tmp).save_pretrained(out, safe_serialization=True)
    for f in base.iterdir():
        if f.name not in ("model.safetensors", "config.json", "generation_config.json", "pretrain.json"):
            shutil.copy(f, out / f.name)
    shutil.copy(shards / "pretrain.json", out / "pretrain.json")
    shutil.rmtree(tmp)
    print(f"wrote {out}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (2, 3):
        sys.exit(__doc__)
    main(Path(args[0]), Path(args[1]), Path(args[2] if len(args) == 3 else "reverie/assets/world"))
