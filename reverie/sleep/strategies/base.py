"""What every protection part sees: the night's context, the state kept across nights, and the
three hooks a part may use. A strategy is a tuple of small parts; the loop calls each part's
hooks in order and never knows which strategy runs.

  wrap(night, model) -> model       before training (LoRA adds adapters, focus and the scope
                                    choose what trains)
  extend(night, material) -> list   the night's training material (replay adds to it)
  loss(night, model) -> tensor|None an extra term added to every step's loss (EWC, KL)
  finish(night, model) -> model     after training (merge adapters, refresh the Fisher)

A part with settings names its config dataclass in `config`; the sleep config holds it under the
part's `section` (its name unless two parts share one). A part that sets the night's learning
rate or its passes lists them in `owns`: the night then reads them from the part's section, and
`train.lr` / `train.epochs` are not used.
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
    lr: float                    # the peak rate this night trains at
    epochs: float                # passes over the material
    material: list = field(default_factory=list)    # the dream's Examples (before any part)
    scratch: dict = field(default_factory=dict)     # what a part keeps between its hooks


class Part:
    name = "part"
    config = None          # the part's config dataclass, or None
    section = None         # where the sleep config holds it (default: name)
    owns = ()              # "lr", "epochs": training settings the part's section sets

    @classmethod
    def section_name(cls) -> str | None:
        return (cls.section or cls.name) if cls.config else None

    def settings(self, night: Night):
        """This part's config section of the night's sleep config."""
        return getattr(night.cfg, self.section_name())

    def wrap(self, night: Night, model):
        return model

    def extend(self, night: Night, material: list) -> list:
        return material

    def loss(self, night: Night, model):
        return None

    def finish(self, night: Night, model):
        return model
