"""Nights in the background: a job queue, the night's own process, the swap, the scheduler.

A night runs in a separate process (multiprocessing spawn) with `night_threads` torch threads, so
the service keeps answering on the rest of the cores. The child opens the tenant's data directory
through the facade and runs `Reverie.sleep`: the gate judges, the snapshot is committed, `active`
moves, episodes are marked consolidated and pruned, all on disk. The parent reads its progress
from a queue; when the night was accepted it loads the snapshot and swaps the tenant's Serving in
one assignment, and recall re-reads the statuses the child wrote.

A deletion of a consolidated episode is the same kind of job (`Reverie.forget` in a child: the
weights are rebuilt without it). Episodes deleted while a night trained on them are forgotten
from its snapshot before that snapshot serves.

One job runs at a time (the machine's cores are the limit); further ones queue.
"""

import json
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

log = logging.getLogger("reverie.serve")
FINISHED = ("succeeded", "rejected", "skipped", "failed")
KINDS = ("sleep", "forget")


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


def child(kind: str, tenant_dir: str, namespace: str, model: str, sleep_cfg, memory_cfg,
          gate_cfg, threads: int, episodes: list, events) -> None:
    """The child process: one night (`Reverie.sleep`) or one deletion that reaches the weights
    (`Reverie.forget`) over the tenant's data directory, through the facade. Reports through
    `events`: ("progress", {...}), then ("done", report) or ("error", message)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    torch.set_num_threads(threads)
    from reverie.errors import ReverieError
    from reverie.lifecycle import Reverie
    try:
        r = Reverie(tenant_dir, model=model, sleep=sleep_cfg, memory=memory_cfg,
                    namespace=namespace, gate=gate_cfg)
        last = [0.0]

        def progress(**kw):
            if "message" in kw or time.monotonic() - last[0] > 0.5:
                last[0] = time.monotonic()
                events.put(("progress", _jsonable(kw)))

        report = r.sleep(progress=progress) if kind == "sleep" else r.forget(episodes)
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
    trigger: str                          # request, idle, priority or delete
    kind: str = "sleep"                   # sleep, or forget (a deletion reaching the weights)
    episodes: list = field(default_factory=list)   # forget: the episode ids
    status: str = "queued"                # queued, running, then one of FINISHED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    swapped_at: float | None = None
    progress: dict = field(default_factory=dict)
    accepted: bool | None = None
    snapshot: str | None = None           # what serves after the job
    previous: str | None = None           # what served when it started
    gate: dict | None = None
    report: dict | None = None
    forgot: list = field(default_factory=list)   # episodes deleted while the night trained
    error: str | None = None
    newest_episode: int = 0

    def public(self) -> dict:
        out = asdict(self)
        out["object"] = "sleep.job" if self.kind == "sleep" else "forget.job"
        return out


class Nights:
    """Jobs that change a tenant's weights: queued, run one at a time in a child process, then
    the tenant is synced to what `active` names."""

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
    def start(self, tenant: str, trigger: str = "request", kind: str = "sleep",
              episodes=()) -> Job:
        """Queue a job. A night already queued or running for the tenant is returned instead of
        a second one; a deletion joins a deletion still queued."""
        with self._lock:
            for job in self.jobs.values():
                if job.tenant != tenant or job.kind != kind:
                    continue
                if kind == "sleep" and job.status in ("queued", "running"):
                    return job
                if kind == "forget" and job.status == "queued":
                    job.episodes = sorted(set(job.episodes) | set(episodes))
                    return job
            job = Job(f"{kind}_{uuid.uuid4().hex[:16]}", tenant, trigger, kind,
                      sorted(set(episodes)))
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
                self._job(job)
            except Exception as e:        # noqa: BLE001 - a failed job never kills the thread
                log.exception("job %s failed", job.id)
                job.status, job.error = "failed", f"{e.__class__.__name__}: {e}"
            job.finished_at = job.finished_at or time.time()
            if job.kind == "sleep":
                self.metrics.inc("reverie_nights_total", tenant=job.tenant, outcome=job.status)

    def _job(self, job: Job):
        tenant = self.tenants.get(job.tenant)
        _, _, job.newest_episode = tenant.unconsolidated()
        job.previous = tenant.serving.snapshot
        tenant.forgotten_during_night = set()
        job.status, job.started_at = "running", time.time()
        kind, report = self._child(job, tenant, job.kind, job.episodes)
        if job.kind == "sleep":
            self.last_night[job.tenant] = job.newest_episode
        if kind == "error":
            job.status, job.error = "failed", report
            tenant.refresh_memory()
            return
        job.report, job.gate = report, report.get("gate")
        if job.kind == "forget":
            self._sync(job, tenant)
            return
        if report.get("skipped") and not report.get("snapshot"):
            job.status, job.accepted = "skipped", False
            tenant.refresh_memory()
            return
        # a facade without a gate reports no verdict: a committed snapshot is an accepted one
        job.accepted = bool(report.get("accepted", report.get("snapshot") is not None))
        self.metrics.inc("reverie_gate_decisions_total",
                         decision="accept" if job.accepted else "reject")
        if not job.accepted or not report.get("snapshot"):
            job.status = "rejected"
            tenant.refresh_memory()
            return
        forgot = sorted(tenant.forgotten_during_night &
                        set(self._episodes_of(tenant, report["snapshot"])))
        if forgot:
            # why: the snapshot learned episodes a user deleted while it trained; take them out
            # of the weights before it serves a single request
            job.forgot = forgot
            job.progress = {"message": f"forgetting episodes {forgot} the night trained on"}
            kind, detail = self._child(job, tenant, "forget", forgot)
            if kind == "error":
                job.error = f"forgetting {forgot} after the night failed: {detail}"
        self._sync(job, tenant)

    def _sync(self, job: Job, tenant):
        serving = tenant.sync(self.tenants.base)
        job.snapshot = serving.snapshot
        job.status = "failed" if job.error else "succeeded"
        if serving.snapshot != job.previous:
            job.swapped_at = time.time()
            self.metrics.inc("reverie_swaps_total", tenant=tenant.name)

    def _child(self, job: Job, tenant, kind: str, episodes: list) -> tuple[str, object]:
        """Run one child process to its end -> ("done", report) or ("error", message)."""
        ctx = multiprocessing.get_context("spawn")
        events = ctx.Queue()
        self._process = p = ctx.Process(
            target=child, name=f"reverie-{kind}-{job.tenant}", daemon=True,
            args=(kind, str(tenant.dir), tenant.name, self.cfg.model, self.cfg.sleep,
                  self.cfg.memory, self.cfg.gate, self.cfg.night_threads, list(episodes), events))
        p.start()
        deadline = time.monotonic() + self.cfg.night_timeout_s
        outcome = None
        while outcome is None:
            try:
                kind_, payload = events.get(timeout=0.5)
            except queue.Empty:
                if self._closing.is_set() or time.monotonic() > deadline:
                    p.terminate()
                    outcome = ("error", "stopped: " + ("service closing" if
                               self._closing.is_set() else f"over night_timeout_s="
                               f"{self.cfg.night_timeout_s:g}"))
                elif not p.is_alive():
                    outcome = ("error", f"the {kind} process exited with code {p.exitcode}")
                continue
            if kind_ == "progress":
                job.progress = payload
            else:
                outcome = (kind_, payload)
        p.join(30)
        self._process = None
        return outcome

    @staticmethod
    def _episodes_of(tenant, snapshot: str) -> list:
        try:
            m = json.loads((tenant.dir / "snapshots" / snapshot / "manifest.json").read_text())
        except (OSError, ValueError):
            return []
        eps = m.get("episodes", [])
        return [int(e) for e in eps] if isinstance(eps, list) else []


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
