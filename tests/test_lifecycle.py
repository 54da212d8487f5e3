"""The day and the night through the facade and the CLI, on the committed world model."""

import json
import subprocess
import sys

import pytest

from reverie.lifecycle import Reverie
from reverie.sleep.config import DreamConfig, RehearsalConfig, SleepConfig, TrainConfig

DAY = ["Ada Quill was born in Oslo. She works for Acme Robotics. Her office is in Rome.",
       "The coffee machine on the third floor is broken again."]


def small_night(strategy="cls"):
    return SleepConfig(strategy=strategy, dream=DreamConfig(question_samples=1, max_new_tokens=48),
                       rehearsal=RehearsalConfig(generative_samples=8, generative_max_tokens=24),
                       train=TrainConfig(epochs=1.0))


def test_a_night_commits_a_snapshot_that_serves_and_reloads(tmp_path, world_backend):
    r = Reverie(tmp_path, model=world_backend, sleep=small_night())
    ids = [x.id for x in r.ingest(DAY)]
    report = r.sleep()
    assert report["episodes"] >= 1 and report["train_tokens"] > 0
    sid = (tmp_path / "active").read_text()
    manifest = json.loads((tmp_path / "snapshots" / sid / "manifest.json").read_text())
    assert manifest["id"] == sid and manifest["parent"] is None and manifest["strategy"] == "cls"
    assert set(manifest["episodes"]) <= set(ids)
    statuses = {e.id: e.status for e in r.memory.store.get("default", ids)}
    assert any(s in ("consolidated", "released") for s in statuses.values())
    r.close()
    # a new Reverie over the same directory serves the committed snapshot
    again = Reverie(tmp_path, model="world")
    assert str(again.backend.path).endswith(sid)
    again.close()


def test_nothing_to_consolidate_is_a_skipped_night(tmp_path, world_backend):
    r = Reverie(tmp_path, model=world_backend, sleep=small_night())
    assert r.sleep()["skipped"] == "no episode to consolidate"
    assert not (tmp_path / "active").exists()
    r.close()


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
    assert out["strategy"] == "cls" and out["episodes"] >= 1 and out["snapshot"].startswith("night-")
    r = run("sleep", "--data", str(tmp_path / "d"), "--strategy", "magic")
    assert r.returncode == 2 and "strategy must be one of" in r.stderr
