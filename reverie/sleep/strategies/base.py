"""What every protection strategy sees: the night's context, the state kept across nights, and
the four hooks a strategy may use. A strategy is a tuple of small parts; the loop calls each
part's hooks in order and never knows which strategy runs.

  wrap(night, model) -> model       before training (LoRA adds adapters here)
  extend(night, material) -> list   the night's training material (replay adds to it)
  loss(night, model) -> tensor|None an extra term added to every step's loss (EWC, KL)
  after_step(night, model)          after every optimiser step (null space projects it)
  finish(night, model) -> model     after training (merge adapters, refresh the Fisher)
"""

import random
from dataclasses import dataclass, field


@dataclass
class SleepState:
    """Kept from one night to the next (in memory for benchmarks, on disk for a data dir)."""
    nights: int = 0
    reservoir: list = field(default_factory=list)   # Examples from earlier nights
    seen: int = 0                                   # material ever offered to the reservoir
    behaviour: list = field(default_factory=list)   # abstentions on strangers, every night's
    behaviour_seen: int = 0
    fisher: dict | None = None                      # parameter name -> diagonal Fisher
    anchor: dict | None = None                      # parameter name -> value after last night


@dataclass
class Night:
    cfg: object                  # SleepConfig
    state: SleepState
    tokenizer: object
    reference: object            # the pre-sleep model, frozen (eval mode, no grad)
    generative: list             # Examples the pre-sleep model wrote (generative replay)
    rng: random.Random
    lr: float = 0.0              # the peak rate this night trains at (LoRA raises it)
    epochs: float = 0.0          # passes over the material (a part may set them); 0: train.epochs
    scratch: dict = field(default_factory=dict)


class Part:
    name = "part"

    def wrap(self, night: Night, model):
        return model

    def extend(self, night: Night, material: list) -> list:
        return material

    def loss(self, night: Night, model):
        return None

    def after_step(self, night: Night, model):
        return None

    def finish(self, night: Night, model):
        return model
