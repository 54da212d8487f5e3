"""The snapshot registry: content addressing, manifests, state, atomic commit, recovery, GC,
and snapshots that load with plain transformers and peft."""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from reverie import snapshots
from reverie.errors import ReverieError
from reverie.models.backend import Backend
from reverie.models.batching import Example
from reverie.sleep.strategies.base import SleepState


def _nudged(backend, by=1e-3):
    """A copy of the model with one weight moved: different weights, different snapshot id."""
    model = copy.deepcopy(backend.model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += by
    return Backend(model, backend.tokenizer, backend.path)


def test_commit_is_content_addressed_and_loads_with_plain_transformers(tmp_path, world_backend):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    sid = snapshots.commit(tmp_path, world_backend, {"strategy": "cls", "episodes": [1, 2]})
    folder = tmp_path / "snapshots" / sid
    assert sid == snapshots.weights_id(folder) and len(sid) == 16
    assert snapshots.active_id(tmp_path) == sid
    m = json.loads((folder / "manifest.json").read_text())
    assert m["id"] == sid and m["parent"] is None and m["kind"] == "full"
    assert m["episodes"] == [1, 2] and m["reverie_version"] == "0.1.0"
    # the same weights are the same snapshot; a second commit names the first as parent
    assert snapshots.commit(tmp_path, world_backend, {"parent": sid}) == sid
    other = snapshots.commit(tmp_path, _nudged(world_backend), {})
    assert other != sid and snapshots.read_manifest(tmp_path, other)["parent"] == sid
    assert [m["id"] for m in snapshots.lineage(tmp_path, other)] == [sid, other]
    # plain transformers, no reverie code: same logits as the model that was saved
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok("Ada Quill was born in", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, world_backend.model(ids).logits, atol=1e-5)
    assert not list((tmp_path / "snapshots").glob(".tmp-*"))


def test_adapter_snapshot_stores_only_adapters_and_loads_with_peft(tmp_path, world_backend):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM
    base = copy.deepcopy(world_backend.model)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False), adapter_name="night0")
    backend = Backend(model, world_backend.tokenizer, world_backend.path)
    sid = snapshots.commit(tmp_path, backend, {"base": str(world_backend.path)})
    folder = tmp_path / "snapshots" / sid
    m = snapshots.read_manifest(tmp_path, sid)
    assert m["kind"] == "adapter" and m["adapters"] == ["night0"]
    assert not (folder / "model.safetensors").exists()
    ids = world_backend.tokenizer("Ada Quill works for", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = model(input_ids=ids).logits
        plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(world_backend.path),
                                          str(folder / "night0"))
        assert torch.allclose(plain(input_ids=ids).logits, want, atol=1e-5)
        assert torch.allclose(snapshots.load(tmp_path, sid).model(input_ids=ids).logits, want,
                              atol=1e-5)


def test_sleep_state_round_trips_with_the_snapshot(tmp_path, world_backend):
    state = SleepState(nights=3, seen=7, reservoir=[Example("episode", text="Ada was here."),
                                                    Example("self_question", question="Who?",
                                                            answer="Ada")],
                       fisher={"w": torch.arange(6.0).view(2, 3)},
                       anchor={"w": torch.ones(2, 3)})
    from reverie.lifecycle.state import commit, load_state
    sid = commit(tmp_path, world_backend, {}, state=state)
    back = load_state(tmp_path / "snapshots" / sid)
    assert (back.nights, back.seen) == (3, 7) and back.reservoir == state.reservoir
    assert torch.equal(back.fisher["w"], state.fisher["w"])
    assert torch.equal(back.anchor["w"], state.anchor["w"])
    assert load_state(None).nights == 0
    # the registry stores it generically: a JSON document and named tensors
    doc, tensors = snapshots.load_state(tmp_path / "snapshots" / sid)
    assert doc["nights"] == 3 and set(tensors) == {"fisher.w", "anchor.w"}


