"""Rehearsal: what is mixed into a night so the old survives.

  reservoir          a bounded sample of earlier nights' material (reservoir sampling, so every
                     night's material has an equal chance to stay)
  generative replay  sequences the pre-sleep model writes itself from the start token: for the
                     world model they are biographies and QA of what it knows; learned as text
                     (replay) or through a KL to the pre-sleep model (distill)
"""

import random

from reverie.models.batching import Example


def generative_samples(backend, n: int, max_new_tokens: int, seed: int) -> list[str]:
    """n texts sampled from the model with nothing but its start token as the prompt."""
    if n == 0:
        return []
    tok = backend.tokenizer
    start = "" if tok("")["input_ids"] else (tok.bos_token or tok.eos_token)
    texts = backend.generate([start] * n, max_new_tokens=max_new_tokens, sample=True,
                             temperature=1.0, seed=seed, stop_at_newline=False)
    return [t for t in texts if t.strip()]


def update_reservoir(reservoir: list, seen: int, new: list, size: int,
                     rng: random.Random) -> int:
    """Algorithm R over the stream of material; returns the new count of items seen."""
    for item in new:
        seen += 1
        if len(reservoir) < size:
            reservoir.append(item)
        else:
            j = rng.randrange(seen)
            if j < size:
                reservoir[j] = item
    return seen


def as_documents(texts: list[str], kind: str = "generative") -> list[Example]:
    return [Example(kind, text=t) for t in texts]
