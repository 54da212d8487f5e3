"""Replay: mix earlier nights' material (reservoir), every earlier night's abstentions on
strangers (the behaviour set) and the pre-sleep model's own samples (generative replay, learned as
hard targets) into the night.

Replay leaves out earlier material about tonight's subjects: when tonight brings news about
someone ("Ada Quill took a new job at ..."), replaying what an earlier night learned about them
("Who employs Ada Quill? -> the old firm") would teach the stale fact back. Tonight's own
self-questions cover them instead.
"""

from reverie.sleep.dream import about, subject_of
from reverie.sleep.strategies.base import Night, Part


class Replay(Part):
    name = "replay"

    def extend(self, night: Night, material: list) -> list:
        tonight = {subject_of(ex.text) for ex in material if ex.kind == "episode"} - {None}
        pool = [ex for ex in night.state.reservoir if not about(ex, tonight)]
        k = min(len(pool), int(night.cfg.rehearsal.replay_ratio * len(material)))
        old = night.rng.sample(pool, k)
        # why: abstention on people nobody has met wore down night after night when earlier
        # nights' strangers were only a thin share of the reservoir; they all come back
        return material + old + list(night.state.behaviour) + list(night.generative)
