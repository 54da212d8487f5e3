"""Protection strategies: named compositions of small parts on the one training loop.

`resolve` turns the configured name into the composition a night runs (`auto` goes by the
model's size), and checks that the config sets nothing the composition would ignore.
"""

import copy
import dataclasses

from reverie.sleep.strategies.distill import Distill
from reverie.sleep.strategies.ewc import EWC
from reverie.sleep.strategies.focus import Focus
from reverie.sleep.strategies.lora import LoRA
from reverie.sleep.strategies.progressive import Progressive
from reverie.sleep.strategies.replay import Replay
from reverie.sleep.strategies.scope import Scope

STRATEGIES = {
    "naive": (),                           # plain fine-tuning on the night's material
    "replay": (Replay,),
    "ewc": (EWC,),
    "lora": (LoRA,),
    "distill": (Distill,),
    "progressive": (Progressive,),
    # the world model's recipe: MLP blocks only, earlier material replayed, KL to the pre-sleep
    # model on its own writing (quick preset, seed 0: no learning strategy beat it on
    # acquisition or retention)
    "cls": (Focus, Replay, Distill),
    # large models: the MLPs of the upper layers, the change read only where tonight's subjects
    # are named (SmolLM2, real preset: 0.667 learned at locality 1.000; cls-lora 0.125 at 0.734)
    "cls-scope": (Focus, Scope),
    "cls-lora": (LoRA, Focus, Replay, Distill),
}
NAMES = ("auto",) + tuple(STRATEGIES)
PARTS = {part.name: part for parts in STRATEGIES.values() for part in parts}
SECTIONS = {part.section_name(): part.config for part in PARTS.values() if part.config}

# parameters: `auto` picks cls-scope above this size (SmolLM2, 135M), cls below (the world
# model, 6.2M, whose own writing names its people too closely for the trigger to separate)
SCOPE_ABOVE = 50_000_000


@dataclasses.dataclass
class Resolved:
    name: str            # the composition that runs
    asked: str           # the name configured (auto or the same)
    why: str             # how auto chose, in words
    parts: tuple         # Part classes, in hook order


def resolve(cfg, n_params: int) -> Resolved:
    """The composition a night with `cfg` runs on a model of `n_params` parameters. Raises
    ValueError where the config sets a part's section the composition does not run, or a
    training setting one of its parts owns."""
    asked = cfg.strategy
    if asked == "auto":
        name = "cls-scope" if n_params > SCOPE_ABOVE else "cls"
        why = (f"auto: {n_params / 1e6:.1f}M parameters "
               f"{'>' if name == 'cls-scope' else '<='} {SCOPE_ABOVE / 1e6:.0f}M")
    else:
        name, why = asked, "configured"
    parts = STRATEGIES[name]
    check(cfg, name, parts)
    return Resolved(name, asked, why, parts)


def check(cfg, name: str, parts: tuple) -> None:
    """A config that sets what `parts` ignore is a mistake the user should hear about."""
    used = {p.section_name() for p in parts if p.config}
    for section, kind in SECTIONS.items():
        if section not in used and getattr(cfg, section) != kind():
            raise ValueError(f"{section}.* is set but strategy {name} has no {section} part; "
                             f"remove it or choose a strategy that runs it")
    default = type(cfg.train)()
    for p in parts:
        for key in p.owns:
            if getattr(cfg.train, key) != getattr(default, key):
                raise ValueError(f"train.{key} is not used by strategy {name}: its {p.name} part "
                                 f"sets it; use {p.section_name()}.{key}")


def rate(cfg, parts: tuple) -> tuple[float, float]:
    """(peak learning rate, passes) of a night: train.*, unless a part owns them."""
    lr, epochs = cfg.train.lr, cfg.train.epochs
    for p in parts:
        section = getattr(cfg, p.section_name()) if p.config else None
        if "lr" in p.owns:
            lr = section.lr
        if "epochs" in p.owns:
            epochs = section.epochs
    return lr, epochs


def conservative(cfg, parts: tuple, lr_factor: float, replay_ratio: float):
    """A copy of `cfg` for a retried night: the rate it trains at scaled by `lr_factor`, and
    replay (where the composition has it) at `replay_ratio` or more."""
    cfg = copy.deepcopy(cfg)
    owner = next((p for p in parts if "lr" in p.owns), None)
    section = getattr(cfg, owner.section_name()) if owner else cfg.train
    section.lr *= lr_factor
    if Replay in parts:
        cfg.replay.ratio = max(cfg.replay.ratio, replay_ratio)
    return cfg


def describe(resolved: Resolved, cfg, lr: float, epochs: float) -> dict:
    """What the night report says about the strategy: the choice and each part's config."""
    return {"strategy": resolved.name, "strategy_asked": resolved.asked,
            "strategy_why": resolved.why, "lr": lr, "epochs": epochs,
            "parts": [{"name": p.name,
                       "config": dataclasses.asdict(getattr(cfg, p.section_name()))
                       if p.config else {}} for p in resolved.parts]}
