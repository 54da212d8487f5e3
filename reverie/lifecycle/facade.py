"""The facade that users, the server and the benchmarks all call: ingest, recall, answer, sleep,
forget, activate. What the benchmarks measure is what users run.

A Reverie holds one data directory: the hippocampus (memory.sqlite), the snapshots nights
produced (snapshots/<id>/, reverie.snapshots), `active` (the id of the one that serves), the
gate's log and retention sample (reverie.gate). A night (`sleep`) reads top to bottom:

  select (lifecycle/select.py: the one rule) -> gate.prepare (active model)
  -> run_night (dream, mix, train, merge: exactly the selected episodes)
  -> gate.judge (candidate) -> [retry once, conservatively] -> log
  -> accept: commit the snapshot (with the night's SleepState), move `active`, swap,
             mark consolidated the episodes whose every probe the new weights answer (the
             rest stay new for the next night), add the night's questions to retention, prune
  -> reject: discard the candidate; the episodes stay new in the hippocampus (after
             GateConfig.hold_after refused nights an episode waits outside the selection).

The night holds the data directory's lock (lifecycle/lock.py), as deletions and rollbacks do.
Crash safety: marking comes after `active` moves, so no episode is ever marked consolidated
without its committed snapshot; on open, `reconcile` (lifecycle/reconcile.py) rolls forward
(episodes the active lineage consolidated but a kill left unmarked) and back (episodes marked
by snapshots outside the active lineage, after a rollback, are new again). A deletion
(lifecycle/forget.py) writes a journal first and is resumed on open if a kill interrupted it.
"""

import copy
import dataclasses
import json
import time
from pathlib import Path

from reverie import snapshots
from reverie.errors import ReverieError
from reverie.gate.config import GateConfig
from reverie.gate.gate import Gate
from reverie.lifecycle import forget as deletion
from reverie.lifecycle.lock import exclusive
from reverie.lifecycle.reconcile import problems, reconcile
from reverie.lifecycle.select import select
from reverie.lifecycle.state import commit, load_state
from reverie.memory.config import MemoryConfig
from reverie.memory.memory import Memory, Recalled
from reverie.memory.salience import surprise_scorer
from reverie.models.backend import Backend, resolve
from reverie.sleep import strategies
from reverie.sleep.config import SleepConfig
from reverie.sleep.night import run_night


