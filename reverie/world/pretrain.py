"""Pretrain the world model on the base corpus: tokenizer, model, one readable training loop.

setup (world, corpus, tokenizer, model) -> fit (bucketed batches, AdamW, warmup + cosine, bf16
autocast on CPU) with a small probe evaluation every `eval_every` steps -> save an HF directory
plus pretrain.json (config, history of probe accuracy during training, time, tokens).
"""

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from reverie.config import field, positive
from reverie.models.backend import Backend
from reverie.models.batching import batches, collate, encode
from reverie.models.world_model import build_model, train_tokenizer
from reverie.world.corpus import CorpusConfig, base_corpus
from reverie.world.people import World, WorldConfig
from reverie.world.probes import build_suites, evaluate


@dataclass
class PretrainConfig:
    world: WorldConfig = field(WorldConfig(), "sizes of the synthetic world and its seed")
    corpus: CorpusConfig = field(CorpusConfig(), "the mix of example kinds")
    n_examples: int = field(150_000, "examples in the base corpus (about 65 tokens each)")
    vocab_size: int = field(4096, "BPE vocabulary size")
    hidden: int = field(256, "model width")
    layers: int = field(6, "transformer blocks")
    intermediate: int = field(768, "MLP width")
    max_len: int = field(384, "longest training sequence, tokens")
    batch_tokens: int = field(4096, "padded tokens per optimiser step")
    lr: float = field(1.5e-3, "peak learning rate")
    warmup_steps: int = field(150, "linear warmup steps")
    min_lr_ratio: float = field(0.05, "final learning rate as a share of the peak")
    weight_decay: float = field(0.01, "AdamW weight decay")
    epochs: float = field(1.0, "passes over the corpus")
    eval_every: int = field(250, "steps between probe evaluations")
    eval_people: int = field(40, "people per probe suite in those evaluations")
    bf16: bool = field(True, "bf16 autocast (about 1.8x faster on CPU than fp32)")
    seed: int = field(0, "seed of the corpus, the model's init and the batch order")
    stop_at_step: int = field(0, "stop after this many steps, the schedule still planned for "
                                 "the whole run (0: run to the end)")
    init_from: str = field("", "continue from this model directory (its tokenizer and weights) "
                               "instead of a fresh tokenizer and model; '' = from scratch")

    def __post_init__(self):
        positive(self, "n_examples", "vocab_size", "hidden", "layers", "intermediate", "max_len",
                 "batch_tokens", "lr", "epochs", "eval_every", "eval_people")
        if self.hidden % 32:
            raise ValueError(f"hidden must be a multiple of 32 (head size), got {self.hidden}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


def pretrain(cfg: PretrainConfig, out_dir: Path, progress=None) -> dict:
    """Build and pretrain the world model; write it to out_dir. Returns the run summary."""
    progress = progress or (lambda **kw: None)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    # 1. setup: the world, its corpus, a tokenizer trained on it, a fresh model
    world = World.build(cfg.world)
    corpus = base_corpus(world, cfg.n_examples, seed=cfg.seed, cfg=cfg.corpus)
    previous = None
    if cfg.init_from:
        start_from = Backend.load(cfg.init_from, device="cpu")
        summary = Path(cfg.init_from) / "pretrain.json"
        previous = json.loads(summary.read_text()) if summary.is_file() else None
        tokenizer, model = start_from.tokenizer, start_from.model
    else:
        tokenizer = train_tokenizer((e.rendered() for e in corpus[:40_000]), cfg.vocab_size)
        model = build_model(tokenizer, cfg.hidden, cfg.layers, cfg.intermediate, cfg.max_len,
                            cfg.seed)
    encoded = [encode(tokenizer, e, cfg.max_len) for e in corpus]
    lengths = [len(ids) for ids, _ in encoded]
    suites = build_suites(world, seed=cfg.seed + 1, n_people=cfg.eval_people, per_person=2)
    suites.pop("closed_book_train")

    # 2. fit
    plan = [b for epoch in range(math.ceil(cfg.epochs)) for b in batches(lengths, cfg.batch_tokens, rng)]
    plan = plan[:int(len(plan) / math.ceil(cfg.epochs) * cfg.epochs)]
    total = len(plan)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.98))

    def lr_at(step):  # linear warmup, cosine decay to min_lr_ratio
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))

    history, tokens, start, loss_avg = [], 0, time.time(), None
    model.train()
    for step, batch in enumerate(plan):
        ids, labels, mask = collate([encoded[i] for i in batch], tokenizer.pad_token_id)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        progress(step=step + 1, total=total, loss=loss_avg, tokens=tokens,
                 seconds=time.time() - start)
        last = step + 1 == total or step + 1 == cfg.stop_at_step
        if (step + 1) % cfg.eval_every == 0 or last:
            model.eval()
            scores = evaluate(Backend(model, tokenizer), suites)
            scores.pop("samples")
            model.train()
            history.append({"step": step + 1, "tokens": tokens, "loss": round(loss_avg, 4),
                            "seconds": round(time.time() - start, 1),
                            **{k: round(v, 4) for k, v in scores.items()}})
            progress(eval=history[-1])
            _save(model, tokenizer, out_dir, cfg, history, tokens, time.time() - start, previous)
        if last:
            break
    return json.loads((out_dir / "pretrain.json").read_text())


def _save(model, tokenizer, out_dir: Path, cfg, history, tokens, seconds, previous=None):
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    summary = {"config": dataclasses.asdict(cfg), "history": history, "train_tokens": tokens,
               "train_seconds": round(seconds, 1),
               "n_params": sum(p.numel() for p in model.parameters()),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "previous_phase": previous}  # the run this one continued from, if any
    (out_dir / "pretrain.json").write_text(json.dumps(summary, indent=2))
