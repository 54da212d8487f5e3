"""The command line: bad input is one line on stderr and exit code 2, never a traceback."""

import json
import subprocess
import sys

import pytest


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "reverie.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["world", "eval", "--model", "/nonexistent/model"], "does not exist"),
    (["world", "pretrain", "--out", "x", "--set", "lr=-1"], "lr must be > 0"),
    (["world", "pretrain", "--out", "x", "--preset", "nope"], "not found"),
    (["world", "eval", "--people", "0"], "--people must be >= 1"),
    (["world", "bogus"], "invalid choice"),
    (["world", "pretrain", "--out", "x", "--set", "device=tpu"], "device must be auto, cpu or cuda"),
    (["bench", "lifelong", "--json", "x.json", "--set", "train.lrr=3"], "unknown config key 'train.lrr'"),
    (["bench", "lifelong", "--json", "x.json", "--set", "train.lr"], "is not KEY=VALUE"),
    (["bench", "gate", "--json", "x.json", "--parts", "gate,kils"], "unknown part 'kils'"),
    (["bench", "lifelong", "--json", "x.json", "--set", "train.trainable=mlp("],
     "trainable is not a regular expression"),
])
def test_bad_input_gives_one_line_and_exit_2(args, message):
    r = run(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reverie: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_directory_without_a_causal_lm(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    r = run("world", "eval", "--model", str(tmp_path))
    assert r.returncode == 2 and "holds no causal LM" in r.stderr and "Traceback" not in r.stderr


def test_every_subcommand_has_help():
    for args in (["--help"], ["world", "--help"], ["world", "eval", "--help"],
                 ["world", "pretrain", "--help"], ["demo", "--help"]):
        r = run(*args)
        assert r.returncode == 0 and "usage:" in r.stdout, args


def test_world_eval_writes_json(tmp_path):
    out = tmp_path / "eval.json"
    r = run("world", "eval", "--people", "5", "--json", str(out))
    assert r.returncode == 0, r.stderr
    figures = json.loads(out.read_text())
    for key in ("closed_book", "closed_book_train", "open_book", "abstention", "known_abstain",
                "refusal", "n_params", "seed"):
        assert key in figures
    assert figures["n_probes"]["closed_book"] == 15
    assert "closed_book" in r.stdout
