"""Pretrain the world model on the base corpus: tokenizer, model, one readable training loop.

setup (world, corpus, tokenizer, model) -> fit (bucketed batches, AdamW, warmup + cosine, bf16
autocast) with a small probe evaluation every `eval_every` steps -> save an HF directory plus
pretrain.json (config, history of probe accuracy during training, time, tokens).

Two sources of batches: a fixed corpus of `n_examples`, encoded up front (the CPU phases), or,
with `workers` > 0, an endless stream: worker processes draw fresh shards of the corpus (each
shard its own seed, so every open-book stranger is new) and encode and collate them while the
model trains (a GPU consumes examples faster than one process can render them). The schedule
then runs over `n_examples` examples or `max_seconds`, whichever ends first.
"""

import dataclasses
import json
import math
import multiprocessing
import os
import random
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import torch

from reverie.config import field, positive
from reverie.errors import ReverieError
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
    device: str = field("auto", "auto (cuda when there is one), cpu or cuda")
    workers: int = field(0, "0: one fixed corpus encoded up front; N > 0: N processes stream "
                            "fresh shards of the corpus while training runs")
    shard_examples: int = field(2000, "examples per streamed shard (workers > 0)")
    max_seconds: float = field(0.0, "end the schedule after this many seconds of training, "
                                    "whichever comes first with n_examples (0: no limit)")

    def __post_init__(self):
        positive(self, "n_examples", "vocab_size", "hidden", "layers", "intermediate", "max_len",
                 "batch_tokens", "lr", "epochs", "eval_every", "eval_people")
        if self.hidden % 32:
            raise ValueError(f"hidden must be a multiple of 32 (head size), got {self.hidden}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.workers < 0 or self.shard_examples < 1 or self.max_seconds < 0:
            raise ValueError("workers and max_seconds must be >= 0, shard_examples >= 1")


def pretrain(cfg: PretrainConfig, out_dir: Path, progress=None) -> dict:
    """Build and pretrain the world model; write it to out_dir. Returns the run summary."""
    progress = progress or (lambda **kw: None)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ReverieError("device=cuda but torch sees no GPU; pass --set device=cpu")
    # 1. setup: the world, a tokenizer and a model (fresh, or the ones of init_from)
    world = World.build(cfg.world)
    previous = None
    if cfg.init_from:
        start_from = Backend.load(cfg.init_from, device="cpu")
        summary = Path(cfg.init_from) / "pretrain.json"
        previous = json.loads(summary.read_text()) if summary.is_file() else None
        tokenizer, model = start_from.tokenizer, start_from.model
    else:
        sample = base_corpus(world, min(cfg.n_examples, 40_000), seed=cfg.seed, cfg=cfg.corpus)
        tokenizer = train_tokenizer((e.rendered() for e in sample), cfg.vocab_size)
        model = build_model(tokenizer, cfg.hidden, cfg.layers, cfg.intermediate, cfg.max_len,
                            cfg.seed)
    suites = build_suites(world, seed=cfg.seed + 1, n_people=cfg.eval_people, per_person=2)
    suites.pop("closed_book_train")
    if cfg.workers:  # before CUDA starts: the workers are forked
        source, total = _streamed_batches(cfg, world, tokenizer), None
    else:
        source, total = _corpus_batches(cfg, world, tokenizer, rng)
    model.to(device)

    # 2. fit
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.98), fused=device == "cuda")
    history, tokens, seen, start, loss_avg = [], 0, 0, time.time(), None

    def done_share(step):  # how far the schedule has come: steps, examples or seconds
        share = step / total if total else seen / cfg.n_examples
        return max(share, (time.time() - start) / cfg.max_seconds if cfg.max_seconds else 0.0)

    def lr_at(step):  # linear warmup, cosine decay to min_lr_ratio
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        t = min(1.0, done_share(step))
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))

    model.train()
    report_every = 1 if device == "cpu" else 25  # why: reading the loss waits for the GPU
    loss_ema = torch.zeros((), device=device)
    for step, (ids, labels, mask) in enumerate(source):
        tokens += int(mask.sum())
        seen += len(ids)
        ids, labels, mask = (t.to(device, non_blocking=True) for t in (ids, labels, mask))
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_ema = loss.detach() if step == 0 else 0.98 * loss_ema + 0.02 * loss.detach()
        last = done_share(step + 1) >= 1 or step + 1 == cfg.stop_at_step
        if step % report_every == 0 or last:
            loss_avg = loss_ema.item()
            progress(step=step + 1, total=total, loss=loss_avg, tokens=tokens,
                     seconds=time.time() - start)
        if (step + 1) % cfg.eval_every == 0 or last:
            model.eval()
            scores = evaluate(Backend(model, tokenizer), suites)
            scores.pop("samples")
            model.train()
            history.append({"step": step + 1, "tokens": tokens, "examples": seen,
                            "loss": round(loss_avg, 4), "seconds": round(time.time() - start, 1),
                            **{k: round(v, 4) for k, v in scores.items() if isinstance(v, float)}})
            progress(eval=history[-1])
            _save(model, tokenizer, out_dir, cfg, history, tokens, time.time() - start, previous,
                  device)
        if last:
            break
    source.close()
    return json.loads((out_dir / "pretrain.json").read_text())


