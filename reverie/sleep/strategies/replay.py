"""Replay: mix earlier nights' material (reservoir), every earlier night's abstentions on
strangers (the behaviour set) and the pre-sleep model's own samples (generative replay, learned as
hard targets) into the night."""

from reverie.sleep.strategies.base import Night, Part


class Replay(Part):
    name = "replay"

    def extend(self, night: Night, material: list) -> list:
        k = min(len(night.state.reservoir), int(night.cfg.rehearsal.replay_ratio * len(material)))
        old = night.rng.sample(night.state.reservoir, k)
        # why: abstention on people nobody has met wore down night after night when earlier
        # nights' strangers were only a thin share of the reservoir; they all come back
        return material + old + list(night.state.behaviour) + list(night.generative)
