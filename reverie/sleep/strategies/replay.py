"""Replay: mix earlier nights' material (reservoir) and the pre-sleep model's own samples
(generative replay, learned as hard targets) into the night."""

from reverie.sleep.strategies.base import Night, Part


class Replay(Part):
    name = "replay"

    def extend(self, night: Night, material: list) -> list:
        k = min(len(night.state.reservoir), int(night.cfg.rehearsal.replay_ratio * len(material)))
        old = night.rng.sample(night.state.reservoir, k)
        return material + old + list(night.generative)
