import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from reverie.models.backend import WORLD_MODEL_DIR  # noqa: E402


@pytest.fixture(scope="session")
def world_backend():
    from reverie.models.backend import Backend
    return Backend.load("world", device="cpu")


@pytest.fixture(scope="session")
def world():
    from reverie.world.people import World
    return World.build()


def pytest_report_header(config):
    return f"world model: {WORLD_MODEL_DIR}"


@pytest.fixture(scope="module")
def tiny():
    """A 2-layer Llama with a 300-token tokenizer (tests/tiny.py), built fresh per module."""
    from tiny import make_tiny
    return make_tiny()
