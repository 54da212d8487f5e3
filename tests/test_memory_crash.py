"""Durability: SIGKILL a process in the middle of ingesting, 24 times at random points; every
acknowledged episode is there after restart, in-flight batches are all-or-nothing, and both
SQLite's and FTS5's integrity checks pass."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from reverie.memory import Memory
from reverie.memory.embedder import HashingEmbedder

ROOT = Path(__file__).resolve().parent.parent
KILLS = 24

CHILD = r"""
import random, sys
from reverie.memory import Memory
from reverie.memory.embedder import HashingEmbedder
run, path = int(sys.argv[1]), sys.argv[2]
m = Memory(path, embedder=HashingEmbedder())
rng = random.Random(run)
print("ready", flush=True)
for b in range(100000):
    n = rng.randint(1, 24)
    texts = [f"Run {run} batch {b} item {i}: Person{rng.randint(0, 99)} Name{i} visited "
             f"place {rng.randint(0, 10**9)} with token{rng.randint(0, 10**6)}." for i in range(n)]
    print(f"begin {b} {n}", flush=True)
    ids = [r.id for r in m.ingest(texts, "crash")]
    print("ack " + " ".join(f"{i}:{r}" for i, r in enumerate(ids)) + f" batch={b}", flush=True)
"""


def _count(m, run, batch) -> int:
    return m.store.conn.execute("SELECT count(*) FROM episodes WHERE text LIKE ?",
                                (f"Run {run} batch {batch} item %",)).fetchone()[0]


def test_sigkill_mid_ingest_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(1234)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    acked_total = landed = 0
    for run in range(KILLS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(run), str(tmp_path)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                 text=True)
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        head = [child.stdout.readline()]              # the first batch is acknowledged ...
        while not head[-1].startswith("ack "):
            head.append(child.stdout.readline())
        time.sleep(rng.uniform(0.0, 0.3))             # ... then a random point of the loop
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        out = "".join(head) + out
        assert child.returncode == -signal.SIGKILL
        acked, begun = {}, []
        for line in out.splitlines():
            if line.startswith("begin "):
                begun.append(int(line.split()[1]))
            elif line.startswith("ack "):
                *pairs, batch = line.split()[1:]
                acked[int(batch.split("=")[1])] = [int(p.split(":")[1]) for p in pairs]
        assert acked, f"run {run}: the child acknowledged nothing before the kill"
        m = Memory(tmp_path, embedder=HashingEmbedder())
        for batch, ids in acked.items():
            got = m.store.get("crash", ids)
            assert [e.id for e in got] == ids, f"run {run} batch {batch}: acknowledged ids lost"
            assert all(e.text.startswith(f"Run {run} batch {batch} item ") for e in got)
        in_flight = [b for b in begun if b not in acked]
        landed += bool(in_flight)
        for b in in_flight:                            # all or nothing, never half a batch
            n = [int(l.split()[2]) for l in out.splitlines() if l.startswith(f"begin {b} ")][0]
            assert _count(m, run, b) in (0, n), f"run {run} batch {b}: half stored"
        assert m.store.integrity() == "ok"
        m.store.conn.execute("INSERT INTO episodes_fts(episodes_fts) VALUES ('integrity-check')")
        n_db = m.store.conn.execute("SELECT count(*) FROM episodes").fetchone()[0]
        assert m.stats("crash")["dense_index"] == n_db
        acked_total += sum(map(len, acked.values()))
        m.close()
    assert acked_total > KILLS * 10
    assert landed >= KILLS // 3, "too few kills landed inside an ingest call"
