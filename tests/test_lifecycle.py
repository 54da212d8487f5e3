"""The day and the night through the facade and the CLI, on the committed world model."""

import json
import subprocess
import sys

import pytest

from reverie import snapshots
from reverie.gate.config import GateConfig
from reverie.lifecycle import Reverie
from reverie.sleep.config import DreamConfig, RehearsalConfig, SleepConfig, TrainConfig

NO_GATE = GateConfig(enabled=False)
DAY = ["Ada Quill was born in Oslo. She works for Acme Robotics. Her office is in Rome.",
       "The coffee machine on the third floor is broken again."]


def small_night(strategy="cls"):
    return SleepConfig(strategy=strategy, dream=DreamConfig(question_samples=1, max_new_tokens=48),
                       rehearsal=RehearsalConfig(generative_samples=8, generative_max_tokens=24),
                       train=TrainConfig(epochs=1.0))


def test_a_night_commits_a_snapshot_that_serves_and_reloads(tmp_path, world_backend):
    r = Reverie(tmp_path, model=world_backend, sleep=small_night(), gate=NO_GATE)
    ids = [x.id for x in r.ingest(DAY)]
    report = r.sleep()
    assert report["episodes"] >= 1 and report["train_tokens"] > 0 and report["accepted"]
    sid = (tmp_path / "active").read_text()
    assert report["snapshot"] == sid
    manifest = json.loads((tmp_path / "snapshots" / sid / "manifest.json").read_text())
    assert manifest["id"] == sid and manifest["parent"] is None and manifest["strategy"] == "cls"
    assert set(manifest["episodes"]) <= set(ids)
    assert [e["id"] for e in manifest["night"]["episodes"]] == manifest["episodes"]
    assert manifest["night"]["sleep"]["train"]["epochs"] == 1.0
    assert (tmp_path / "snapshots" / sid / "sleep_state.json").is_file()
    statuses = {e.id: e.status for e in r.memory.store.get("default", ids)}
    assert any(s in ("consolidated", "released") for s in statuses.values())
    r.close()
    # a new Reverie over the same directory serves the committed snapshot
    again = Reverie(tmp_path, model="world")
    assert str(again.backend.path).endswith(sid)
    assert again.state.nights == 1 and len(again.state.reservoir) == len(r.state.reservoir)
    again.close()


def test_nothing_to_consolidate_is_a_skipped_night(tmp_path, world_backend):
    r = Reverie(tmp_path, model=world_backend, sleep=small_night())
    assert r.sleep()["skipped"] == "no episode to consolidate"
    assert not (tmp_path / "active").exists()
    r.close()


