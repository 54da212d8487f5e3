"""Online EWC: a quadratic pull towards the weights after the last night, weighted by a diagonal
Fisher refreshed each night (old nights decay by `ewc.decay`)."""

from dataclasses import dataclass

import torch

from reverie.config import field
from reverie.models.batching import collate, encode
from reverie.sleep.strategies.base import Night, Part


@dataclass
class EWCConfig:
    weight: float = field(1e5, "penalty weight (online EWC, diagonal Fisher normalised to mean 1)")
    decay: float = field(0.7, "how much of the old Fisher survives each night")

    def __post_init__(self):
        if self.weight < 0 or not 0 <= self.decay <= 1:
            raise ValueError(f"weight must be >= 0 and decay in [0, 1], got {self.weight}, "
                             f"{self.decay}")


def diagonal_fisher(model, tokenizer, examples: list, max_len: int, rows: int = 8) -> dict:
    """Mean squared gradient of the LM loss over mini-batches, normalised to mean 1."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    encoded = [encode(tokenizer, e, max_len) for e in examples]
    batches = [encoded[i:i + rows] for i in range(0, len(encoded), rows)]
    was_training = model.training
    model.eval()
    for chunk in batches:
        ids, labels, mask = collate(chunk, tokenizer.pad_token_id)
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach() ** 2 / len(batches)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    mean = torch.cat([f.flatten() for f in fisher.values()]).mean().clamp(min=1e-12)
    return {n: f / mean for n, f in fisher.items()}


def ewc_penalty(model, fisher: dict, anchor: dict):
    """mean_i F_i (theta_i - theta*_i)^2 / 2 over the anchored parameters (a mean, not a sum,
    so the weight does not depend on the model's size)."""
    total, count = 0.0, 0
    for n, p in model.named_parameters():
        if n in fisher:
            total = total + (fisher[n] * (p - anchor[n]) ** 2).sum()
            count += p.numel()
    return total / (2 * max(count, 1))


class EWC(Part):
    name = "ewc"
    config = EWCConfig

    def wrap(self, night: Night, model):
        state = night.state
        if state.fisher is None:  # first night: importance of what the model knows now
            docs = list(night.generative)
            state.fisher = diagonal_fisher(model, night.tokenizer, docs, night.cfg.train.max_len)
            state.anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
        return model

    def loss(self, night: Night, model):
        return self.settings(night).weight * ewc_penalty(model, night.state.fisher, night.state.anchor)

    def finish(self, night: Night, model):
        state, cfg = night.state, night.cfg
        docs = night.material[:256] + list(night.generative)
        new = diagonal_fisher(model, night.tokenizer, docs, cfg.train.max_len)
        state.fisher = {n: self.settings(night).decay * state.fisher[n] + new[n] for n in new}
        state.anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
        return model
