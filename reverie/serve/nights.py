"""Nights in the background: a job queue, the night's own process, the swap, the scheduler.

A night runs in a separate process (multiprocessing spawn) with `night_threads` torch threads, so
the service keeps answering on the rest of the cores. The child opens the tenant's data directory
through the facade and runs `Reverie.sleep`: it commits the snapshot, moves `active`, marks the
episodes consolidated and prunes, all on disk. The parent reads its progress from a queue; when
the night's snapshot is accepted it loads it and swaps the tenant's Serving in one assignment,
then drops the memory's dense index so recall re-reads the statuses the child wrote.

One night runs at a time (the machine's cores are the limit); further requests queue.
"""

import logging
import multiprocessing
import os
import queue
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("reverie.serve")
STATE_FILE = "serve-sleep-state.pt"     # why: the facade keeps SleepState in memory (for now)
FINISHED = ("succeeded", "rejected", "skipped", "failed")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def night_process(tenant_dir: str, namespace: str, model: str, sleep_cfg, memory_cfg,
                  threads: int, events) -> None:
    """The child: one night over the tenant's data directory. Reports through `events`:
    ("progress", {...}), then ("done", report) or ("error", message)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    torch.set_num_threads(threads)
    from reverie.errors import ReverieError
    from reverie.lifecycle import Reverie
    try:
        r = Reverie(tenant_dir, model=model, sleep=sleep_cfg, memory=memory_cfg,
                    namespace=namespace)
        state_file = Path(tenant_dir) / STATE_FILE
        if r.state.nights == 0 and state_file.is_file():   # the facade did not restore it
            r.state = torch.load(state_file, weights_only=False)
        last = [0.0]

        def progress(**kw):
            if "message" in kw or time.monotonic() - last[0] > 0.5:
                last[0] = time.monotonic()
                events.put(("progress", _jsonable(kw)))

        report = r.sleep(progress=progress)
        if report.get("snapshot"):
            tmp = state_file.with_suffix(".tmp")
            torch.save(r.state, tmp)
            os.replace(tmp, state_file)
        r.close()
        events.put(("done", _jsonable(report)))
    except ReverieError as e:
        events.put(("error", str(e)))
    except BaseException as e:  # noqa: BLE001 - the parent must hear of any failure
        traceback.print_exc()
        events.put(("error", f"{e.__class__.__name__}: {e}"))


@dataclass
class Job:
    id: str
    tenant: str
    trigger: str                          # request, idle or priority
    status: str = "queued"                # queued, running, then one of FINISHED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    swapped_at: float | None = None
    progress: dict = field(default_factory=dict)
    accepted: bool | None = None
    snapshot: str | None = None
    previous: str | None = None          # the snapshot serving when the night started
    gate: dict | None = None
    report: dict | None = None
    error: str | None = None
    newest_episode: int = 0

    def public(self) -> dict:
        out = asdict(self)
        out["object"] = "sleep.job"
        return out


class Nights:
    """Night jobs: queued, run one at a time in a child process, swapped in when accepted."""

    def __init__(self, cfg, tenants, metrics):
        self.cfg, self.tenants, self.metrics = cfg, tenants, metrics
        self.jobs: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._process = None
        self._closing = threading.Event()
        self.last_night: dict = {}                       # tenant -> newest episode id it saw
        self.thread = threading.Thread(target=self._run, name="reverie-nights", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------ API
    def start(self, tenant: str, trigger: str = "request") -> Job:
        """Queue a night for `tenant`, or return the one already queued or running."""
        with self._lock:
            for job in self.jobs.values():
                if job.tenant == tenant and job.status in ("queued", "running"):
                    return job
            job = Job(f"sleep_{uuid.uuid4().hex[:16]}", tenant, trigger)
            self.jobs[job.id] = job
            while len(self.jobs) > self.cfg.jobs_remembered:
                oldest = next(iter(self.jobs.values()))
                if oldest.status not in FINISHED:
                    break
                self.jobs.popitem(last=False)
        self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def running(self) -> Job | None:
        return next((j for j in list(self.jobs.values()) if j.status == "running"), None)

    def busy(self, tenant: str) -> bool:
        return any(j.tenant == tenant and j.status in ("queued", "running")
                   for j in list(self.jobs.values()))

    def close(self):
        self._closing.set()
        self._queue.put(None)
        p = self._process
        if p is not None and p.is_alive():
            p.terminate()
            p.join(10)
        self.thread.join(15)

    # ------------------------------------------------------------ the job thread
    def _run(self):
        while not self._closing.is_set():
            job_id = self._queue.get()
            if job_id is None:
                return
            job = self.jobs.get(job_id)
            if job is None or job.status != "queued":
                continue
            try:
                self._night(job)
            except Exception as e:        # noqa: BLE001 - a failed night never kills the thread
                log.exception("night %s failed", job.id)
                job.status, job.error = "failed", f"{e.__class__.__name__}: {e}"
            job.finished_at = job.finished_at or time.time()
            self.metrics.inc("reverie_nights_total", tenant=job.tenant, outcome=job.status)

    def _night(self, job: Job):
        tenant = self.tenants.get(job.tenant)
        _, _, job.newest_episode = tenant.unconsolidated()
        job.previous = tenant.serving.snapshot
        tenant.forgotten_during_night = set()
        job.status, job.started_at = "running", time.time()
        ctx = multiprocessing.get_context("spawn")
        events = ctx.Queue()
        self._process = p = ctx.Process(
            target=night_process, name=f"reverie-night-{job.tenant}", daemon=True,
            args=(str(tenant.dir), tenant.name, self.cfg.model, self.cfg.sleep, self.cfg.memory,
                  self.cfg.night_threads, events))
        p.start()
        deadline = time.monotonic() + self.cfg.night_timeout_s
        outcome = None
        while outcome is None:
            try:
                kind, payload = events.get(timeout=0.5)
            except queue.Empty:
                if self._closing.is_set() or time.monotonic() > deadline:
                    p.terminate()
                    outcome = ("error", "night stopped: " + ("service closing" if
                               self._closing.is_set() else f"over night_timeout_s="
                               f"{self.cfg.night_timeout_s:g}"))
                elif not p.is_alive():
                    outcome = ("error", f"night process exited with code {p.exitcode}")
                continue
            if kind == "progress":
                job.progress = payload
            else:
                outcome = (kind, payload)
        p.join(30)
        self._process = None
        self.last_night[job.tenant] = job.newest_episode
        if outcome[0] == "error":
            job.status, job.error = "failed", outcome[1]
            tenant.refresh_memory()
            return
        self._conclude(job, tenant, outcome[1])

    def _conclude(self, job: Job, tenant, report: dict):
        job.report, job.gate = report, report.get("gate")
        job.snapshot = report.get("snapshot")
        if report.get("skipped") and not job.snapshot:
            job.status, job.accepted = "skipped", False
            return
        # until the gate lands, a committed snapshot without a verdict is an accepted one
        job.accepted = bool(report.get("accepted", job.snapshot is not None))
        self.metrics.inc("reverie_gate_decisions_total",
                         decision="accept" if job.accepted else "reject")
        if not job.accepted or not job.snapshot:
            job.status = "rejected"
            tenant.refresh_memory()
            return
        forgotten = tenant.forgotten_during_night & set(self._episodes_of(tenant, job.snapshot))
        if forgotten:
            # why: the snapshot learned an episode the user deleted while it trained
            self._undo(tenant, job, forgotten)
            return
        tenant.swap(job.snapshot, self.tenants.base)
        job.status, job.swapped_at = "succeeded", time.time()
        self.metrics.inc("reverie_swaps_total", tenant=tenant.name)

    @staticmethod
    def _episodes_of(tenant, snapshot: str) -> list:
        import json
        try:
            m = json.loads((tenant.dir / "snapshots" / snapshot / "manifest.json").read_text())
        except (OSError, ValueError):
            return []
        eps = m.get("episodes", [])
        return [int(e) for e in eps] if isinstance(eps, list) else []

    def _undo(self, tenant, job: Job, forgotten: set):
        """Put back the snapshot that served before the night and mark its episodes new."""
        tenant.point_active(job.previous)
        with tenant.lock:
            store = tenant.memory.store
            with store.transaction():
                for eid in self._episodes_of(tenant, job.snapshot):
                    if store.get(tenant.name, [eid]):
                        store.update(tenant.name, eid, status="new", snapshot=None)
        tenant.swap(job.previous, self.tenants.base)
        job.status, job.accepted = "rejected", False
        job.error = (f"episode(s) {sorted(forgotten)} were forgotten while the night trained "
                     f"on them; the snapshot {job.snapshot} was discarded")


class Scheduler:
    """Starts a night for a tenant when the service has been idle `idle_night_s` or the tenant's
    unconsolidated priority passes `priority_night`, and only if episodes arrived since its
    last night (a rejected night is not retried on the same episodes)."""

    def __init__(self, cfg, tenants, nights, activity):
        self.cfg, self.tenants, self.nights, self.activity = cfg, tenants, nights, activity
        self._stop = threading.Event()
        self.thread = None
        if cfg.idle_night_s > 0 or cfg.priority_night > 0:
            self.thread = threading.Thread(target=self._run, name="reverie-scheduler",
                                           daemon=True)
            self.thread.start()

    def _run(self):
        while not self._stop.wait(self.cfg.scheduler_poll_s):
            try:
                self.tick()
            except Exception:              # noqa: BLE001 - the scheduler outlives a bad tick
                log.exception("scheduler tick failed")

    def tick(self) -> list:
        started = []
        idle = self.activity.idle_seconds()
        for tenant in self.tenants.all():
            if self.nights.busy(tenant.name):
                continue
            count, priority, newest = tenant.unconsolidated()
            if count == 0 or newest <= self.nights.last_night.get(tenant.name, 0):
                continue
            trigger = None
            if self.cfg.priority_night > 0 and priority >= self.cfg.priority_night:
                trigger = "priority"
            elif self.cfg.idle_night_s > 0 and idle >= self.cfg.idle_night_s:
                trigger = "idle"
            if trigger:
                started.append(self.nights.start(tenant.name, trigger))
        return started

    def close(self):
        self._stop.set()
        if self.thread:
            self.thread.join(5)
