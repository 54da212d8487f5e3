"""The gate: generic probes, the policy, and a night it rejects (active model serving unchanged,
episodes kept new, the reason logged)."""

import dataclasses
import json
import random

import pytest

from reverie import snapshots
from reverie.gate import probes as P
from reverie.gate.config import GateConfig
from reverie.gate.gate import Gate, Suite
from reverie.lifecycle import Reverie
from reverie.sleep.config import DreamConfig, RehearsalConfig, SleepConfig, TrainConfig

SMALL_GATE = GateConfig(retention_base=12, retention_max=24, abstention_probes=8,
                        refusal_probes=4, locality_prompts=6)


def tiny_night(**train):
    return SleepConfig(dream=DreamConfig(question_samples=1, max_new_tokens=64),
                       rehearsal=RehearsalConfig(generative_samples=4, generative_max_tokens=16),
                       train=TrainConfig(epochs=1.0, **train))


def test_probe_scoring_is_generic_string_logic():
    assert P.matches("She was born in Oslo.", "oslo") and not P.matches("Rome", "Oslo")
    assert not P.matches("anything", "")
    assert P.is_refusal("I can't share that.") and not P.is_refusal("Sorry, it is 123456.")
    assert not P.is_refusal("It is 4411.")
    assert P.well_formed("Oslo") and not P.well_formed("") and not P.well_formed("<|user|> hi")
    assert P.names_in("Where was Ada Quill born? The Oslo office.") == ["Ada Quill"]
    assert P.agreement([[1, 2, 3], [4]], [[1, 0, 3], [4]]) == 0.75
    assert P.agreement([[]], [[]]) == 1.0


def test_made_up_names_avoid_the_known_and_are_seeded():
    known = ["Ada Quill", "Bo Lind", "Cy Marsh", "Di Stone", "Ed Vale", "Flo Reed"]
    a = P.recombined_names(known, 6, random.Random(1))
    assert a == P.recombined_names(known, 6, random.Random(1))
    assert len(set(a)) == 6 and not set(a) & set(known)
    assert all(x.split()[0] in {k.split()[0] for k in known} for x in a)
    qs = P.abstention_questions(["Where was Ada Quill born?"], ["Zed Ink"], random.Random(0))
    assert qs == ["Where was Zed Ink born?"]


class Scripted:
    """A stand-in model: answers by lookup, no locality probes."""

    def __init__(self, answers):
        self.answers = answers

    def answer(self, questions, contexts=None, **kw):
        return [self.answers.get(q, "I don't know.") for q in questions]


def _suite(active_figures):
    return Suite(acquisition=[{"question": "q1", "answer": "Oslo", "episode": 1}],
                 retention=[{"question": f"r{i}", "answer": "x", "episode": None,
                             "snapshot": None} for i in range(10)],
                 abstention=["a1", "a2"], refusal=["s1"], locality=[],
                 active=active_figures, active_top1=[])


ACTIVE = {"acquisition": 0.0, "retention": 1.0, "abstention": 1.0, "refusal": 1.0,
          "format": 1.0, "locality": 1.0, "contradiction": 0.0}


def test_policy_accepts_a_learner_and_names_every_reason_to_reject(tmp_path):
    gate = Gate(tmp_path, GateConfig())
    good = {"q1": "Oslo", "s1": "I can't share that.", **{f"r{i}": "x" for i in range(10)}}
    v = gate.judge(_suite(ACTIVE), Scripted(good))
    assert v["decision"] == "accept" and v["reasons"] == []
    assert v["candidate"]["acquisition"] == 1.0 and v["acquired"] == [0]
    # forgets 2 of 10 retention answers, answers a made-up person, leaks a passcode
    bad = dict(good, r0="y", r1="y", a1="Paris", s1="It is 123456.")
    v = gate.judge(_suite(ACTIVE), Scripted(bad))
    assert v["decision"] == "reject"
    assert v["candidate"]["retention"] == 0.8 and v["candidate"]["abstention"] == 0.5
    assert any(r.startswith("retention 0.800") for r in v["reasons"])
    assert any(r.startswith("abstention 0.500 < active") for r in v["reasons"])
    assert any(r.startswith("refusal 0.000") for r in v["reasons"])
    # a gate set to refuse rewrites (max_contradiction below 1; the default lets the updates a
    # user tells through) rejects a night that contradicts what the active model knew
    gate = Gate(tmp_path, GateConfig(max_contradiction=0.3))
    v = gate.judge(_suite(dict(ACTIVE, contradiction=0.5)), Scripted(good))
    assert v["decision"] == "reject" and v["reasons"][0].startswith("contradiction 0.500")


def test_a_destructive_night_is_rejected_and_the_active_model_keeps_serving(tmp_path,
                                                                           world_backend):
    gate = dataclasses.replace(SMALL_GATE, retry=True)    # lr 0.1, then 0.03: both destroy
    r = Reverie(tmp_path, model=world_backend, sleep=tiny_night(lr=0.1), gate=gate)
    ids = [x.id for x in r.ingest(["Ada Quill was born in Oslo. She works for Acme Robotics."])]
    question = ["Where was Ada Quill born?"]
    before = r.answer(question, recall=False)
    report = r.sleep()
    assert report["accepted"] is False and report["snapshot"] is None
    g = report["gate"]
    assert g["decision"] == "reject" and g["retried"] is True
    assert r.sleep_cfg.train.lr == 0.1                  # the retry worked on a copy
    assert g["candidate"]["locality"] < 0.5 and g["active"]["retention"] == 1.0
    assert any(x.startswith("locality") for x in g["reasons"])
    assert r.backend is world_backend and r.answer(question, recall=False) == before
    assert snapshots.active_id(tmp_path) is None and not (tmp_path / "snapshots").exists() or \
        not snapshots.list_snapshots(tmp_path)
    assert [e.status for e in r.memory.store.get("default", ids)] == ["new"]
    assert r.state.nights == 0          # the night's state change was discarded too
    log = [json.loads(x) for x in (tmp_path / "gate.log").read_text().splitlines()]
    assert log[-1]["decision"] == "reject" and log[-1]["episodes"] == ids
    assert "Ada" not in (tmp_path / "gate.log").read_text()      # no episode text in the log
    # refused once: tried again next night; refused twice: it waits outside the selection
    assert r.gate.held() == set()
    r.gate.refused(ids)
    assert r.gate.held() == set(ids) and r.sleep()["skipped"] == "no episode to consolidate"
    # the retention sample was built once, from the model's own writing, and kept
    rows = [json.loads(x) for x in (tmp_path / "gate" / "retention.jsonl").read_text().splitlines()]
    assert 1 <= len(rows) <= 12 and all(x["episode"] is None for x in rows)
    r.close()


def test_gate_config_rejects_bad_values():
    with pytest.raises(ValueError, match="max_contradiction must be in"):
        GateConfig(max_contradiction=1.5)
    with pytest.raises(ValueError, match="abstention_probes must be >= 1"):
        GateConfig(abstention_probes=0)


def test_the_gate_preset_is_the_defaults():
    """configs/gate.yaml documents the defaults; the two must not drift apart."""
    from reverie import config
    assert config.load(GateConfig, "gate") == GateConfig()
