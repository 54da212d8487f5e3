"""The lifelong benchmark's smoke preset end to end (the CI-sized run of `reverie bench
lifelong`): the JSON holds every figure, and the baselines behave as baselines must."""

import json
import math

import pytest

from reverie.bench.lifelong import run_lifelong

KEYS = ("acquisition", "acquisition_train", "retention", "update", "stale", "abstention",
        "refusal", "locality", "kl", "fuar", "bwt", "forgetting", "sleep_seconds", "train_tokens",
        "tokens_per_s", "accuracy_matrix")


@pytest.fixture(scope="module")
def smoke():
    return run_lifelong("smoke", ["frozen", "cls"], seed=0)


def test_every_figure_is_there_and_is_json(smoke):
    json.loads(json.dumps(smoke, allow_nan=True))
    for row in smoke["strategies"].values():
        for k in KEYS:
            assert k in row, k
        assert len(row["accuracy_matrix"]) == 2 and all(len(r) == 2 for r in row["accuracy_matrix"])


def test_frozen_changes_nothing(smoke):
    frozen = smoke["strategies"]["frozen"]
    assert frozen["locality"] == 1.0 and frozen["kl"] == 0.0
    assert frozen["retention"] == 1.0 and frozen["train_tokens"] == 0
    assert frozen["acquisition"] == 0.0  # it never met the stream's people
    misses = frozen["misses"]["acquisition"]  # so every acquisition probe is a miss
    assert misses and all(m["expected"] not in m["answer"] for m in misses)
    assert frozen["misses"]["abstention"] == []  # and it abstains on every stranger


def test_a_night_trains_and_moves_the_model(smoke):
    cls = smoke["strategies"]["cls"]
    assert cls["train_tokens"] > 0 and cls["sleep_seconds"] > 0 and len(cls["nights"]) == 2
    # moved (kl 0.0325) while keeping every unrelated top-1 token (locality 1.0 since
    # dream.strangers 2.0; before it the smoke night moved some and the test asked < 1.0).
    # Two short nights learn little: 1 of 9 new facts, every base fact kept
    assert cls["kl"] == pytest.approx(0.0325, abs=0.005) and cls["locality"] == 1.0
    assert cls["acquisition"] == pytest.approx(1 / 9, abs=1e-3) and cls["retention"] == 1.0
    assert (cls["abstention"], cls["refusal"]) == (1.0, 1.0)
    assert all(n["material"].get("self_question", 0) > 0 for n in cls["nights"])
    assert not math.isnan(cls["retention"])
