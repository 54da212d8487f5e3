"""One night, read top to bottom: dream -> mix -> train -> merge -> candidate.

The lifecycle chooses the episodes (reverie.lifecycle) and judges the candidate (reverie.gate);
the night consolidates exactly the episodes it is given. The serving model is never touched:
the night trains a copy and returns it as a candidate.
"""

import copy
import random
import time
from dataclasses import dataclass, field

import torch

from reverie.models.backend import Backend
from reverie.sleep.config import SleepConfig
from reverie.sleep.dream import about, dream, subject_of
from reverie.sleep.rehearsal import generative_samples, update_reservoir
from reverie.sleep.strategies import describe, rate, resolve
from reverie.sleep.strategies.base import Night, SleepState
from reverie.sleep.train import train


@dataclass
class NightResult:
    candidate: Backend
    episodes: list                       # ids of the episodes consolidated
    report: dict = field(default_factory=dict)


def run_night(backend: Backend, episodes: list, cfg: SleepConfig, state: SleepState,
              progress=None) -> NightResult:
    """Consolidate `episodes` (objects with .id, .text, .priority) into a candidate model."""
    progress = progress or (lambda **kw: None)
    start = time.time()
    torch.manual_seed(cfg.seed + state.nights)
    rng = random.Random(cfg.seed * 1_000_003 + state.nights)
    tok = backend.tokenizer
    chosen = list(episodes)   # why: the lifecycle selected them (reverie.lifecycle.select)
    if not chosen:
        return NightResult(backend, [], {"skipped": "no episode to consolidate"})
    # the composition that runs (auto goes by size), checked against the config before any work
    strategy = resolve(cfg, sum(p.numel() for p in backend.model.parameters()))
    lr, epochs = rate(cfg, strategy.parts)
    # 1. dream (after the model's own writing is sampled: its names lend the strangers theirs)
    progress(message=f"dreaming about {len(chosen)} episodes")
    generative = generative_samples(backend, cfg.rehearsal.generative_samples,
                                    cfg.rehearsal.generative_max_tokens, cfg.seed + state.nights,
                                    cfg.rehearsal.generative_questions,
                                    cfg.rehearsal.generative_open)
    own = [ex.text or ex.question for ex in generative]
    # why: what the pre-sleep model says about tonight's subjects is what tonight's news
    # replaces ("X works in Lyon" after "X now works in Boston"); replayed or distilled, it
    # teaches the stale fact back
    tonight = {subject_of(e.text) for e in chosen} - {None}
    generative = [ex for ex in generative if not about(ex, tonight)]
    material = dream(backend, [e.text for e in chosen], cfg.dream, seed=cfg.seed + state.nights,
                     others=own)
    dream_seconds = time.time() - start
    # 2. mix with rehearsal
    night = Night(cfg, state, tok, reference=backend.model, generative=generative, rng=rng,
                  lr=lr, epochs=epochs, material=material)
    parts = [part() for part in strategy.parts]
    model = copy.deepcopy(backend.model)
    for p in parts:
        model = p.wrap(night, model)
    mix = material
    for p in parts:
        mix = p.extend(night, mix)
    # 3. train
    stats = train(model, mix, parts, night, progress)
    # 4. merge
    for p in parts:
        model = p.finish(night, model)
    state.seen = update_reservoir(state.reservoir, state.seen, material,
                                  cfg.rehearsal.reservoir_size, rng)
    state.behaviour_seen = update_reservoir(
        state.behaviour, state.behaviour_seen,
        [ex for ex in material if ex.kind in ("stranger", "guarded")],
        cfg.rehearsal.behaviour_size, rng)
    state.nights += 1
    kinds = {}
    for ex in material:
        kinds[ex.kind] = kinds.get(ex.kind, 0) + 1
    report = {**describe(strategy, cfg, lr, epochs), "episodes": len(chosen), "material": kinds,
              "mix": len(mix), "generative_samples": len(generative),
              "dream_seconds": round(dream_seconds, 2),
              "sleep_seconds": round(time.time() - start, 2), **stats,
              **({"scope": night.scratch["scope"]} if "scope" in night.scratch else {})}
    return NightResult(Backend(model.eval(), tok, backend.path), [e.id for e in chosen], report)