def test_an_old_snapshots_sleep_state_still_loads(tmp_path):
    from reverie.lifecycle.state import load_state
    # written before behaviour was kept: no behaviour keys, no tensors
    (tmp_path / snapshots.STATE_JSON).write_text(json.dumps({
        "nights": 2, "seen": 5, "reservoir": [{"kind": "episode", "text": "Ada was here."}]}))
    back = load_state(tmp_path)
    assert (back.nights, back.seen, back.behaviour, back.fisher) == (2, 5, [], None)
    assert back.reservoir == [Example("episode", text="Ada was here.")]


CHILD = """
import sys
from reverie import snapshots
from reverie.models.backend import Backend
snapshots.commit(sys.argv[1], Backend.load("world", device="cpu"), {"strategy": "cls"})
"""


@pytest.mark.parametrize("point,orphan", [
    ("snapshot-written", False),
    pytest.param("snapshot-renamed", True, marks=pytest.mark.slow)])
def test_a_kill_during_commit_leaves_the_old_snapshot_serving(tmp_path, world_backend, point,
                                                              orphan):
    old = snapshots.commit(tmp_path, _nudged(world_backend), {})
    env = dict(os.environ, REVERIE_CRASH_AT=point)
    run = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], env=env, timeout=300,
                         capture_output=True)
    assert run.returncode == -9                     # SIGKILL
    assert snapshots.active_id(tmp_path) == old
    leftovers = list((tmp_path / "snapshots").glob(".tmp-*"))
    assert len(leftovers) == (0 if orphan else 1)
    assert snapshots.recover(tmp_path) == {"removed_temporary": len(leftovers)}
    ids = {m["id"] for m in snapshots.list_snapshots(tmp_path)}
    assert old in ids and len(ids) == (2 if orphan else 1)   # an orphan is complete, unused


def test_gc_keeps_the_active_lineage_and_the_newest(tmp_path, world_backend):
    a = snapshots.commit(tmp_path, _nudged(world_backend, 1e-3), {})
    b = snapshots.commit(tmp_path, _nudged(world_backend, 2e-3), {})
    side = [snapshots.commit(tmp_path, _nudged(world_backend, k * 1e-3), {"parent": a},
                             activate=False) for k in (3, 4, 5)]
    assert snapshots.active_id(tmp_path) == b
    assert snapshots.gc(tmp_path, keep_recent=1) == side[:2]
    assert {m["id"] for m in snapshots.list_snapshots(tmp_path)} == {a, b, side[2]}
    with pytest.raises(ReverieError, match="is active"):
        snapshots.remove(tmp_path, b)
    with pytest.raises(ReverieError, match="no snapshot 'nope'"):
        snapshots.set_active(tmp_path, "nope")


def test_snapshots_cli_lists_shows_diffs_and_rolls_back(tmp_path, world_backend, capsys):
    from reverie.cli import main
    a = snapshots.commit(tmp_path, _nudged(world_backend, 1e-3), {
        "episodes": [1], "night": {"episodes": [{"id": 1, "text": "Ada Quill was born in Oslo.",
                                                 "priority": 0.5}]},
        "gate": {"candidate": {"retention": 0.9, "abstention": 1.0}}})
    b = snapshots.commit(tmp_path, _nudged(world_backend, 2e-3), {
        "episodes": [2, 3], "gate": {"candidate": {"retention": 0.8, "abstention": 0.75}}})
    data = ["--data", str(tmp_path)]
    assert main(["snapshots", "list", *data]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 3 and rows[2].startswith(f"* {b}") and rows[1].startswith(f"  {a}")
    assert main(["snapshots", "show", a, *data]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == a and shown["night"]["episodes"] == [1]      # no text unless asked
    assert main(["snapshots", "diff", a, b, *data]) == 0
    out = capsys.readouterr().out
    assert "retention" in out and "0.9" in out and "0.8" in out
    assert f"episodes only in {b}: [2, 3]" in out and f"episodes only in {a}: []" in out
    assert main(["snapshots", "activate", a, *data]) == 0
    assert json.loads(capsys.readouterr().out)["active"] == a
    assert snapshots.active_id(tmp_path) == a
    assert main(["snapshots", "activate", "nope", *data]) == 2
    assert "no snapshot 'nope'" in capsys.readouterr().err
