"""Recall queries embedded together: the memory's embedder, wrapped.

Why: a recall spends most of its time embedding the query (MiniLM, about 18 ms on one core),
and it runs under the tenant's memory lock, so 16 concurrent requests wait for 16 embeddings in
a row. Request threads call `prefetch(query)` before they take the lock; queries that arrive
within `window_ms` are embedded in one batch and cached, and the recall under the lock finds its
vector there. Texts that were not prefetched (ingest, supersede) pass straight through.
"""

import threading
import time
from collections import OrderedDict

import numpy as np


class BatchedQueries:
    def __init__(self, memory_cfg, window_ms: float = 3.0, cache_size: int = 4096, inner=None):
        self.cfg, self.window, self.cache_size = memory_cfg, window_ms / 1000.0, cache_size
        self._inner = inner
        self._cache: OrderedDict = OrderedDict()      # query text -> (dim,) float32
        self._pending: dict = {}                      # query text -> Event set once cached
        self._leading = False
        self._lock = threading.Lock()

    def inner(self):
        if self._inner is None:
            from reverie.memory.embedder import shared
            self._inner = shared(self.cfg.embed_tokens, self.cfg.bf16)
        return self._inner

    def __call__(self, texts: list[str]) -> np.ndarray:
        """texts -> (n, dim) unit vectors, from the cache where a prefetch put them."""
        found, missing = [None] * len(texts), []
        with self._lock:
            for i, t in enumerate(texts):
                v = self._cache.get(t)
                if v is None:
                    missing.append(i)
                else:
                    found[i] = v
        if missing or not texts:
            vectors = self.inner()([texts[i] for i in missing])          # (missing, dim)
            if not texts:
                return vectors
            for i, v in zip(missing, vectors):
                found[i] = v
        return np.stack(found)

    def prefetch(self, text: str) -> None:
        """Embed `text` with the other queries arriving now; returns once it is cached."""
        with self._lock:
            if text in self._cache:
                self._cache.move_to_end(text)
                return
            event = self._pending.setdefault(text, threading.Event())
            lead = not self._leading
            self._leading = True if lead else self._leading
        if not lead:
            event.wait(30)
            return
        time.sleep(self.window)                      # why: let the others of this burst join
        with self._lock:
            batch, self._pending, self._leading = list(self._pending.items()), {}, False
        try:
            vectors = self.inner()([t for t, _ in batch])                 # (batch, dim)
            with self._lock:
                for (t, _), v in zip(batch, vectors):
                    self._cache[t] = v
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        finally:
            for _, e in batch:
                e.set()