class Reverie:
    def __init__(self, data_dir, model: "str | Backend" = "world", sleep: SleepConfig | None = None,
                 memory: MemoryConfig | None = None, namespace: str = "default", embedder=None,
                 now=time.time, progress=None, gate: GateConfig | None = None):
        self.data_dir = Path(data_dir)
        self.namespace = namespace
        self.sleep_cfg = sleep or SleepConfig()
        if self.data_dir.is_dir():
            snapshots.recover(self.data_dir)
        self._base = model if isinstance(model, Backend) else None
        self.base = str(model.path) if isinstance(model, Backend) else str(resolve(model))
        self.active = snapshots.active_id(self.data_dir)
        if self.active is not None:
            self.backend = snapshots.load(self.data_dir, self.active)
        else:
            self.backend = self._base or Backend.load(model, progress=progress)
            self._base = self.backend
        self.state = load_state(snapshots.active_dir(self.data_dir))
        tok = self.backend.tokenizer
        self.memory = Memory(self.data_dir, memory, embedder=embedder,
                             scorer=surprise_scorer(self.backend), now=now,
                             count_tokens=lambda t: len(tok(t, add_special_tokens=False)["input_ids"]))
        self.gate = Gate(self.data_dir, gate or GateConfig())
        self.nights: list[dict] = []
        self.recovered = self.reconcile()
        journal = self.data_dir / deletion.JOURNAL
        if journal.is_file():            # a deletion a kill interrupted: finish it
            self.recovered["forget_resumed"] = self.forget(json.loads(journal.read_text()))

    # ------------------------------------------------------------ day
    def ingest(self, records, source: str = "") -> list:
        return self.memory.ingest(records, self.namespace, source)

    def feedback(self, episode_id: int, importance: float = 1.0):
        return self.memory.feedback(episode_id, self.namespace, importance)

    def answer(self, questions: list[str], recall: bool = True, **kw) -> list[str]:
        contexts = [self.memory.context(q, self.namespace).context or None if recall else None
                    for q in questions]
        return self.backend.answer(questions, contexts, **kw)

    def has_episodes(self) -> bool:
        """Whether this namespace ever stored an episode."""
        return self.memory.has_namespace(self.namespace)

    def context(self, query: str) -> Recalled:
        """The recalled episodes a question would be answered with (empty before any)."""
        if not query.strip() or not self.has_episodes():
            return Recalled("", [], 0)
        return self.memory.context(query, self.namespace)

    def recall(self, query: str, k: int | None = None) -> list:
        """Episodes recall returns for `query`, best first ([] before any is stored)."""
        return self.memory.recall(query, self.namespace, k) if self.has_episodes() else []

    def episodes(self, ids) -> list:
        """The stored episodes among `ids` (those deleted or never stored are left out)."""
        return self.memory.store.get(self.namespace, [int(i) for i in ids]) \
            if self.has_episodes() else []

    def forget_from_memory(self, episode_id) -> dict:
        """Delete an episode from the hippocampus only; the weights are `forget`'s business
        (the service runs that in a child process). The report names the snapshot that
        consolidated it, if any."""
        return self.memory.forget(episode_id, self.namespace)

    def waiting(self) -> tuple[int, float, int]:
        """(count, summed priority, newest id) of the episodes waiting for a night."""
        return self.memory.waiting(self.namespace)

    def episode_counts(self) -> dict:
        """Episodes of this namespace by status."""
        return self.memory.counts(self.namespace)

    def release_all(self, label: str = "released") -> dict:
        """Mark every waiting episode consolidated (under `label`, no snapshot) and release
        them at once: what recall alone keeps once the hippocampus lets go. The lifelong
        benchmark's rag baseline measures it; a real night never does this."""
        ids = [e.id for e in self.memory.select_for_sleep(self.namespace, limit=None)]
        self.memory.mark_consolidated(ids, label, self.namespace)
        return self.memory.prune(self.namespace, release_after_days=0)

    # ------------------------------------------------------------ night
    def sleep(self, progress=None) -> dict:
        """One night behind the gate. The report has run_night's figures plus `accepted`,
        `snapshot` (the new id, or None), `verified` (the episodes whose probes the new weights
        answer: they may leave recall) and `gate` (decision, reasons, probe figures). Another
        process's night, deletion or rollback on the same data directory makes it fail at once
        (reverie.lifecycle.lock)."""
        with exclusive(self.data_dir, "a night"):
            return self._night(progress)

    def _night(self, progress=None) -> dict:
        if not self.has_episodes():
            return self._skipped()
        cfg, tok = self.sleep_cfg, self.backend.tokenizer
        try:  # auto resolves by the model's size: what that strategy ignores fails here, early
            strategies.resolve(cfg, self.backend.n_params)
        except ValueError as e:
            raise ReverieError(f"sleep config: {e}") from None
        chosen = select(self.memory.select_for_sleep(self.namespace, limit=None), cfg,
                        lambda t: len(tok(t)["input_ids"]), held=self.gate.held(),
                        current_text=self.memory.current_text)
        if not chosen:
            return self._skipped()
        lineage_ids = {m["id"] for m in snapshots.lineage(self.data_dir, self.active)}
        suite = (self.gate.prepare(self.backend, self.active or "base",
                                   [(e.id, e.text) for e in chosen], lineage_ids)
                 if self.gate.cfg.enabled else None)
        state = copy.deepcopy(self.state)  # why: a rejected night must leave the state as it was
        result = run_night(self.backend, chosen, cfg, state, progress)
        verdict = self._judge(suite, result.candidate)
        if verdict["decision"] == "reject" and self.gate.cfg.retry:
            cfg = _conservative(cfg, self.gate.cfg, self.backend.n_params)
            state = copy.deepcopy(self.state)
            result = run_night(self.backend, chosen, cfg, state, progress)
            verdict = dict(self._judge(suite, result.candidate), retried=True)
        report = dict(result.report, accepted=verdict["decision"] == "accept", snapshot=None,
                      gate={k: v for k, v in verdict.items() if k != "acquired"})
        self.gate.log({"at": time.time(), "active": self.active, "episodes": result.episodes,
                       **report["gate"]})
        if report["accepted"]:
            night = {"episodes": [{"id": e.id, "text": e.text, "priority": e.priority}
                                  for e in chosen if e.id in set(result.episodes)],
                     "sleep": dataclasses.asdict(cfg), "seed": cfg.seed,
                     "state_nights": self.state.nights}
            held = verified(suite, verdict, result.episodes)
            report["verified"] = held
            sid = commit(self.data_dir, result.candidate, {
                "parent": self.active, "strategy": result.report["strategy"],
                "namespace": self.namespace, "base": self.base, "episodes": result.episodes,
                "verified": held, "night": night, "gate": report["gate"],
                "metrics": _numbers(result.report)}, state=state)
            self.swap(sid, result.candidate, state)
            snapshots.crash_point("active-moved")
            # why: an episode leaves recall only once the weights answer it; the others stay
            # new and return to the next night (trained on here, listed in "episodes")
            self.memory.mark_consolidated(held, sid, self.namespace)
            snapshots.crash_point("marked")
            if suite is not None:
                self.gate.remember(suite, verdict, sid)
            report["snapshot"] = sid
            report["pruned"] = self.memory.prune(self.namespace)
        else:
            self.gate.refused(result.episodes, verdict)
        self.nights.append(report)
        return report

    def _skipped(self) -> dict:
        report = {"skipped": "no episode to consolidate", "accepted": False, "snapshot": None,
                  "gate": None}
        self.nights.append(report)
        return report

    def _judge(self, suite, candidate) -> dict:
        if suite is None:
            return {"decision": "accept", "reasons": ["gate disabled"]}
        return self.gate.judge(suite, candidate)

    def swap(self, sid: str | None, backend: Backend, state) -> None:
        """Serve `backend` as snapshot `sid` (None: the base model) with the SleepState its
        night left; the memory's surprise follows the model that serves. The caller has
        committed `sid` and moved `active` already."""
        self.active, self.backend, self.state = sid, backend, state
        self.memory.scorer = surprise_scorer(backend)

    # ------------------------------------------------------------ snapshots
    def activate(self, snapshot_id: str) -> dict:
        """Rollback (or forward): serve `snapshot_id`; episodes only snapshots outside its
        lineage consolidated become new again."""
        with exclusive(self.data_dir, "a rollback"):
            snapshots.set_active(self.data_dir, snapshot_id)
            self.reload()
            return {"active": snapshot_id, **self.reconcile()}

    def reload(self) -> bool:
        """Re-read `active` (another process may have run a night) and serve it if it changed."""
        sid = snapshots.active_id(self.data_dir)
        if sid == self.active:
            return False
        backend = snapshots.load(self.data_dir, sid) if sid else self.base_backend()
        self.swap(sid, backend, load_state(snapshots.active_dir(self.data_dir)))
        self.memory.index = None   # why: the other process changed which episodes are recallable
        return True

    def base_backend(self) -> Backend:
        """The base model the data directory's nights started from (loaded on first use)."""
        if self._base is None:
            self._base = Backend.load(self.base)
        return self._base

    def reconcile(self) -> dict:
        """Make episode marks agree with the active lineage (see the module docstring);
        returns {"rolled_forward": n, "reopened": n}."""
        return reconcile(self.data_dir, self.active, self.memory, self.namespace)

    def problems(self) -> list[str]:
        """What disagrees between the store and the active lineage, one line each (empty:
        consistent); the gate benchmark checks this after each kill."""
        return problems(self.data_dir, self.active, self.memory)

    # ------------------------------------------------------------ deletion
    def forget(self, episode_id) -> dict:
        """Forget episodes (an id or a list) from the hippocampus and, where a snapshot
        consolidated them, from the weights: rebuild from the snapshot before the first night
        that consolidated one, replaying the later nights without them (path "exact"); then
        probe that the model no longer answers them closed-book."""
        with exclusive(self.data_dir, "a deletion"):
            return deletion.forget(self, episode_id)

    def close(self):
        self.memory.close()


def verified(suite, verdict: dict, episodes: list) -> list:
    """The night's episodes the candidate holds: every acquisition probe written about them
    answered. An episode without a probe is not verified. With the gate off nothing is probed
    and every trained episode counts (the benchmarks measure the strategies that way)."""
    if suite is None:
        return list(episodes)
    asked, right = {}, set(verdict.get("acquired", []))
    for i, p in enumerate(suite.acquisition):
        asked.setdefault(p["episode"], []).append(i in right)
    return [e for e in episodes if asked.get(e) and all(asked[e])]


def _conservative(cfg: SleepConfig, gate: GateConfig, n_params: int) -> SleepConfig:
    parts = strategies.resolve(cfg, n_params).parts
    return strategies.conservative(cfg, parts, gate.retry_lr_factor, gate.retry_replay_ratio)


def _numbers(report: dict) -> dict:
    return {k: v for k, v in report.items() if isinstance(v, (int, float, str, dict))}
