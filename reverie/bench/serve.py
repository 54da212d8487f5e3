"""`reverie bench serve`: the service under load while it sleeps.

One run reads top to bottom: start the service on loopback (configs/serve-small.yaml) -> tenant A
is taught people of the world stream -> the frozen model's answers to A's questions (tenant B,
recall off: the chance rate) -> `clients` threads ask A's questions for `seconds`, a quarter of
them streamed; a night starts at `night_at` and swaps when it ends; the load goes on until
then and `idle_after` seconds past it -> tenant B asks `isolation_questions` about A's facts,
recall on and off -> figures.

Latency is split by whether a request overlapped the night (night) or not (idle). A request
"mixes" snapshots if it started after a response from the new snapshot and was answered by the
old one; the figure is `stale_after_swap` (expected 0).
"""

import http.client
import json
import random
import tempfile
import threading
import time
from dataclasses import dataclass

import numpy as np

from reverie.config import field, positive

KEY_A, KEY_B, ADMIN = "bench-a", "bench-b", "bench-admin"


@dataclass
class ServeBenchConfig:
    clients: int = field(16, "concurrent clients")
    seconds: float = field(60.0, "shortest load, seconds (it goes on past the swap)")
    night_at: float = field(5.0, "when the night starts, seconds into the load (< 0: no night)")
    idle_after: float = field(10.0, "load kept on after the swap, seconds (idle latency is "
                                    "measured before the night and after it)")
    people: int = field(4, "people tenant A is taught (one biography episode each)")
    epochs: float = field(1.0, "the night's epochs (1: a short night; 12 learns the facts)")
    isolation_questions: int = field(50, "questions tenant B asks about A's facts, per switch")
    model: str = field("world", "base model")
    gate: bool = field(True, "judge the night with the gate (off: the completed night swaps)")
    seed: int = field(0, "seed of the people, the questions and the clients")

    def __post_init__(self):
        positive(self, "clients", "seconds", "people", "epochs", "isolation_questions")


