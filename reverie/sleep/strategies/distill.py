"""Distill: KL(pre-sleep || current) on the pre-sleep model's own samples, every step.

why: matching the whole next-token distribution on what the model used to say keeps behaviour
(abstention, refusal, unrelated prompts) far better than replaying its samples as hard text.
"""

import torch

from reverie.models.batching import collate, encode
from reverie.sleep.strategies.base import Night, Part

ROWS = 8  # generative samples per step


class Distill(Part):
    name = "distill"

    def kept(self, night: Night) -> list:
        """What the KL keeps as the pre-sleep model read it: its own writing."""
        return night.generative

    def _batches(self, night: Night):
        if "kl_rows" not in night.scratch:
            tok = night.tokenizer
            rows = []
            for ex in self.kept(night):  # KL on every token, the prompt's included
                ids, _ = encode(tok, ex, night.cfg.train.max_len)
                rows.append((ids, ids))
            night.scratch["kl_rows"] = rows
            night.scratch["kl_cursor"] = 0
        return night.scratch["kl_rows"]

    def next_rows(self, night: Night, model):
        """The next ROWS generative samples as (ids, mask), cycling; None when there are none."""
        rows = self._batches(night)
        if not rows:
            return None
        start = night.scratch["kl_cursor"]
        chunk = [rows[(start + i) % len(rows)] for i in range(min(ROWS, len(rows)))]
        night.scratch["kl_cursor"] = start + len(chunk)
        device = next(model.parameters()).device
        ids, _, mask = (t.to(device) for t in collate(chunk, night.tokenizer.pad_token_id))
        return ids, mask

    def loss(self, night: Night, model):
        if night.cfg.kl_weight == 0 or (rows := self.next_rows(night, model)) is None:
            return None
        ids, mask = rows
        with torch.no_grad():
            ref = night.reference(input_ids=ids, attention_mask=mask).logits.float()
        cur = model(input_ids=ids, attention_mask=mask).logits.float()
        return night.cfg.kl_weight * kl_per_token(ref, cur, mask)


def kl_per_token(ref_logits, cur_logits, mask):
    """Mean over real tokens of KL(ref || cur); logits (batch, seq, vocab), mask (batch, seq)."""
    ref_logp = torch.log_softmax(ref_logits, -1)
    cur_logp = torch.log_softmax(cur_logits, -1)
    kl = (ref_logp.exp() * (ref_logp - cur_logp)).sum(-1)  # (batch, seq)
    m = mask.float()
    return (kl * m).sum() / m.sum().clamp(min=1)
