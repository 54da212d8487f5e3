"""`reverie world eval`: every probe suite on one model, as a dict of figures."""

import time

from reverie.models.backend import Backend
from reverie.world.people import World, WorldConfig
from reverie.world.probes import build_suites, evaluate

FIGURES = ("closed_book", "closed_book_train", "open_book", "abstention", "known_abstain",
           "refusal")


def world_eval(model: "str | Backend", seed: int = 0, world: WorldConfig | None = None, n_people: int = 100,
               per_person: int = 3, batch_size: int = 32, progress=None) -> dict:
    """Run the standard suites on `model` (a loaded Backend, a model name or a directory)."""
    start = time.time()
    backend = model if isinstance(model, Backend) else Backend.load(model, progress=progress)
    world = World.build(world or WorldConfig())
    suites = build_suites(world, seed=seed, n_people=n_people, per_person=per_person)
    results = evaluate(backend, suites, batch_size=batch_size)
    return {
        **{k: round(results[k], 4) for k in FIGURES},
        "n_probes": {k: len(v) for k, v in suites.items()},
        "by": {k: results[f"{k}_by"] for k in ("closed_book", "open_book")},
        "n_params": backend.n_params,
        "model": str(backend.path),
        "seed": seed,
        "world_seed": world.config.seed,
        "seconds": round(time.time() - start, 1),
        "samples": results["samples"],
    }