@pytest.mark.slow   # about a minute: a child process builds the gate's samples from scratch
def test_sleep_cli_reports_the_night(tmp_path):
    src = tmp_path / "day.txt"
    src.write_text("\n".join(DAY) + "\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "reverie.cli", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=600)
    r = run("memory", "ingest", str(src), "--data", str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr
    r = run("sleep", "--data", str(tmp_path / "d"), "--set", "dream.question_samples=1",
            "--set", "rehearsal.generative_samples=8", "--set", "train.epochs=1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["strategy"] == "cls" and out["episodes"] >= 1
    assert out["snapshot"] is None or len(out["snapshot"]) == 16   # the gate decides
    r = run("sleep", "--data", str(tmp_path / "d"), "--strategy", "magic")
    assert r.returncode == 2 and "strategy must be one of" in r.stderr


def test_reopening_rolls_forward_marks_a_kill_left_undone_and_rollback_reopens(tmp_path,
                                                                              world_backend):
    """A kill between moving `active` and marking the episodes: the next open marks them. A
    rollback to before a night makes that night's episodes new again; reload follows `active`."""
    r = Reverie(tmp_path, model=world_backend, sleep=small_night(), gate=NO_GATE)
    ids = [x.id for x in r.ingest(DAY)]
    sid = snapshots.commit(tmp_path, world_backend, {"episodes": ids, "namespace": "default"})
    assert [e.status for e in r.memory.store.get("default", ids)] == ["new", "new"]
    r.close()
    r = Reverie(tmp_path, model=world_backend, sleep=small_night(), gate=NO_GATE)
    assert r.recovered == {"rolled_forward": 2, "reopened": 0} and r.active == sid
    kept = r.memory.store.get("default", ids)
    assert all(e.status in ("consolidated", "released") and e.snapshot == sid for e in kept)
    # a later night in another process: reload picks it up
    other = Reverie(tmp_path, model=world_backend, sleep=small_night(), gate=NO_GATE)
    other.ingest(["Dora Flint studied law at Clearwater College."])
    night = other.sleep()
    other.close()
    assert r.reload() is True and r.active == night["snapshot"] and r.reload() is False
    # rollback to the first snapshot: the later night's episode is new again
    out = r.activate(sid)
    assert out["active"] == sid and out["reopened"] == 1 and snapshots.active_id(tmp_path) == sid
    assert [e.status for e in r.memory.select_for_sleep("default")] == ["new"]
    r.close()


def test_progressive_nights_commit_adapter_snapshots_that_reload(tmp_path, world_backend):
    """Progressive keeps each night's adapter apart: the snapshot stores adapters only, names
    its base, and a reopened directory serves the same model."""
    import torch
    r = Reverie(tmp_path, model=world_backend, sleep=small_night("progressive"), gate=NO_GATE)
    r.ingest(DAY[:1])
    first = r.sleep()["snapshot"]
    r.ingest(["Cora Lind works for Umbra Games. Her office is in Lima."])
    second = r.sleep()["snapshot"]
    m1, m2 = (snapshots.read_manifest(tmp_path, s) for s in (first, second))
    assert (m1["kind"], m1["adapters"]) == ("adapter", ["night0"])
    assert (m2["kind"], m2["adapters"], m2["parent"]) == ("adapter", ["night0", "night1"], first)
    assert m2["base"] == str(world_backend.path)
    assert not (tmp_path / "snapshots" / second / "model.safetensors").exists()
    ids = world_backend.tokenizer("Cora Lind works for", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = r.backend.model(input_ids=ids).logits
        r.close()
        again = Reverie(tmp_path, model=world_backend, sleep=small_night("progressive"),
                        gate=NO_GATE)
        assert again.active == second
        assert torch.allclose(again.backend.model(input_ids=ids).logits, want, atol=1e-5)
    again.close()


def test_the_one_selection_rule():
    from types import SimpleNamespace as E

    from reverie.lifecycle.select import select
    from reverie.sleep.config import SleepConfig
    cfg = SleepConfig(budget_episodes=2, min_priority=0.3)
    eps = [E(id=1, text="a b", priority=0.4, private=False),
           E(id=2, text="c", priority=0.9, private=True),       # private: never
           E(id=3, text="d e", priority=0.8, private=False),    # held back by the gate
           E(id=4, text="f", priority=0.1, private=False),      # below the floor
           E(id=5, text="g h i", priority=0.6, private=False)]
    words = lambda t: len(t.split())  # noqa: E731
    assert [e.id for e in select(eps, cfg, words, held={3})] == [5, 1]
    assert [e.id for e in select(eps, cfg, words)] == [3, 5]
    cfg.budget_tokens = 4                      # 3 + 2 > 4: the budget stops at the first
    assert [e.id for e in select(eps, cfg, words, held={3})] == [5]
    cfg.min_priority = 0.0
    cfg.budget_episodes, cfg.budget_tokens = 5, 100
    assert [e.id for e in select(eps, cfg, words, held={3},
                                 current_text=lambda e: e.text.upper())] == [5, 1, 4]
    assert eps[4].text == "G H I"              # the text as it stands now is what is counted


def test_a_setting_auto_ignores_on_this_model_fails_before_the_night(tmp_path, world_backend):
    from reverie.errors import ReverieError
    from reverie.sleep.strategies.scope import ScopeConfig
    cfg = small_night("auto")
    cfg.scope = ScopeConfig(lr=1e-3)      # auto runs cls on the 6.2M-parameter world model
    r = Reverie(tmp_path, model=world_backend, sleep=cfg, gate=NO_GATE)
    r.ingest(DAY)
    with pytest.raises(ReverieError, match=r"sleep config: scope\.\* is set but strategy cls has "
                                           r"no scope part"):
        r.sleep()
    assert r.active is None and snapshots.list_snapshots(tmp_path) == []
    r.close()


def test_only_episodes_the_gate_saw_answered_leave_the_night_marked(tmp_path, world_backend,
                                                                     monkeypatch):
    from reverie.gate.gate import Suite
    r = Reverie(tmp_path, model=world_backend, sleep=small_night(), gate=GateConfig())
    held, missed = [x.id for x in r.ingest(["Ada Quill was born in Oslo.",
                                            "Otto Vance studied at Eastfield University."])]
    probes = [{"question": q, "answer": a, "episode": e} for q, a, e in (
        ("Where was Ada Quill born?", "Oslo", held), ("Ada Quill's birthplace?", "Oslo", held),
        ("Where did Otto Vance study?", "Eastfield University", missed))]
    monkeypatch.setattr(r.gate, "prepare", lambda *a, **k: Suite(probes, [], [], [], []))
    # the candidate answered both of Ada's probes and not Otto's
    monkeypatch.setattr(r.gate, "judge", lambda suite, cand: {
        "decision": "accept", "reasons": [], "acquired": [0, 1]})
    report = r.sleep()
    assert report["accepted"] and report["verified"] == [held]
    manifest = json.loads((tmp_path / "snapshots" / report["snapshot"] / "manifest.json")
                          .read_text())
    assert sorted(manifest["episodes"]) == sorted([held, missed])
    assert manifest["verified"] == [held]
    status = lambda rv: {e.id: e.status for e in rv.episodes([held, missed])}  # noqa: E731
    assert status(r) == {held: "consolidated", missed: "new"}
    r.close()
    again = Reverie(tmp_path, model=world_backend, sleep=small_night(), gate=GateConfig())
    assert again.recovered["rolled_forward"] == 0 and status(again)[missed] == "new"
    again.close()


def test_a_night_fails_at_once_while_another_process_holds_the_data_directory(tmp_path,
                                                                                world_backend):
    from reverie.errors import ReverieError
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from reverie.lifecycle.lock import exclusive\n"
        f"with exclusive({str(tmp_path)!r}, 'a night'):\n"
        "    print('held', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = Reverie(tmp_path, model=world_backend, sleep=small_night(), gate=NO_GATE)
        r.ingest(DAY)
        with pytest.raises(ReverieError, match=rf"is busy \(a night in process {holder.pid}\)"):
            r.sleep()
        with pytest.raises(ReverieError, match="is busy"):
            r.forget(1)
        assert r.active is None
    finally:
        holder.kill()
        holder.wait()
    assert r.sleep()["accepted"]    # the kernel let go of the dead holder's lock
    r.close()
