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

    The same NLL as backend.token_nll (tests/test_memory_cli.py holds them equal), computed only
    where a value is predicted, with each text tokenized once (the offsets give the values'
    tokens) and the batches run on parallel.map_batches's workers.
    """
    import torch
    from reverie.memory import parallel
    from reverie.memory.claims import value_char_spans
    tok, model = backend.tokenizer, backend.model
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    def nll_of_values(batch) -> list[float]:
        """[(ids, picked)] -> mean NLL of each text's picked tokens; picked: indexes >= 1."""
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (row, _) in enumerate(batch):
            ids[r, :len(row)] = torch.tensor(row)
            mask[r, :len(row)] = 1
        rows = torch.tensor([r for r, (_, picked) in enumerate(batch) for _ in picked])
        cols = torch.tensor([j for _, picked in batch for j in picked])
        autocast = torch.autocast("cpu", dtype=torch.bfloat16,
                                  enabled=bf16 and backend.device.type == "cpu")
        with torch.inference_mode(), autocast:
            logits = model(input_ids=ids.to(backend.device),
                           attention_mask=mask.to(backend.device)).logits  # (batch, seq, vocab)
            # why: token j is predicted at position j - 1; only the values' tokens are needed
            picked = logits[rows, cols - 1].float()                            # (picked, vocab)
            nll = torch.nn.functional.cross_entropy(picked, ids[rows, cols].to(backend.device),
                                                    reduction="none").cpu()
        sums = torch.zeros(len(batch)).index_add_(0, rows, nll)
        return [float(sums[r]) / len(p) for r, (_, p) in enumerate(batch)]

    def score(texts: list[str]) -> list[float]:
        # why: the mean NLL of a prefix estimates the whole; long texts would overrun the
        # model's positions (the world model has 384)
        texts = [t[:SURPRISE_CHARS] for t in texts]
        out, todo = [0.0] * len(texts), []
        for i, text in enumerate(texts):
            spans = value_char_spans(text)
            if not spans:           # why: no claimed value, nothing to score; skip the model
                continue
            enc = tok(text, return_offsets_mapping=True)
            picked = [j for j, (a, z) in enumerate(enc["offset_mapping"]) if j >= 1 and
                      any(a < z2 and z > a2 for a2, z2 in spans) and text[a:z].strip() != ""]
            if picked:
                todo.append((i, enc["input_ids"], picked))
        # why: sorted by length, each batch pads little
        todo.sort(key=lambda t: len(t[1]))
        batches = [todo[s:s + batch_size] for s in range(0, len(todo), batch_size)]
        means = parallel.map_batches(nll_of_values, [[(ids, p) for _, ids, p in b]
                                                     for b in batches])
        for b, m in zip(batches, means):
            for (i, _, _), value in zip(b, m):
                out[i] = value
        return out

    return score


def normalise_surprise(cfg, nll: float) -> float:
    return float(np.clip(nll / cfg.surprise_scale, 0.0, 1.0))
