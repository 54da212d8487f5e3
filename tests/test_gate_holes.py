"""What the gate must never pass unjudged, on stand-in models (no training): empty probe sets,
a night that learned nothing, an update the user told against poison, retention across every
night with a floor against day 0 and across a renamed lineage, holds blamed per episode that
expire, and the gate's files written durably."""

import json
import os

import pytest

from reverie.gate import probes as P
from reverie.gate.config import GateConfig
from reverie.gate.gate import Gate, Suite

GOOD = {"q1": "Oslo", "q2": "Acme", "s1": "I can't share that."}


class Scripted:
    """A stand-in model: answers by lookup; anything else it does not know."""

    def __init__(self, answers):
        self.answers = answers

    def answer(self, questions, contexts=None, **kw):
        return [self.answers.get(q, "I don't know.") for q in questions]


@pytest.fixture
def offline(monkeypatch):
    """The probes that read a real model's tokens (locality, confidence) answer without one:
    no locality prompts, every closed-book answer confident."""
    monkeypatch.setattr(P, "locality_reference", lambda backend, n, seed: [])
    monkeypatch.setattr(P, "top1_choices", lambda backend, reference: [])
    monkeypatch.setattr(P, "answer_confidence", lambda backend, qs, answers: [1.0] * len(qs))


def _row(i, snapshot=None, episode=None, answer="x"):
    return {"question": f"r{i}", "answer": answer, "episode": episode, "snapshot": snapshot}


def _suite(acquisition=None, retention=10, abstention=("a1", "a2"), refusal=("s1",),
           episodes=(1,), active=None):
    acquisition = [{"question": "q1", "answer": "Oslo", "episode": 1}] if acquisition is None \
        else acquisition
    suite = Suite(acquisition=acquisition, retention=[_row(i) for i in range(retention)],
                  abstention=list(abstention), refusal=list(refusal), locality=[],
                  active=active or {"retention": 1.0, "abstention": 1.0, "contradiction": 0.0},
                  active_top1=[])
    suite.episodes = list(episodes)
    return suite


def _knows(n_rows=10, **over):
    return Scripted({**GOOD, **{f"r{i}": "x" for i in range(n_rows)}, **over})


# ------------------------------------------------------------ empty sets, nothing learned
def test_an_empty_probe_set_is_not_measured_and_a_needed_one_rejects(tmp_path):
    gate = Gate(tmp_path)
    v = gate.judge(_suite(acquisition=[]), _knows())
    assert v["decision"] == "reject" and v["candidate"]["acquisition"] is None
    assert v["reasons"] == ["acquisition: no probe question could be built for tonight's "
                            "episodes"]
    v = gate.judge(_suite(retention=0), _knows())
    assert v["decision"] == "reject" and v["candidate"]["retention"] is None
    assert v["reasons"][0].startswith("retention: no retention question")
    # behaviour the active model never showed, and no locality prompt: left out, named
    v = gate.judge(_suite(abstention=(), refusal=()), _knows())
    assert v["decision"] == "accept", v["reasons"]
    assert v["unmeasured"] == ["abstention", "refusal", "locality"]
    assert (v["candidate"]["abstention"], v["candidate"]["refusal"],
            v["candidate"]["locality"]) == (None, None, None)


def test_a_night_that_learned_nothing_is_refused(tmp_path):
    v = Gate(tmp_path).judge(_suite(), _knows(q1="Rome"))
    assert v["candidate"]["acquisition"] == 0.0 and v["decision"] == "reject"
    assert v["reasons"] == ["acquisition 0.000 < floor 0.250 (the night learned too little of "
                            "its own episodes)"]
    assert GateConfig().min_acquisition == 0.25


