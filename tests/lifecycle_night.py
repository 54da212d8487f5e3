"""A night as the lifecycle runs one: its one selection rule (reverie.lifecycle.select), then
run_night on exactly the episodes chosen. test_sleep drives its nights through this, so its
episode lists (priorities, private ones, budgets) still mean what they mean to a user."""

from reverie.lifecycle.select import select
from reverie.sleep.night import run_night as consolidate


def run_night(backend, episodes, cfg, state, progress=None):
    tok = backend.tokenizer
    chosen = select(episodes, cfg, lambda t: len(tok(t)["input_ids"]))
    return consolidate(backend, chosen, cfg, state, progress)
