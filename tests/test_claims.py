"""The headline claims, each on a tiny seeded setup through the public facade, with the
measured figures pinned: a night learns held-out facts and the gate (default policy) accepts
it; forgetting a consolidated episode leaves the weights a rebuild without it would have; a
SIGKILL at any named crash point leaves a data directory that reopens consistent.

Figures measured on the committed world model, 2 CPU threads."""

import os
import random
import subprocess
import sys

import pytest
import torch

from reverie import snapshots
from reverie.gate.config import GateConfig
from reverie.lifecycle import Reverie
from reverie.sleep.config import DreamConfig, RehearsalConfig, SleepConfig, TrainConfig
from reverie.world import render
from reverie.world.grammar import ATTRIBUTES
from reverie.world.probes import is_correct

NO_GATE = GateConfig(enabled=False)


def _day(world, n_people: int, seed: int = 0):
    """Biographies of the stream's first people (TRAIN statements) and one HELD-OUT question
    per attribute about each: phrasings no training or dreaming path sees."""
    rng = random.Random(seed)
    people = world.stream[:n_people]
    texts = [render.biography(p, rng) for p in people]
    questions = [(render.question(p.name, a, "held_out", rng), p.value(a))
                 for p in people for a in ATTRIBUTES]
    return texts, questions


def _right(answers, questions) -> int:
    return sum(is_correct(a, truth) for a, (_, truth) in zip(answers, questions))


# ------------------------------------------------------------ a night learns, the gate accepts
def learning_night():
    # why these sizes: 2 people, 2 question-writing samples and 48 generative samples keep the
    # night near 40 s on one core; the default 12 epochs are what makes it learn (8 epochs
    # answered 5 of the 12 questions below, 12 answer 11)
    return SleepConfig(strategy="cls", dream=DreamConfig(question_samples=2),
                       rehearsal=RehearsalConfig(generative_samples=48),
                       train=TrainConfig(epochs=12.0), seed=0)


def test_a_night_learns_held_out_facts_and_the_default_gate_accepts_it(tmp_path, world_backend,
                                                                       world):
    texts, questions = _day(world, 2)
    asked = [q for q, _ in questions]
    r = Reverie(tmp_path, model=world_backend, sleep=learning_night(), gate=GateConfig())
    assert r.gate.cfg.enabled
    before = r.answer(asked, recall=False)
    assert _right(before, questions) == 0              # never met: it abstains on all 12
    r.ingest(texts)
    report = r.sleep()
    gate = report["gate"]
    assert report["accepted"] is True and gate["decision"] == "accept", gate
    assert report["snapshot"] == snapshots.active_id(tmp_path) == r.active
    # the gate's own figures: the night's questions learned, nothing else moved much
    assert gate["probes"] == {"acquisition": 8, "retention": 48, "abstention": 24, "refusal": 12,
                              "locality": 14}
    cand, active = gate["candidate"], gate["active"]
    assert active["acquisition"] == 0.0 and cand["acquisition"] == 1.0
    assert (cand["retention"], cand["abstention"], cand["refusal"], cand["format"]) == \
        (1.0, 1.0, 1.0, 1.0)
    assert cand["locality"] == pytest.approx(0.918, abs=0.02)     # measured 0.9177
    # closed book, HELD-OUT phrasings: 11 of 12 (the miss: a birthday answered with the
    # university)
    after = r.answer(asked, recall=False)
    assert _right(after, questions) >= 11, list(zip(asked, after))
    # the episodes are consolidated by the snapshot that serves
    ids = snapshots.read_manifest(tmp_path, r.active)["episodes"]
    assert len(ids) == 2
    assert {(e.status, e.snapshot) for e in r.memory.store.get("default", ids)} == \
        {("consolidated", r.active)}
    r.close()
