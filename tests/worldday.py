"""A day of the synthetic world for end-to-end tests: the stream's first people as episodes."""

import random

from reverie.world import render
from reverie.world.grammar import ATTRIBUTES


def world_day(world, n_people: int, seed: int = 0):
    """Biographies of the stream's first people (TRAIN statements) and one HELD-OUT question
    per attribute about each: phrasings no training or dreaming path sees."""
    rng = random.Random(seed)
    people = world.stream[:n_people]
    texts = [render.biography(p, rng) for p in people]
    questions = [(render.question(p.name, a, "held_out", rng), p.value(a))
                 for p in people for a in ATTRIBUTES]
    return texts, questions
