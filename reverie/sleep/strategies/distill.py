"""Distill: KL(pre-sleep || current) on the pre-sleep model's own samples, every step.

why: matching the whole next-token distribution on what the model used to say keeps behaviour
(abstention, refusal, unrelated prompts) far better than replaying its samples as hard text.
"""

from dataclasses import dataclass

import torch

from reverie.config import field
from reverie.models.batching import collate, encode
from reverie.sleep.strategies.base import Night, Part

ROWS = 8  # generative samples per step


@dataclass
class DistillConfig:
    # why 3: quick preset (world model, cls, lr 8e-4, seed 0): locality 0.85 with weight 1,
    # 0.89 with 3
    kl_weight: float = field(3.0, "weight of the KL to the pre-sleep model on its own writing")

    def __post_init__(self):
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")


class Distill(Part):
    name = "distill"
    config = DistillConfig

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
        weight = self.settings(night).kl_weight
        if weight == 0 or (rows := self.next_rows(night, model)) is None:
            return None
        ids, mask = rows
        with torch.no_grad():
            ref = night.reference(input_ids=ids, attention_mask=mask).logits.float()
        cur = model(input_ids=ids, attention_mask=mask).logits.float()
        return weight * kl_per_token(ref, cur, mask)


def kl_per_token(ref_logits, cur_logits, mask):
    """Mean over real tokens of KL(ref || cur); logits (batch, seq, vocab), mask (batch, seq)."""
    ref_logp = torch.log_softmax(ref_logits, -1)
    cur_logp = torch.log_softmax(cur_logits, -1)
    kl = (ref_logp.exp() * (ref_logp - cur_logp)).sum(-1)  # (batch, seq)
    m = mask.float()
    return (kl * m).sum() / m.sum().clamp(min=1)
