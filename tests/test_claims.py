"""The headline claims, each on a tiny seeded setup through the public facade, with the
measured figures pinned: a night learns held-out facts and the gate (default policy) accepts
it; forgetting a consolidated episode leaves the weights a rebuild without it would have; a
SIGKILL at any named crash point leaves a data directory that reopens consistent.

Figures measured on the committed world model, 2 CPU threads."""

import os
import subprocess
import sys

import pytest
import torch

from reverie import snapshots
from reverie.gate.config import GateConfig
from reverie.lifecycle import Reverie
from reverie.sleep.config import DreamConfig, RehearsalConfig, SleepConfig, TrainConfig
from reverie.world.probes import is_correct
from worldday import world_day

NO_GATE = GateConfig(enabled=False)


def _right(answers, questions) -> int:
    return sum(is_correct(a, truth) for a, (_, truth) in zip(answers, questions))


# ------------------------------------------------------------ a night learns, the gate accepts
def learning_night():
    # why these sizes: 2 people, 2 question-writing samples and 48 generative samples keep the
    # night and the gate near 50 s (2 threads); 12 epochs are what makes it learn (8 epochs with
    # 24 generative samples answered 5 of the 12 questions below, 12 epochs with 24 answered 9)
    return SleepConfig(strategy="cls", dream=DreamConfig(question_samples=2),
                       rehearsal=RehearsalConfig(generative_samples=48),
                       train=TrainConfig(epochs=12.0), seed=0)


def test_a_night_learns_held_out_facts_and_the_default_gate_accepts_it(tmp_path, world_backend,
                                                                       world):
    texts, questions = world_day(world, 2)
    asked = [q for q, _ in questions]
    r = Reverie(tmp_path, model=world_backend, sleep=learning_night(), gate=GateConfig())
    assert r.gate.cfg.enabled
    before = r.answer(asked, recall=False)
    assert before == ["I don't know."] * 12            # never met: it abstains on all 12
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


# ------------------------------------------------------------ deletion equals a rebuild without
def tiny_night():
    return SleepConfig(strategy="cls", dream=DreamConfig(question_samples=1, max_new_tokens=64),
                       rehearsal=RehearsalConfig(generative_samples=8, generative_max_tokens=24),
                       train=TrainConfig(epochs=1.0), seed=0)


def test_forgetting_leaves_the_weights_of_a_line_that_never_learned_the_episode(tmp_path,
                                                                               world_backend,
                                                                               world):
    """Nights [A, B1] then [B2]; forget A. A second data directory only ever learns [B1] then
    [B2] with the same settings. The rebuilt line replays each night with the seed and
    SleepState it had (the seed is cfg.seed + the state's night count, the state comes from
    the snapshot before), so the two models are bit for bit the same."""
    (a, b1, b2), questions = world_day(world, 3)
    asked = [q for q, _ in questions]

    r = Reverie(tmp_path / "forgot", model=world_backend, sleep=tiny_night(), gate=NO_GATE)
    id_a, _ = (x.id for x in r.ingest([a, b1]))
    r.sleep()
    r.ingest([b2])
    r.sleep()
    with_a = r.backend
    out = r.forget(id_a)
    assert out["path"] == "exact" and out["replayed_nights"] == 2    # no abstention lesson

    fresh = Reverie(tmp_path / "never", model=world_backend, sleep=tiny_night(), gate=NO_GATE)
    fresh.ingest([b1])
    fresh.sleep()
    fresh.ingest([b2])
    fresh.sleep()

    got, want = r.backend.model.state_dict(), fresh.backend.model.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert r.active == fresh.active               # content-addressed: the same snapshot id
    assert r.state.nights == fresh.state.nights == 2
    assert r.state.reservoir == fresh.state.reservoir
    assert r.state.behaviour == fresh.state.behaviour
    # ... and not because nothing moved: the line that learned A had other weights
    old = with_a.model.state_dict()
    assert max((old[k].float() - want[k].float()).abs().max().item() for k in want) > 1e-3
    ids = world_backend.tokenizer(a, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(r.backend.model(input_ids=ids).logits,
                           fresh.backend.model(input_ids=ids).logits)
    assert r.answer(asked, recall=False) == fresh.answer(asked, recall=False)
    r.close()
    fresh.close()


# ------------------------------------------------------------ a kill at every crash point
CHILD = """
import sys
from reverie.gate.config import GateConfig
from reverie.lifecycle import Reverie
from reverie.sleep.config import DreamConfig, RehearsalConfig, SleepConfig, TrainConfig
cfg = SleepConfig(strategy="cls", dream=DreamConfig(question_samples=1, max_new_tokens=32),
                  rehearsal=RehearsalConfig(generative_samples=4, generative_max_tokens=16),
                  train=TrainConfig(epochs=1.0), seed=0)
Reverie(sys.argv[1], model="world", sleep=cfg, gate=GateConfig(enabled=False)).sleep()
"""
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# point -> (temporary folders the kill leaves, complete snapshots on disk, a snapshot serves
# after reopening, episodes the reopening marks consolidated)
KILLS = {"snapshot-saved": (1, 0, False, 0),     # weights under .tmp-*, no manifest yet
         "snapshot-written": (1, 0, False, 0),   # complete under .tmp-*, not renamed
         "snapshot-renamed": (0, 1, False, 0),   # complete and named, `active` never moved
         "active-moved": (0, 1, True, 2),        # serving, its episodes not yet marked
         "marked": (0, 1, True, 0)}              # marked, killed before the gate and pruning


@pytest.mark.parametrize("point", list(KILLS))
def test_a_kill_at_each_crash_point_reopens_consistent(tmp_path, world_backend, world, point):
    texts, _ = world_day(world, 2)
    r = Reverie(tmp_path, model=world_backend, gate=NO_GATE)
    ids = [x.id for x in r.ingest(texts)]
    r.close()
    env = dict(os.environ, REVERIE_CRASH_AT=point,
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], env=env, timeout=300,
                         capture_output=True, text=True)
    assert run.returncode == -9, run.stderr[-2000:]              # SIGKILL, at that point
    temporary, complete, serving, rolled = KILLS[point]
    assert len(list((tmp_path / "snapshots").glob(".tmp-*"))) == temporary

    again = Reverie(tmp_path, model=world_backend, gate=NO_GATE)
    assert again.recovered == {"rolled_forward": rolled, "reopened": 0}
    assert not list((tmp_path / "snapshots").glob(".tmp-*"))
    assert not (tmp_path / ".active.tmp").exists()
    assert len(snapshots.list_snapshots(tmp_path)) == complete
    # `active` names a complete snapshot (its weights hash to its id) and serves it, or none
    sid = snapshots.active_id(tmp_path)
    assert (sid is not None) == serving and again.active == sid
    if sid is not None:
        assert snapshots.weights_id(tmp_path / "snapshots" / sid) == sid
        assert again.backend.path.name == sid
    # marks agree with the active lineage, both ways
    chain = snapshots.lineage(tmp_path, sid)
    in_lineage = {int(e) for m in chain for e in m["episodes"]}
    assert in_lineage == (set(ids) if serving else set())
    store = again.memory.store
    for e in store.get("default", store.select_ids("default")):
        marked = e.status in ("consolidated", "released")
        assert marked == (e.id in in_lineage), (e.id, e.status)
        assert not marked or e.snapshot == sid
    again.close()