def _corpus_batches(cfg, world, tokenizer, rng):
    """A fixed corpus, encoded up front, in length-bucketed batches over cfg.epochs."""
    corpus = base_corpus(world, cfg.n_examples, seed=cfg.seed, cfg=cfg.corpus)
    encoded = [encode(tokenizer, e, cfg.max_len) for e in corpus]
    lengths = [len(ids) for ids, _ in encoded]
    plan = [b for epoch in range(math.ceil(cfg.epochs)) for b in batches(lengths, cfg.batch_tokens, rng)]
    plan = plan[:int(len(plan) / math.ceil(cfg.epochs) * cfg.epochs)]

    def gen():
        for batch in plan:
            yield collate([encoded[i] for i in batch], tokenizer.pad_token_id)
    return gen(), len(plan)


_shard_state = {}  # per worker process: the world, tokenizer and config it renders shards with


def _shard_init(cfg, world, tokenizer):
    torch.set_num_threads(1)
    _shard_state.update(cfg=cfg, world=world, tokenizer=tokenizer)


def _shard(index: int) -> list:
    """One shard of fresh examples (seed = the run's seed and the shard's index), encoded and
    collated into length-bucketed batches."""
    cfg, world, tokenizer = (_shard_state[k] for k in ("cfg", "world", "tokenizer"))
    seed = cfg.seed * 1_000_003 + index
    corpus = base_corpus(world, cfg.shard_examples, seed=seed, cfg=cfg.corpus)
    encoded = [encode(tokenizer, e, cfg.max_len) for e in corpus]
    plan = batches([len(ids) for ids, _ in encoded], cfg.batch_tokens, random.Random(seed))
    return [collate([encoded[i] for i in b], tokenizer.pad_token_id) for b in plan]


def _streamed_batches(cfg, world, tokenizer):
    """Batches from shards rendered by cfg.workers processes, in shard order (deterministic),
    with at most two shards per worker in flight so memory stays bounded. The pool starts here,
    before the caller moves the model to a GPU, so the forked workers hold no CUDA state."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # why: the fork would deadlock a threaded tokenizer
    pool = multiprocessing.get_context("fork").Pool(cfg.workers, _shard_init,
                                                    (cfg, world, tokenizer))
    pending = deque(pool.apply_async(_shard, (i,)) for i in range(2 * cfg.workers))

    def gen():
        index = len(pending)
        try:
            while True:
                shard = pending.popleft().get()
                pending.append(pool.apply_async(_shard, (index,)))
                index += 1
                yield from shard
        finally:
            pool.terminate()
    return gen()


def _save(model, tokenizer, out_dir: Path, cfg, history, tokens, seconds, previous=None,
          device="cpu"):
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    summary = {"config": dataclasses.asdict(cfg), "history": history, "train_tokens": tokens,
               "train_seconds": round(seconds, 1),
               "n_params": sum(p.numel() for p in model.parameters()),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
               "previous_phase": previous}  # the run this one continued from, if any
    (out_dir / "pretrain.json").write_text(json.dumps(summary, indent=2))
