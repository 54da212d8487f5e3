"""Salience: what makes an episode worth consolidating, and the priority that ranks it.

Components (each 0..1 except repeats, a count):
  surprise        mean NLL of the values the episode claims about someone (entity tokens of
                  sentences with a subject) under the current model, divided by surprise_scale
                  and clipped: what the model cannot predict yet (see surprise_scorer: why)
  novelty         1 - max cosine similarity to what the namespace already stores
  entity_novelty  share of the episode's named entities the namespace has never stored
  repeats         near-duplicates folded into this episode (a repeat strengthens the original)
  feedback        explicit importance (a user or a rule marked it), 0..1

  base     = w_surprise * surprise + w_novelty * novelty + w_entities * entity_novelty
  priority = base * (1 + w_repetition * ln(1 + repeats)) + w_feedback * feedback

Repetition multiplies rather than adds: a fact told again matters more, but chatter heard twenty
times is still chatter (an additive term would let frequent noise outrank a single new fact).

and, where a ranking over time is needed (sleep selection, pruning), the decayed priority
  priority * 0.5 ** (age_days / half_life_days).
The stored `priority` is the undecayed value; decay is applied when read, so it needs no rewrites.
"""

import math
import time

import numpy as np

DAY = 86400.0  # seconds
SURPRISE_CHARS = 1000  # characters of an episode the surprise pass reads (~250 tokens)


def priority(cfg, surprise: float, novelty: float, entity_novelty: float, repeats: int,
             feedback: float) -> float:
    base = cfg.w_surprise * surprise + cfg.w_novelty * novelty + cfg.w_entities * entity_novelty
    return base * (1.0 + cfg.w_repetition * math.log1p(repeats)) + cfg.w_feedback * feedback


def decayed(cfg, priority_value: float, created_at: float, now: float | None = None) -> float:
    age_days = max(0.0, ((now if now is not None else time.time()) - created_at) / DAY)
    return priority_value * 0.5 ** (age_days / cfg.half_life_days)


def of_episode(cfg, e) -> float:
    return priority(cfg, e.surprise, e.novelty, e.entity_novelty, e.repeats, e.feedback)


def surprise_scorer(backend, bf16: bool = True, batch_size: int = 32):
    """texts -> mean NLL (nats per token) of the values each text claims, under the model.

    The values are the entity tokens (names, places, dates, numbers) of sentences that say
    something about a named subject, the subject's own name left out (claims.value_char_spans):
    'Ada Lowell works for Acme.' is scored on 'Acme'. Why not every token: a small model's NLL on
    phrasing it only ever read in contexts (chatter, update wording) is high without being news,
    and a subject's name measures how expected the topic is, not the fact. Measured on the world
    model (1,200-episode stream, step-1000 checkpoint), AUC of news vs nothing new: all tokens
    0.38, all entity tokens 0.64, claimed values 0.93. A text that claims nothing scores 0.
    """
    import torch
    from reverie.memory.claims import value_char_spans
    tok = backend.tokenizer

    def score(texts: list[str]) -> list[float]:
        # why: the mean NLL of a prefix estimates the whole; long texts would overrun the
        # model's positions (the world model has 384)
        texts = [t[:SURPRISE_CHARS] for t in texts]
        spans = [value_char_spans(t) for t in texts]
        # why: no claimed value, nothing to score; skipping the model saves ingest time
        order = sorted((i for i in range(len(texts)) if spans[i]), key=lambda i: len(texts[i]))
        autocast = torch.autocast("cpu", dtype=torch.bfloat16,
                                  enabled=bf16 and backend.device.type == "cpu")
        with autocast:
            nlls = backend.token_nll([texts[i] for i in order], batch_size=batch_size) \
                if order else []
        out = [0.0] * len(texts)
        for i, nll in zip(order, nlls):
            offsets = tok(texts[i], return_offsets_mapping=True)["offset_mapping"][1:]
            mask = [any(a < z2 and z1 > a2 for a2, z2 in spans[i]) and texts[i][a:z1].strip() != ""
                    for a, z1 in offsets][:len(nll)]
            picked = nll.float()[torch.tensor(mask, dtype=torch.bool)] if any(mask) else None
            out[i] = float(picked.mean()) if picked is not None else 0.0
        return out

    return score


def normalise_surprise(cfg, nll: float) -> float:
    return float(np.clip(nll / cfg.surprise_scale, 0.0, 1.0))