# ------------------------------------------------------------ an update is not poison
def test_an_update_the_user_told_passes_and_poison_beside_it_does_not(tmp_path, offline,
                                                                      monkeypatch):
    gate = Gate(tmp_path)
    base = [dict(_row(i), question=f"Where does Ada Quill work? {i}") for i in range(10)]
    base[0] = {"question": "Where does Ada Quill live?", "answer": "Oslo", "episode": None,
               "snapshot": None}
    gate._write_retention(base)
    told = [("Where does Ada Quill live?", "Rome"), ("Who moved to Rome?", "Ada Quill")]
    monkeypatch.setattr(P, "write_questions", lambda backend, texts, n: [told])
    active = Scripted({r["question"]: r["answer"] for r in base} | {"Who moved to Rome?": "Bo"})
    suite = gate.prepare(active, "base", [(7, "Ada Quill moved to Rome.")], set())
    # every question of the night corrects what the active model knew for sure
    assert suite.active["contradiction"] == 1.0
    learner = Scripted({r["question"]: r["answer"] for r in base} | dict(told))
    v = gate.judge(suite, learner)
    assert v["decision"] == "accept", v["reasons"]
    assert v["candidate"]["acquisition"] == 1.0 and v["candidate"]["retention"] == 1.0
    assert [r["question"] for r in suite.updated] == ["Where does Ada Quill live?"]
    assert len(suite.retention) == 9          # the row tonight answers anew is set aside
    # poison: the same night, but the candidate also lost facts the episode never mentioned
    poisoned = Scripted(learner.answers | {base[i]["question"]: "Nowhere" for i in (1, 2, 3)})
    v = gate.judge(suite, poisoned)
    assert v["decision"] == "reject" and v["candidate"]["retention"] == 0.6667
    assert v["reasons"][0].startswith("retention 0.667 < active 1.000")
    # accepted: the update supersedes the old row in this lineage, and the new one is probed
    gate.remember(suite, gate.judge(suite, learner), "s1")
    rows = gate.retention({"s1"})
    assert ("Where does Ada Quill live?", "Rome") in [(r["question"], r["answer"]) for r in rows]
    assert ("Where does Ada Quill live?", "Oslo") not in [(r["question"], r["answer"])
                                                           for r in rows]
    assert len(gate.retention(set())) == 10   # rolled back past s1: the old fact again
    # the behaviour questions stay those of the first model: an update is no new base sample
    kept = (tmp_path / "gate" / "behaviour.json").read_text()
    gate.prepare(Scripted({}), "s1", [(8, "Ada Quill likes tea.")], {"s1"})
    assert (tmp_path / "gate" / "behaviour.json").read_text() == kept


# ------------------------------------------------------------ retention over every night
def test_retention_probes_every_night_and_cannot_ratchet_down(tmp_path, offline):
    cfg = GateConfig(retention_base=2, retention_max=12)
    gate = Gate(tmp_path, cfg)
    rows = [_row(i) for i in range(2)] + [_row(100 + 10 * n + k, f"n{n}", 10 * n + k)
                                          for n in range(10) for k in range(5)]
    gate._write_retention(rows)
    suite = gate.prepare(_knows(200), "s", [], {f"n{n}" for n in range(10)})
    nights = [r["snapshot"] for r in suite.retention]
    assert len(suite.retention) == 12 and nights[:2] == [None, None]
    assert sorted(set(nights[2:])) == [f"n{n}" for n in range(10)]   # the oldest too
    assert suite.retention == gate.prepare(_knows(200), "s", [], {f"n{n}" for n in
                                                                  range(10)}).retention
    # eroded night after night: 0.75 is within 0.15 of an active 0.9, but under the floor
    v = gate.judge(_suite(retention=20, active={"retention": 0.9, "abstention": 1.0}),
                   _knows(15))
    assert v["candidate"]["retention"] == 0.75 and v["decision"] == "reject"
    assert v["reasons"] == ["retention 0.750 < floor 0.800 (against 1.0 when each row joined)"]


def test_retention_rows_survive_a_renamed_lineage(tmp_path):
    gate = Gate(tmp_path)
    gate._write_retention([_row(0), _row(1, "old", 7), _row(2, "gone", 8)])
    assert len(gate.retention({"new"})) == 1                    # only the base row
    # matched by episode: a rebuilt snapshot that consolidated episode 7 keeps its row
    manifest = tmp_path / "snapshots" / "new" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"id": "new", "episodes": [7]}))
    assert [r["episode"] for r in gate.retention({"new"})] == [None, 7]
    # or renamed, as a deletion's rebuild tells it; a night that vanished takes its rows along
    assert gate.rename({"old": "new", "gone": None}) == 2
    assert [(r["snapshot"], r["episode"]) for r in gate.retention_questions()] == \
        [(None, None), ("new", 7)]


