"""Replay: mix earlier nights' material (reservoir), every earlier night's abstentions on
strangers (the behaviour set) and the pre-sleep model's own samples (generative replay, learned as
hard targets) into the night.

Replay leaves out earlier material about tonight's subjects: when tonight brings news about
someone ("Ada Quill took a new job at ..."), replaying what an earlier night learned about them
("Who employs Ada Quill? -> the old firm") would teach the stale fact back. Tonight's own
self-questions cover them instead.
"""

from dataclasses import dataclass

from reverie.config import field
from reverie.sleep.dream import about, subject_of
from reverie.sleep.strategies.base import Night, Part


@dataclass
class ReplayConfig:
    ratio: float = field(0.5, "earlier nights' material replayed per new example (reservoir)")

    def __post_init__(self):
        if self.ratio < 0:
            raise ValueError(f"ratio must be >= 0, got {self.ratio}")


class Replay(Part):
    name = "replay"
    config = ReplayConfig

    def extend(self, night: Night, material: list) -> list:
        tonight = {subject_of(ex.text) for ex in material if ex.kind == "episode"} - {None}
        pool = [ex for ex in night.state.reservoir if not about(ex, tonight)]
        k = min(len(pool), int(self.settings(night).ratio * len(material)))
        old = night.rng.sample(pool, k)
        # why: abstention on people nobody has met wore down night after night when earlier
        # nights' strangers were only a thin share of the reservoir; they all come back
        return material + old + list(night.state.behaviour) + list(night.generative)
