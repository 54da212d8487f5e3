"""The facade that users, the server and the benchmarks all call: ingest, recall, answer, sleep,
forget. What the benchmarks measure is what users run.

A Reverie holds one data directory: the hippocampus (memory.sqlite), the models nights produced
(snapshots/<id>/, each a plain HF folder plus manifest.json) and `active`, the id of the one that
serves. A night (`sleep`) consolidates the highest-priority new episodes into a candidate model;
until the gate lands (issue 5) the candidate is accepted when the night completes without error:
it is written to snapshots/ (temporary folder, then rename), `active` moves to it (atomic
replace), the serving model is swapped, the episodes are marked consolidated, and pruning runs.
"""

import time
from pathlib import Path

from reverie import snapshots
from reverie.memory.config import MemoryConfig
from reverie.memory.memory import Memory
from reverie.memory.salience import surprise_scorer
from reverie.models.backend import Backend
from reverie.sleep.config import SleepConfig
from reverie.sleep.night import run_night
from reverie.sleep.strategies.base import SleepState


class Reverie:
    def __init__(self, data_dir, model: "str | Backend" = "world", sleep: SleepConfig | None = None,
                 memory: MemoryConfig | None = None, namespace: str = "default", embedder=None,
                 now=time.time, progress=None):
        self.data_dir = Path(data_dir)
        self.namespace = namespace
        self.sleep_cfg = sleep or SleepConfig()
        active = snapshots.active_dir(self.data_dir)
        if active is not None:
            model = str(active)
        self.backend = model if isinstance(model, Backend) else Backend.load(model, progress=progress)
        tok = self.backend.tokenizer
        self.memory = Memory(self.data_dir, memory, embedder=embedder,
                             scorer=surprise_scorer(self.backend), now=now,
                             count_tokens=lambda t: len(tok(t, add_special_tokens=False)["input_ids"]))
        self.state = SleepState()
        self.nights: list[dict] = []

    # ------------------------------------------------------------ day
    def ingest(self, records, source: str = "") -> list:
        return self.memory.ingest(records, self.namespace, source)

    def feedback(self, episode_id: int, importance: float = 1.0):
        return self.memory.feedback(episode_id, self.namespace, importance)

    def answer(self, questions: list[str], recall: bool = True, **kw) -> list[str]:
        contexts = [self.memory.context(q, self.namespace).context or None if recall else None
                    for q in questions]
        return self.backend.answer(questions, contexts, **kw)

    # ------------------------------------------------------------ night
    def sleep(self, progress=None) -> dict:
        """One night: select -> dream -> mix -> train -> merge (reverie.sleep), accept, swap,
        mark consolidated, prune. Returns the night's report."""
        if not self.memory.store.has_namespace(self.namespace):
            report = {"skipped": "no episode to consolidate"}
            self.nights.append(report)
            return report
        episodes = self.memory.select_for_sleep(self.namespace, limit=self.sleep_cfg.budget_episodes)
        for e in episodes:  # why: consolidate what is still true, not sentences since replaced
            e.text = self.memory.current_text(e)
        result = run_night(self.backend, episodes, self.sleep_cfg, self.state, progress)
        if result.episodes:
            snapshot = snapshots.commit(self.data_dir, result.candidate, {
                "strategy": self.sleep_cfg.strategy, "episodes": result.episodes,
                "report": result.report})
            self.backend = result.candidate            # the swap: accept-if-no-error for now
            self.memory.scorer = surprise_scorer(self.backend)
            self.memory.mark_consolidated(result.episodes, snapshot, self.namespace)
            result.report["snapshot"] = snapshot
            result.report["pruned"] = self.memory.prune(self.namespace)
        self.nights.append(result.report)
        return result.report

    def forget(self, episode_id) -> dict:
        return self.memory.forget(episode_id, self.namespace)

    def close(self):
        self.memory.close()
