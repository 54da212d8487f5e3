"""A tiny model and night settings shared by the sleep tests (seeded, a few seconds a night)."""

import random

import torch

from reverie.models.backend import Backend
from reverie.models.batching import Example
from reverie.models.world_model import build_model, train_tokenizer
from reverie.sleep.config import DreamConfig, RehearsalConfig, SleepConfig, TrainConfig
from reverie.sleep.strategies import STRATEGIES
from reverie.sleep.strategies.base import Night, SleepState

TEXTS = ["Ada Lowell was born in Oslo. She works for Acme Robotics. Her office is in Rome.",
         "Otto Vance studied at Eastfield University. He majored in physics.",
         "The coffee machine is broken again."]


class Ep:
    def __init__(self, i, text, priority=1.0, private=False):
        self.id, self.text, self.priority, self.private = i, text, priority, private


def make_tiny() -> Backend:
    torch.manual_seed(0)
    tok = train_tokenizer(TEXTS * 20 + ["Q: A: Context: => ?"], 300)
    model = build_model(tok, hidden=64, layers=2, intermediate=128, max_positions=512, seed=0)
    return Backend(model, tok)


def tiny_cfg(strategy, train=None, **kw) -> SleepConfig:
    """One pass at 512 tokens a step, small dream and generative replay; a strategy whose part
    sets the passes (cls-scope) keeps train.epochs as it is."""
    owns = {k for part in STRATEGIES.get(strategy, ()) for k in part.owns}
    settings = {"batch_tokens": 512, "bf16": False, **({} if "epochs" in owns else {"epochs": 1}),
                **(train or {})}
    return SleepConfig(strategy=strategy, dream=DreamConfig(question_samples=1, max_new_tokens=16),
                       rehearsal=RehearsalConfig(generative_samples=4, generative_max_tokens=12),
                       train=TrainConfig(**settings), **kw)


def night_of(backend, cfg):
    return Night(cfg, SleepState(), backend.tokenizer, backend.model,
                 [Example("generative", text="Ada Lowell works.")] * 4,
                 random.Random(0), lr=cfg.train.lr, epochs=cfg.train.epochs)
