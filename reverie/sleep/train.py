"""The one training loop of a night. Strategies add to it through their hooks; none rewrites it."""

import math
import random
import re
import time

import torch

from reverie.models.batching import batches, collate, encode


def lr_at(step: int, total: int, peak: float, warmup_frac: float, min_ratio: float) -> float:
    """Re-warmed each night: linear warmup, then cosine decay to min_ratio * peak."""
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def trainable_parameters(model, pattern: str) -> tuple[list, list]:
    """The parameters the night may change: those that require grad and whose name matches
    `pattern` (all when empty); and those frozen for the night (to thaw afterwards)."""
    if not pattern:
        return [p for p in model.parameters() if p.requires_grad], []
    chosen, frozen = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if re.search(pattern, name):
            chosen.append(p)
        else:
            p.requires_grad_(False)
            frozen.append(p)
    if not chosen:
        raise ValueError(f"train.trainable={pattern!r} matches no trainable parameter; names "
                         f"look like {next(n for n, _ in model.named_parameters())!r}")
    return chosen, frozen


def train(model, material: list, parts: list, night, progress=None) -> dict:
    """Fit `model` in place on `material`, adding every part's loss term. Returns stats."""
    cfg = night.cfg.train
    progress = progress or (lambda **kw: None)
    tok = night.tokenizer
    encoded = [encode(tok, e, cfg.max_len) for e in material]
    rng = random.Random(night.cfg.seed + night.state.nights)
    lengths = [len(ids) for ids, _ in encoded]
    epochs = night.epochs
    rounds = math.ceil(epochs)
    plan = [b for _ in range(rounds) for b in batches(lengths, cfg.batch_tokens, rng)]
    plan = plan[:max(1, int(len(plan) / rounds * epochs))]
    params, frozen = trainable_parameters(model, cfg.trainable)
    opt = torch.optim.AdamW(params, lr=night.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    device = next(model.parameters()).device
    model.train()
    tokens, start, last = 0, time.time(), float("nan")
    for step, batch in enumerate(plan):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, len(plan), night.lr, cfg.warmup_frac, cfg.min_lr_ratio)
        ids, labels, mask = (t.to(device) for t in collate([encoded[i] for i in batch],
                                                            tok.pad_token_id))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            extra = [t for t in (p.loss(night, model) for p in parts) if t is not None]
            total = loss + sum(extra) if extra else loss
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
        last = loss.item()
        elapsed = time.time() - start
        progress(step=step + 1, total=len(plan), loss=last, tokens_per_s=tokens / max(elapsed, 1e-9))
    model.eval()
    for p in frozen:
        p.requires_grad_(True)
    seconds = time.time() - start
    return {"steps": len(plan), "train_tokens": tokens, "train_seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / max(seconds, 1e-9), 1), "final_loss": round(last, 4),
            "examples": len(material)}
