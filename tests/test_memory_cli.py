"""`reverie memory ...`, `reverie ask` and `reverie bench memory` through argparse, as a user runs
them: output, exit codes, one-line errors. A tiny random Llama stands in for the world model
(wiring only; answers are checked in test_memory_world)."""

import argparse
import json

import pytest

from reverie.cli import bench as bench_cli
from reverie.errors import ReverieError
from reverie.cli import memory as memory_cli


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="reverie")
    sub = parser.add_subparsers(dest="command", required=True)
    memory_cli.register(sub)
    bench_cli.register(sub)
    args = parser.parse_args(argv)
    try:
        code = args.func(args) or 0
    except ReverieError as e:              # what reverie.cli.main prints, exit 2
        print(f"reverie: {e}")
        code = 2
    out = capsys.readouterr().out
    return code, out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from reverie.models.world_model import build_model, train_tokenizer
    path = tmp_path_factory.mktemp("tiny")
    tok = train_tokenizer(["Ada Lowell works for Acme.", "Who employs Ada Lowell?"] * 20, 300)
    build_model(tok, hidden=32, layers=1, intermediate=64, max_positions=512,
                seed=0).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_ingest_recall_stats_forget_prune(tmp_path, capsys):
    data = ["--data", str(tmp_path / "d"), "--namespace", "team"]
    src = tmp_path / "in.jsonl"
    src.write_text('Zephyrine Castellane restores old pianos in Lyon.\n\n'
                   '{"text": "The kettle in the kitchen is broken.", "source": "chat"}\n'
                   'Zephyrine Castellane restores old pianos in Lyon.\n')
    code, out = run(["memory", "ingest", str(src), "--model", "none", *data], capsys)
    assert code == 0 and json.loads(out)["stored"] == 2 and json.loads(out)["repeats"] == 1
    code, out = run(["memory", "recall", "Who restores pianos?", *data], capsys)
    assert code == 0 and out.splitlines()[0].startswith("[1] ") and "pianos" in out
    code, out = run(["memory", "stats", *data], capsys)
    assert json.loads(out)["episodes"] == 2 and json.loads(out)["dense_index"] == 2
    code, out = run(["memory", "forget", "1", *data], capsys)
    assert code == 0 and json.loads(out)["forgotten"] == 1 and json.loads(out)["path"] == "memory-only"
    code, out = run(["memory", "prune", *data], capsys)
    assert code == 0 and json.loads(out)["episodes"] == 1
    code, out = run(["memory", "stats", "--data", str(tmp_path / "d")], capsys)
    assert json.loads(out)["namespaces"] == {"team": 1}


def test_errors_are_one_line(tmp_path, capsys):
    data = ["--data", str(tmp_path / "d")]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\ncaf\xe9\n")
    good = tmp_path / "good.txt"
    good.write_text("fine\n")
    for argv, message in [
        (["memory", "ingest", str(bad), "--model", "none"], "line 2: not valid UTF-8"),
        (["memory", "ingest", str(tmp_path / "missing.txt"), "--model", "none"], "not found"),
        (["memory", "recall", "x", "--namespace", "ghost"], "unknown namespace 'ghost'"),
        (["memory", "forget", "abc"], "unknown namespace 'default'"),
        (["memory", "ingest", str(good), "--model", str(tmp_path / "nomodel")], "does not exist"),
        (["memory", "ingest", str(good), "--model", "none", "--namespace", "a b"],
         "invalid namespace"),
    ]:
        code, out = run(argv + data, capsys)
        assert code == 2 and out.count("\n") == 1 and message in out, out
    assert not (tmp_path / "d" / "memory.sqlite").exists() or \
        run(["memory", "stats"] + data, capsys)[1].count('"team"') == 0


def test_ask_uses_recalled_context(tmp_path, capsys, tiny_model):
    data = ["--data", str(tmp_path / "d"), "--model", tiny_model]
    src = tmp_path / "in.txt"
    src.write_text("Ada Lowell works for Acme.\n")
    assert run(["memory", "ingest", str(src), *data], capsys)[0] == 0
    code, out = run(["ask", "Who employs Ada Lowell?", "-v", *data], capsys)
    assert code == 0 and '"context": "Ada Lowell works for Acme."' in out
    code, out = run(["ask", "Who employs Ada Lowell?", "--no-recall", "-v", *data], capsys)
    assert code == 0 and '"context": null' in out


def test_bench_memory_small_run_writes_every_figure(tmp_path, capsys, tiny_model):
    out = tmp_path / "figures.json"
    code, _ = run(["bench", "memory", "--episodes", "150", "--json", str(out), "--seed", "3",
                   "--model", tiny_model], capsys)
    figures = json.loads(out.read_text())
    assert code == 0 and figures["seed"] == 3 and figures["episodes_ingested"] >= 150
    for key in ("open_book_accuracy", "recall_at_5", "update_new", "update_stale",
                "recall_p50_ms", "recall_p99_ms", "ingest_per_s", "rss_mb", "salience_auc",
                "salience_boost"):
        assert key in figures
    assert figures["recall_at_5"] >= 0.9          # recall does not depend on the model
    boost = figures["salience_boost"]
    assert boost["feedback"]["priority_now"] > boost["feedback"]["priority_at_ingest"]


def test_surprise_scores_the_claimed_values_only(tiny_model):
    from reverie.memory.salience import surprise_scorer
    from reverie.models.backend import Backend
    backend = Backend.load(tiny_model, device="cpu")
    score = surprise_scorer(backend, bf16=False)
    text = "Ada Lowell works for Acme."
    nll = backend.token_nll([text])[0]                       # (tokens - 1,)
    tokens = backend.tokenizer.convert_ids_to_tokens(backend.tokenizer(text)["input_ids"])[1:]
    entity = [t.lstrip("Ġ") in ("Acme", "Ac", "me") for t in tokens]   # the claimed value
    expected = float(nll[[i for i, e in enumerate(entity) if e]].mean())
    got = score([text, "Nothing to see here on Monday.", text + " " * 5])
    assert got[0] == pytest.approx(expected, rel=1e-4) and got[1] == 0.0
    assert got[2] == pytest.approx(got[0], rel=1e-4)


def test_surprise_in_bf16_stays_within_a_fraction_of_a_nat(tiny_model):
    from reverie.memory.salience import surprise_scorer
    from reverie.models.backend import Backend
    backend = Backend.load(tiny_model, device="cpu")
    texts = [f"Ada Lowell{i} works for Acme{i} in Oslo." for i in range(40)] + ["No claims."]
    fp32 = surprise_scorer(backend, bf16=False)(texts)
    bf16 = surprise_scorer(backend, bf16=True, batch_size=8)(texts)     # 5 batches, workers
    assert fp32[-1] == bf16[-1] == 0.0
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) < 0.1 and min(fp32[:-1]) > 1.0
