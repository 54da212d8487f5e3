"""Prometheus text exposition (format 0.0.4), with no client library: counters, one latency
histogram, and gauges read at scrape time."""

import threading
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)   # seconds


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    esc = lambda v: str(v).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")  # noqa
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items())) + "}"


class Metrics:
    HELP = {
        "reverie_requests_total": ("counter", "HTTP requests by route, method and status"),
        "reverie_request_seconds": ("histogram", "HTTP request latency by route, seconds"),
        "reverie_generated_tokens_total": ("counter", "completion tokens generated"),
        "reverie_prompt_tokens_total": ("counter", "prompt tokens read"),
        "reverie_batches_total": ("counter", "batched generation calls of the model worker"),
        "reverie_batch_sequences_total": ("counter", "sequences decoded in those batches"),
        "reverie_episodes_ingested_total": ("counter", "episodes stored, by tenant"),
        "reverie_nights_total": ("counter", "nights finished, by tenant and outcome"),
        "reverie_gate_decisions_total": ("counter", "gate decisions, by decision"),
        "reverie_swaps_total": ("counter", "hot swaps of a tenant's serving snapshot"),
    }

    def __init__(self):
        self._lock = threading.Lock()
        self.counters: dict = defaultdict(float)              # (name, labels tuple) -> value
        self.hist: dict = {}                                  # labels tuple -> [counts, sum, n]
        self.gauges = []                                      # callables -> [(name, labels, v)]

    def inc(self, name: str, value: float = 1.0, **labels):
        with self._lock:
            self.counters[(name, tuple(sorted(labels.items())))] += value

    def observe(self, seconds: float, **labels):
        key = tuple(sorted(labels.items()))
        with self._lock:
            h = self.hist.setdefault(key, [[0] * len(BUCKETS), 0.0, 0])
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    h[0][i] += 1
            h[1] += seconds
            h[2] += 1

    def render(self) -> str:
        lines, seen = [], set()

        def head(name, kind=None, help=None):
            if name not in seen:
                seen.add(name)
                kind, help = self.HELP.get(name, (kind, help))
                lines.append(f"# HELP {name} {help}")
                lines.append(f"# TYPE {name} {kind}")

        with self._lock:
            counters = sorted(self.counters.items())
            hist = sorted(self.hist.items())
        for (name, labels), v in counters:
            head(name)
            lines.append(f"{name}{_labels(dict(labels))} {v:g}")
        name = "reverie_request_seconds"
        for labels, (counts, total, n) in hist:
            head(name)
            for b, c in zip(BUCKETS, counts):
                lines.append(f"{name}_bucket{_labels({**dict(labels), 'le': f'{b:g}'})} {c}")
            lines.append(f"{name}_bucket{_labels({**dict(labels), 'le': '+Inf'})} {n}")
            lines.append(f"{name}_sum{_labels(dict(labels))} {total:.6f}")
            lines.append(f"{name}_count{_labels(dict(labels))} {n}")
        for gauge in self.gauges:
            for gname, help, labels, v in gauge():
                head(gname, "gauge", help)
                lines.append(f"{gname}{_labels(labels)} {v:g}")
        return "\n".join(lines) + "\n"
