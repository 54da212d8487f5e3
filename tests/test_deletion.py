"""Deletion that reaches the weights: memory-only for what no night consolidated, an exact
rebuild through the lineage for what one did."""

import json

import pytest

from reverie import snapshots
from reverie.errors import ReverieError
from reverie.gate.config import GateConfig
from reverie.lifecycle import Reverie
from reverie.sleep.config import DreamConfig, RehearsalConfig, SleepConfig, TrainConfig

NO_GATE = GateConfig(enabled=False)
DAYS = [["Ada Quill was born in Oslo. She works for Acme Robotics.",
         "Bruno Vance studied geology at Pinecrest Institute."],
        ["Cora Lind works for Umbra Games. Her office is in Lima."]]


def tiny_night():
    return SleepConfig(dream=DreamConfig(question_samples=1, max_new_tokens=64),
                       rehearsal=RehearsalConfig(generative_samples=4, generative_max_tokens=16),
                       train=TrainConfig(epochs=1.0))


def test_an_unconsolidated_episode_is_forgotten_from_memory_only(tmp_path, world_backend):
    r = Reverie(tmp_path, model=world_backend, sleep=tiny_night(), gate=NO_GATE)
    ids = [x.id for x in r.ingest(DAYS[0])]
    out = r.forget(ids[0])
    assert out["path"] == "memory-only" and out["forgotten"] == [ids[0]]
    assert out["probe"]["questions"] >= 1 and out["probe"]["abstention"] == 1.0
    assert r.memory.store.get("default", [ids[0]]) == []
    assert not (tmp_path / "forget.pending.json").exists()
    with pytest.raises(ReverieError, match="no episode 999"):
        r.forget(999)
    with pytest.raises(ReverieError, match="must be integers"):
        r.forget("x")
    r.close()


def test_a_consolidated_episode_is_removed_by_replaying_the_lineage(tmp_path, world_backend):
    r = Reverie(tmp_path, model=world_backend, sleep=tiny_night(), gate=NO_GATE)
    day1 = [x.id for x in r.ingest(DAYS[0])]
    first = r.sleep()["snapshot"]
    day2 = [x.id for x in r.ingest(DAYS[1])]
    second = r.sleep()["snapshot"]
    assert snapshots.read_manifest(tmp_path, second)["parent"] == first

    out = r.forget(day1[0])
    assert out["path"].startswith("exact") and out["replayed_nights"] == 2
    assert sorted(out["removed_snapshots"]) == sorted([first, second])
    assert out["snapshot"] == r.active == snapshots.active_id(tmp_path)
    chain = snapshots.lineage(tmp_path, r.active)
    assert [m["rebuilt_from"] for m in chain] == [first, second]
    assert [m["episodes"] for m in chain] == [[day1[1]], day2]
    assert chain[1]["parent"] == chain[0]["id"] and chain[0]["parent"] is None
    # nothing on disk still holds the forgotten text: manifests, gate files, the pointer
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".log", ""):
            assert "Ada Quill" not in path.read_text(errors="ignore"), path
    # the episodes kept point at the rebuilt snapshots; a reopened directory agrees
    kept = r.memory.store.get("default", [day1[1]] + day2)
    assert {e.snapshot for e in kept} <= {m["id"] for m in chain}
    r.close()
    again = Reverie(tmp_path, model=world_backend, sleep=tiny_night(), gate=NO_GATE)
    assert again.active == chain[1]["id"] and again.recovered["reopened"] == 0
    assert again.state.nights == 2
    again.close()


def test_an_interrupted_deletion_is_finished_on_open(tmp_path, world_backend):
    r = Reverie(tmp_path, model=world_backend, sleep=tiny_night(), gate=NO_GATE)
    ids = [x.id for x in r.ingest(DAYS[0])]
    r.close()
    (tmp_path / "forget.pending.json").write_text(json.dumps([ids[1]]))
    again = Reverie(tmp_path, model=world_backend, sleep=tiny_night(), gate=NO_GATE)
    assert again.recovered["forget_resumed"]["forgotten"] == [ids[1]]
    assert again.memory.store.get("default", [ids[1]]) == []
    assert not (tmp_path / "forget.pending.json").exists()
    again.close()


@pytest.mark.slow   # half a minute: the lesson builds a retention sample (no gate ran here)
def test_without_lineage_texts_the_deletion_is_approximate_unlearning(tmp_path, world_backend):
    """A snapshot from before lineage was kept (no night texts): the model is taught to abstain
    on questions about the episode, and that model is committed and served."""
    r = Reverie(tmp_path, model=world_backend, sleep=tiny_night(), gate=NO_GATE)
    ids = [x.id for x in r.ingest(DAYS[0])]
    old = snapshots.commit(tmp_path, world_backend, {"episodes": ids, "namespace": "default"})
    r.close()
    r = Reverie(tmp_path, model=world_backend, sleep=tiny_night(), gate=NO_GATE)
    out = r.forget(ids[0])
    assert out["path"] == "approximate" and out["removed_snapshots"] == []
    assert out["snapshot"] != old and snapshots.read_manifest(tmp_path, out["snapshot"])[
        "unlearned"] == [ids[0]]
    assert out["probe"]["questions"] >= 1 and out["probe"]["closed_book"] == 0.0
    r.close()
