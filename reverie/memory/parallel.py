"""Batches of a small model run side by side on single-threaded workers.

Why: the hippocampus's models are small (MiniLM, the world model), so each op is too small to
split well across threads, and under OMP_WAIT_POLICY=PASSIVE (the CLI sets it, so idle threads
do not spin against other processes) every op also pays to wake the sleeping team. One batch per
worker, each worker one thread, keeps every core busy with whole batches instead. Measured on 2
cores, MiniLM over 768 lines of chatter (PASSIVE): 230-258/s with 2 intra-op threads, 300-319/s
with 2 workers of one thread each.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_POOL: dict = {}
_LOCK = threading.Lock()


def _one_thread() -> None:
    import torch
    torch.get_num_threads()      # why: torch sets a thread's count lazily on first use; do it now
    torch.set_num_threads(1)


def pool() -> ThreadPoolExecutor | None:
    """The process's workers (one per intra-op thread torch had), or None on one thread."""
    import torch
    with _LOCK:
        if _POOL.get("pid") != os.getpid():      # why: a forked child has no worker threads
            _POOL.clear()
            _POOL["pid"] = os.getpid()
        if "pool" not in _POOL:
            n = torch.get_num_threads()
            workers = None
            if n > 1:
                workers = ThreadPoolExecutor(n, thread_name_prefix="reverie-memory",
                                             initializer=_one_thread)
                ready = threading.Barrier(n)
                list(workers.map(lambda _: ready.wait(), range(n)))   # start every worker now
                # why: set_num_threads also moved the default of threads started later; only
                # the workers are meant to run on one thread
                torch.set_num_threads(n)
            _POOL["pool"] = workers
        return _POOL["pool"]


def map_batches(fn, batches: list) -> list:
    """[fn(b) for b in batches] on the workers, a single batch too (one short query embeds in
    8 ms on one thread, 12 ms on two); inline where the caller runs torch on one thread (a
    process limited to one thread stays on one)."""
    import torch
    workers = pool() if batches and torch.get_num_threads() > 1 else None
    if workers is None:
        return [fn(b) for b in batches]
    return list(workers.map(fn, batches))
