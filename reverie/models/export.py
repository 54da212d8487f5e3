"""A model as a plain HF folder anyone loads with transformers alone, and how far a plain copy
of a scoped model strays from it.

Locality here: the share of GENERIC_PROMPTS (neutral text that names no one, so no night's
scope should fire on it) whose greedy continuation is the same for two models. A scoped
model's change stays off such text; the merged weights apply it everywhere, and this measures
what that costs.
"""

import copy
import os
import shutil
import uuid
from pathlib import Path

from reverie.errors import ReverieError

# neutral prompts: no person, place or organisation a night could have learned about
GENERIC_PROMPTS = (
    "The weather today is", "A good breakfast has", "The train was late because",
    "To make a cup of tea, first", "The meeting is about", "My favourite colour is",
    "The library opens at", "In the garden there are", "The best way to learn is",
    "After lunch we usually", "The coffee machine", "On weekends people often",
    "A short story begins with", "The report was finished", "Water boils when",
    "The office is quiet because",
)
CONTINUATION_TOKENS = 16


def check_target(out) -> Path:
    """An export target must be new or an empty folder (nothing is ever overwritten)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReverieError(f"--out {str(out)!r} exists and is not empty; pass a new directory")
    if not out.parent.is_dir():
        raise ReverieError(f"--out parent {str(out.parent)!r} does not exist; create it first")
    return out


def plain_model(model):
    """The model transformers can hold alone: adapters merged into a copy; hooks a scope put on
    the model are left behind (its weights already hold every night's change)."""
    from peft import PeftModel
    if isinstance(model, PeftModel):
        return copy.deepcopy(model).merge_and_unload()
    return model


def write_folder(model, tokenizer, out, extra: dict[str, str]) -> Path:
    """Write config, safetensors, tokenizer, generation config and the `extra` files (name ->
    text) into `out`, atomically: a temporary folder beside it, renamed into place."""
    out = check_target(out)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        for name, text in extra.items():
            (tmp / name).write_text(text)
        if out.exists():
            out.rmdir()                 # empty (checked): the rename takes its place
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def locality(a, b, prompts=GENERIC_PROMPTS, max_new_tokens: int = CONTINUATION_TOKENS) -> float:
    """Share of `prompts` whose greedy continuation is the same for Backends a and b."""
    kw = dict(max_new_tokens=max_new_tokens, stop_at_newline=False)
    same = sum(x == y for x, y in zip(a.generate(list(prompts), **kw),
                                      b.generate(list(prompts), **kw)))
    return round(same / len(prompts), 4)
