"""Snapshots say what loads them, and export as plain HF folders: a plain snapshot loads with
transformers alone and gives reverie's logits; a scoped one is refused unless merged, and the
merged export records what dropping the scope costs."""

import json

import pytest
import torch

from reverie import snapshots
from reverie.cli import main
from reverie.models.backend import Backend
from reverie.sleep.night import run_night
from reverie.sleep.strategies.base import SleepState
from reverie.sleep.strategies.scope import ScopeConfig
from tiny import TEXTS, Ep, tiny_cfg


@pytest.fixture(scope="module")
def scoped(tiny):
    """A candidate after one night under the scope (as test_sleep makes one)."""
    cfg = tiny_cfg("cls-scope", scope=ScopeConfig(epochs=1))
    cfg.rehearsal.generative_samples = 24  # the own writing the trigger is fitted against
    return run_night(tiny, [Ep(0, TEXTS[0])], cfg, SleepState()).candidate


def test_the_manifest_names_the_loader(tiny, scoped, tmp_path):
    plain = snapshots.commit(tmp_path, tiny, {"parent": None})
    m = snapshots.read_manifest(tmp_path, plain)
    assert m["loader"] == "transformers"
    sid = snapshots.commit(tmp_path, scoped, {"parent": plain})
    m = snapshots.read_manifest(tmp_path, sid)
    assert (snapshots.root(tmp_path) / sid / "scope.json").is_file()
    assert m["loader"] == "reverie" and "everywhere" in m["loader_reason"]


def test_a_plain_snapshot_exports_to_a_folder_transformers_loads_alone(tiny, tmp_path, capsys):
    from transformers import AutoModelForCausalLM
    data = tmp_path / "data"
    sid = snapshots.commit(data, tiny, {"parent": None})
    out = tmp_path / "out"
    assert main(["snapshots", "export", sid, "--out", str(out), "--data", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(out)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "manifest.json", "tokenizer.json",
            "generation_config.json"} <= names and "scope.json" not in names
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["exported_from"] == sid and manifest["loader"] == "transformers"
    plain = AutoModelForCausalLM.from_pretrained(out)
    ours = snapshots.load(data, sid, device="cpu")
    ids = tiny.tokenizer([TEXTS[0]], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, ours.model(ids).logits, atol=1e-6)
    # an existing non-empty --out is refused with one line, and left alone
    assert main(["snapshots", "export", sid, "--out", str(out), "--data", str(data)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["exported_from"] == sid


def test_a_scoped_snapshot_is_refused_unless_merged(scoped, tmp_path, capsys):
    from transformers import AutoModelForCausalLM
    data = tmp_path / "data"
    sid = snapshots.commit(data, scoped, {"parent": None})
    out = tmp_path / "out"
    args = ["snapshots", "export", sid, "--out", str(out), "--data", str(data)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"reverie: snapshot {sid} keeps its nights' changes in a scope that plain "
                   f"transformers cannot express; use --merged to export the weights with "
                   f"every change applied everywhere"]
    assert not out.exists()
    assert main(args + ["--merged"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scope_dropped"] is True and 0.0 <= manifest["locality"] <= 1.0
    assert manifest["locality_prompts"] == 16 and manifest["loader"] == "transformers"
    assert not (out / "scope.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)
    plain = AutoModelForCausalLM.from_pretrained(snapshots.root(data) / sid)
    for (n, p), (_, q) in zip(merged.named_parameters(), plain.named_parameters()):
        assert torch.equal(p, q), n