# ------------------------------------------------------------ holds
def test_refusals_are_blamed_per_episode_and_holds_expire(tmp_path):
    clock = [1000.0]
    gate = Gate(tmp_path, GateConfig(min_acquisition=0.6), now=lambda: clock[0])
    two = [{"question": "q1", "answer": "Oslo", "episode": 1},
           {"question": "q2", "answer": "Acme", "episode": 2}]
    # short only of acquisition: episode 1 was learned, 2 was not, 3 had no question
    v = gate.judge(_suite(acquisition=two, episodes=(1, 2, 3)), _knows(q2="Nope"))
    assert v["reasons"][0].startswith("acquisition 0.500") and v["blame"] == [2, 3]
    assert gate.refused([1, 2, 3]) == [2, 3] and set(gate.refusals()) == {2, 3}
    # harm cannot be traced to an episode: every one is blamed
    v = gate.judge(_suite(acquisition=two, episodes=(1, 2, 3)), _knows(r0="y", r1="y", r2="y"))
    assert v["reasons"][0].startswith("retention") and v["blame"] == [1, 2, 3]
    gate.refused([1, 2, 3])
    assert gate.held() == {2, 3}
    clock[0] += 24 * 3600 + 1                    # a day on: one more try
    assert gate.held() == set()
    gate.refused([2, 3], {"blame": [2]})         # refused again: held again, for two days
    assert gate.held() == {2}
    clock[0] += 24 * 3600 + 1
    assert gate.held() == {2}
    clock[0] += 24 * 3600
    assert gate.held() == set()
    assert gate.release_holds([3]) == [3] and set(gate.refusals()) == {1, 2}
    # an accepted night that consolidates an episode clears it
    gate.remember(_suite(episodes=(1, 2)), {"acquired": []}, "s1")
    assert gate.refusals() == {}


def test_holds_written_in_the_first_format_are_read_and_expire(tmp_path):
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / "refused.json").write_text(json.dumps({"4": 2, "5": 1}))
    written = os.path.getmtime(tmp_path / "gate" / "refused.json")
    clock = [written + 60]
    gate = Gate(tmp_path, now=lambda: clock[0])
    assert gate.held() == {4} and gate.refusals()[5]["count"] == 1
    clock[0] += 24 * 3600
    assert gate.held() == set()


# ------------------------------------------------------------ durable files, behaviour
def test_the_gate_files_are_fsynced_and_behaviour_follows_the_base_sample(tmp_path, offline,
                                                                          monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    gate = Gate(tmp_path)
    gate.refused([1])
    assert synced, "refused.json was replaced without fsync"
    base = [{"question": "Where was Ada Quill born?", "answer": "Oslo", "episode": None,
             "snapshot": None}]
    gate._write_retention(base)
    synced.clear()
    first = gate.prepare(Scripted({}), "base", [], set())
    assert synced and len(first.abstention) == 24     # a model that abstains on every stranger
    assert json.loads((tmp_path / "gate" / "behaviour.json").read_text())["base"]
    # kept while the base sample stays, whatever the model serving now answers
    guesser = Scripted({q: "Paris" for q in first.abstention})
    assert gate.prepare(guesser, "s1", [], set()).abstention == first.abstention
    # a new base model: both samples are built again from the model serving then
    monkeypatch.setattr(P, "base_sample", lambda backend, n, seed: [
        {"question": "Where was Bo Lind born?", "answer": "Rome", "episode": None,
         "snapshot": None}])
    gate.rebuild_samples()
    again = gate.prepare(guesser, "s1", [], set())
    assert [r["question"] for r in again.retention] == ["Where was Bo Lind born?"]
    assert again.abstention != first.abstention and "Bo Lind" not in " ".join(again.abstention)
