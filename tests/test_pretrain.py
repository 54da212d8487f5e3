"""A tiny pretraining run: the loop learns, is deterministic, and writes a loadable model."""

import json
import math

import pytest
import torch

from reverie.models.backend import Backend
from reverie.world.people import WorldConfig
from reverie.models.batching import batches, padded
from reverie.world.pretrain import PretrainConfig, pretrain

TINY = dict(world=WorldConfig(n_base=10, n_openbook=20, n_unknown=10, n_probe_openbook=5,
                              n_probe_unknown=5, n_stream=5),
            n_examples=500, vocab_size=400, hidden=64, layers=1, intermediate=128, max_len=256,
            batch_tokens=2048, lr=3e-3, warmup_steps=5, eval_every=1000, eval_people=2)


@pytest.fixture
def one_thread():
    """One CPU thread for bit-identical runs, given back afterwards (the other tests' pinned
    figures are measured with the default count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_pretrain_learns_and_is_deterministic(tmp_path, one_thread):
    a = pretrain(PretrainConfig(**TINY), tmp_path / "a")
    b = pretrain(PretrainConfig(**TINY), tmp_path / "b")
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    # from ln(400) = 5.99 (uniform over the vocabulary at init) to 5.4417 in 36 steps (64,540
    # tokens). The first version asserted < 4.5, which this loop never reached: checked out and
    # run today, the commit that wrote it gives 5.4144 and later corpus changes 5.4432-5.4456
    assert a["history"][-1]["step"] == 36
    assert a["history"][-1]["loss"] == pytest.approx(5.4417, abs=0.01)
    assert a["history"][-1]["loss"] < math.log(400) - 0.5
    backend = Backend.load(str(tmp_path / "a"), device="cpu")
    assert backend.n_params == a["n_params"]
    summary = json.loads((tmp_path / "a" / "pretrain.json").read_text())
    assert summary["config"]["hidden"] == 64 and summary["train_tokens"] > 10_000


def test_batches_respect_the_budget_and_cover_every_example():
    import random
    lengths = [random.Random(i).randint(5, 300) for i in range(3000)]
    plan = batches(lengths, 4096, random.Random(0))
    assert sorted(i for b in plan for i in b) == list(range(3000))
    for b in plan:
        assert padded(max(lengths[i] for i in b)) * len(b) <= 4096 or len(b) == 1
    shapes = {(len(b), padded(max(lengths[i] for i in b))) for b in plan}
    assert len(shapes) < 40  # few distinct shapes: CPU kernels are cached per shape