class Client:
    """One keep-alive connection; chat requests, whole or streamed."""

    def __init__(self, port: int, key: str):
        self.port, self.key, self.conn, self.reconnects = port, key, None, 0

    def post(self, path: str, body: dict) -> tuple[int, bytes]:
        for attempt in range(2):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            try:
                self.conn.request("POST", path, body=json.dumps(body).encode(), headers={
                    "Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException) as e:
                self.conn.close()
                self.conn = None
                # why: the server closes a keep-alive connection idle past its timeout; a
                # request on it fails before it is read, and is sent again once (counted)
                stale = isinstance(e, (BrokenPipeError, ConnectionResetError,
                                       http.client.RemoteDisconnected))
                if attempt or not (reused and stale):
                    raise
                self.reconnects += 1

    def get(self, path: str) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", path, headers={"Authorization": f"Bearer {self.key}"})
        out = json.loads(conn.getresponse().read())
        conn.close()
        return out

    def chat(self, question: str, stream: bool = False, recall: bool = True) -> dict:
        """-> {status, text, tokens, snapshot}; raises on a transport failure."""
        body = {"model": "world", "messages": [{"role": "user", "content": question}],
                "reverie": {"recall": recall, "store": False}}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        status, data = self.post("/v1/chat/completions", body)
        if status != 200:
            return {"status": status, "text": "", "tokens": 0, "snapshot": None}
        if not stream:
            out = json.loads(data)
            return {"status": status, "text": out["choices"][0]["message"]["content"],
                    "tokens": out["usage"]["completion_tokens"],
                    "snapshot": out["system_fingerprint"]}
        text, tokens, snapshot = "", 0, None
        for line in data.decode().splitlines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return {"status": 500, "text": "", "tokens": 0, "snapshot": None}
            snapshot = chunk.get("system_fingerprint", snapshot)
            for c in chunk.get("choices", []):
                text += c["delta"].get("content") or ""
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
        return {"status": status, "text": text, "tokens": tokens, "snapshot": snapshot}


def _percentiles(ms: list) -> dict:
    if not ms:
        return {"requests": 0, "p50_ms": None, "p99_ms": None}
    return {"requests": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def run(cfg: ServeBenchConfig, progress=None) -> dict:
    import torch

    from reverie import config
    from reverie.serve.config import ServeConfig
    from reverie.serve.server import Running
    from reverie.serve.service import Service
    from reverie.world import render
    from reverie.world.grammar import ATTRIBUTES
    from reverie.world.people import World
    from reverie.world.probes import is_correct
    progress = progress or (lambda **kw: None)
    rng = random.Random(cfg.seed)
    world = World.build()
    people = world.stream[:cfg.people]
    lessons = [render.biography(p, rng) for p in people]
    pairs = [(p, a) for p in people for a in ATTRIBUTES]
    questions = [(render.question(p.name, a, "held_out", rng), p.value(a))
                 for p, a in (pairs[i % len(pairs)] for i in range(cfg.isolation_questions))]

    with tempfile.TemporaryDirectory(prefix="reverie-bench-serve-") as data:
        scfg = config.load(ServeConfig, "serve-small", [
            f"data={data}", f"model={cfg.model}", f"sleep.train.epochs={cfg.epochs}",
            f"sleep.seed={cfg.seed}", f"max_batch={max(16, cfg.clients)}",
            f"gate.enabled={str(cfg.gate).lower()}"])
        torch.set_num_threads(scfg.serving_threads())
        progress(message=f"serving {cfg.model} on {scfg.serving_threads()} thread(s), nights on "
                         f"{scfg.night_threads}")
        with Running(Service(scfg, {KEY_A: "alice", KEY_B: "bob"}, ADMIN)) as server:
            a, b = Client(server.port, KEY_A), Client(server.port, KEY_B)
            status, _ = a.post("/v1/episodes", {"episodes": [{"text": t} for t in lessons]})
            assert status == 201, status
            frozen = [b.chat(q, recall=False)["text"] for q, _ in questions]
            a_before = [a.chat(q, recall=True)["text"] for q, _ in questions]
            figures = _load(cfg, server, questions, progress)
            progress(message="isolation: tenant B asks about tenant A's facts")
            b_on = [b.chat(q, recall=True)["text"] for q, _ in questions]
            b_off = [b.chat(q, recall=False)["text"] for q, _ in questions]
            a_on = [a.chat(q, recall=True)["text"] for q, _ in questions]
            a_off = [a.chat(q, recall=False)["text"] for q, _ in questions]

    def leaks(answers):  # answers holding A's value that the frozen model did not give
        return sum(is_correct(x, v) and not is_correct(f, v)
                   for x, f, (_, v) in zip(answers, frozen, questions))

    def accuracy(answers):
        return round(sum(is_correct(x, v) for x, (_, v) in zip(answers, questions))
                     / len(questions), 3)

    figures["isolation"] = {
        "questions": len(questions), "leaks_recall_on": leaks(b_on),
        "leaks_recall_off": leaks(b_off), "frozen_chance_rate": accuracy(frozen),
        "tenant_b_recall_on": accuracy(b_on), "tenant_b_recall_off": accuracy(b_off),
        "tenant_a_recall_on_before_night": accuracy(a_before),
        "tenant_a_recall_on": accuracy(a_on), "tenant_a_recall_off": accuracy(a_off)}
    figures["leaks"] = leaks(b_on) + leaks(b_off)
    figures["config"] = {**cfg.__dict__, "serving_threads": scfg.serving_threads(),
                         "night_threads": scfg.night_threads, "batch_window_ms":
                         scfg.batch_window_ms}
    return figures


def _load(cfg: ServeBenchConfig, server, questions, progress) -> dict:
    """`clients` threads asking for `seconds`, and until `idle_after` past the swap."""
    records, stop, clients = [], threading.Event(), []
    lock, t0 = threading.Lock(), time.monotonic()

    def client(i):
        rng, c, n = random.Random(cfg.seed * 1000 + i), Client(server.port, KEY_A), 0
        clients.append(c)
        while not stop.is_set():
            q, _ = rng.choice(questions)
            start = time.monotonic()
            try:
                out = c.chat(q, stream=(n % 4 == 3))
            except Exception as e:  # noqa: BLE001 - a failed request is a figure, not a crash
                out = {"status": None, "tokens": 0, "snapshot": None, "error": repr(e)}
            with lock:
                records.append((start - t0, time.monotonic() - t0, out))
            n += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True)
               for i in range(cfg.clients)]
    for t in threads:
        t.start()
    job, night, shown = None, {}, -1
    admin = Client(server.port, KEY_A)
    while True:
        now = time.monotonic() - t0
        if job is None and 0 <= cfg.night_at <= now:
            status, body = admin.post("/v1/sleep", {})
            job = json.loads(body)
            progress(message=f"night {job['id']} started at {now:.1f} s")
        if job is not None and not night.get("finished"):
            state = admin.get(f"/v1/sleep/{job['id']}")
            if state["status"] == "running" and "started" not in night:
                night["started"] = state["started_at"] - time.time() + time.monotonic() - t0
            if state["status"] not in ("queued", "running"):
                night.update(finished=time.monotonic() - t0, job=state)
                progress(message=f"night {state['status']} at {night['finished']:.1f} s")
        done_night = cfg.night_at < 0 or (night.get("finished") is not None and
                                          now >= night["finished"] + cfg.idle_after)
        if now >= cfg.seconds and done_night:
            break
        if int(now) != shown:
            shown = int(now)
            progress(step=shown, total=max(shown, int(cfg.seconds)), requests=len(records))
        time.sleep(0.25)
    stop.set()
    for t in threads:
        t.join(600)
    wall = time.monotonic() - t0

    ok = [r for r in records if r[2]["status"] == 200]
    failed = [r for r in records if r[2]["status"] != 200]
    n_start, n_end = night.get("started", night.get("finished")), night.get("finished")
    in_night = (lambda s, e: n_start is not None and s < n_end and e > n_start)
    idle_ms = [(e - s) * 1000 for s, e, o in ok if not in_night(s, e)]
    night_ms = [(e - s) * 1000 for s, e, o in ok if in_night(s, e)]
    job_state = night.get("job") or {}
    new = job_state.get("snapshot") if job_state.get("status") == "succeeded" else None
    first_new = min((e for s, e, o in ok if new and o["snapshot"] == new), default=None)
    stale = sum(1 for s, e, o in ok if first_new is not None and s > first_new
                and o["snapshot"] != new)
    seen: dict = {}
    for _, _, o in ok:
        seen[o["snapshot"]] = seen.get(o["snapshot"], 0) + 1
    tokens = sum(o["tokens"] for _, _, o in ok)
    return {
        "requests": len(records), "failed_requests": len(failed),
        "errors": sorted({str(o.get("error") or o["status"]) for _, _, o in failed})[:5],
        "seconds": round(wall, 1), "requests_per_s": round(len(ok) / wall, 2),
        "tokens_per_s": round(tokens / wall, 1), "completion_tokens": tokens,
        **{k: v for k, v in _percentiles([(e - s) * 1000 for s, e, _ in ok]).items()
           if k != "requests"},
        "idle": _percentiles(idle_ms), "night": _percentiles(night_ms),
        "night_job": {"status": job_state.get("status"), "accepted": job_state.get("accepted"),
                      "snapshot": job_state.get("snapshot"),
                      "gate": (job_state.get("gate") or {}).get("decision"),
                      "gate_reasons": (job_state.get("gate") or {}).get("reasons"),
                      "started_s": round(n_start, 1) if n_start is not None else None,
                      "swapped_s": round(n_end, 1) if n_end is not None else None,
                      "seconds": round(n_end - n_start, 1) if n_start is not None else None},
        "snapshots_seen": seen, "stale_after_swap": stale,
        "reconnects": sum(c.reconnects for c in clients),
    }
