"""The store: round trip, migrations, namespaces, bad input, forget/prune leave no trace.

Fast: a hashing embedder stands in for MiniLM (recall quality is tested in test_memory_recall).
"""

import json
import sqlite3

import numpy as np
import pytest

from reverie.errors import ReverieError
from reverie.memory import Memory, MemoryConfig
from reverie.memory.embedder import HashingEmbedder
from reverie.memory.salience import DAY
from reverie.memory.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore, statements


def open_memory(path, **cfg):
    clock = {"now": 1_000_000.0}
    m = Memory(path, MemoryConfig(**cfg), embedder=HashingEmbedder(), now=lambda: clock["now"])
    m.clock = clock
    return m


def db_bytes(path) -> bytes:
    return b"".join(p.read_bytes() for p in path.glob("memory.sqlite*"))


def test_round_trip_survives_reopen(tmp_path):
    m = open_memory(tmp_path)
    rec = {"text": "Ada Lowell  works for\nAcme Corp.", "source": "chat", "pinned": True,
           "metadata": {"turn": 3}, "feedback": 0.5}
    (r,) = m.ingest([rec], "alpha")
    m.close()
    m = open_memory(tmp_path)
    e = m.get(r.id, "alpha")
    assert (e.text, e.source, e.pinned, e.metadata, e.status) == (
        "Ada Lowell works for Acme Corp.", "chat", True, {"turn": 3}, "new")
    assert e.feedback == 0.5 and e.entity_novelty == 1.0 and e.novelty == 1.0
    assert m.store.integrity() == "ok"
    assert m.stats("alpha")["dense_index"] == 1     # rebuilt from the stored embedding


def test_exact_and_near_repeats_strengthen_the_original(tmp_path):
    m = open_memory(tmp_path)
    first = m.ingest(["Ada Lowell works for Acme Corp."], "a")[0]
    before = m.get(first.id, "a").priority
    again = m.ingest(["ada lowell works for acme corp.", "Ada Lowell works for Acme Corp."], "a")
    assert [(r.id, r.repeat) for r in again] == [(first.id, True), (first.id, True)]
    e = m.get(first.id, "a")
    assert e.repeats == 2 and e.priority == pytest.approx(before * (1 + 0.5 * np.log(3)))
    assert m.stats("a")["episodes"] == 1


def test_claim_texts_are_embedded_once_across_batches(tmp_path):
    calls = []
    inner = HashingEmbedder()
    m = open_memory(tmp_path)
    m._claim_embed.embed = lambda texts: calls.append(list(texts)) or inner(texts)
    m.ingest(["Ada Lowell works for Acme Corp. She lives in Oslo."], "a")
    m.ingest(["Ada Lowell works for Brightline Freight.",
              "Omar Novak works for Acme Corp."], "a")
    m.ingest(["Omar Novak works for Brightline Freight."], "a")
    # the first batch compares nothing; the second embeds Ada's claims, old and new, once
    # each; the third finds every text (Omar's frame, his firms) already embedded
    assert calls == [["Someone works for something.", "Brightline Freight", "Acme Corp",
                      "Someone lives in something.", "Oslo"]]


def test_namespaces_are_isolated(tmp_path):
    m = open_memory(tmp_path)
    (a,) = m.ingest(["Zelda Quill keeps bees in Oslo."], "tenant-a")
    m.ingest(["Omar Novak sails boats in Lagos."], "tenant-b")
    assert [e.id for e in m.recall("bees Oslo Zelda", "tenant-b")] != [a.id]
    assert all(e.namespace == "tenant-b" for e in m.recall("bees Oslo Zelda", "tenant-b"))
    assert m.store.lexical("tenant-b", ["zelda", "bees"], 10) == []
    with pytest.raises(ReverieError, match="no episode"):
        m.get(a.id, "tenant-b")
    with pytest.raises(ReverieError, match="no episode"):
        m.forget(a.id, "tenant-b")
    assert m.get(a.id, "tenant-a").text.startswith("Zelda")
    with pytest.raises(ReverieError, match="unknown namespace 'nobody'"):
        m.recall("bees", "nobody")
    with pytest.raises(ReverieError, match="invalid namespace"):
        m.ingest(["x"], "../etc")


@pytest.mark.parametrize("bad, message", [
    ("", "empty"), ("   \n\t ", "empty"), (b"caf\xe9 au lait", "not valid UTF-8"),
    ("x" * 10_000_001, "over max_text_bytes"), ({"txt": "typo"}, "unknown field"),
    ({"text": 5}, "must be a string"), ("nul\x00byte", "NUL"), ("lone \udcff", "surrogates"),
    ({"text": "a", "feedback": 7}, "feedback"), (["not", "a", "record"], "expected text"),
])
def test_bad_input_is_a_clear_error_and_stores_nothing(tmp_path, bad, message):
    m = open_memory(tmp_path)
    m.ingest(["Keep me."], "ns")
    with pytest.raises(ReverieError, match=message):
        m.ingest(["A good one that must not be stored either.", bad], "ns")
    assert m.stats("ns")["episodes"] == 1
    assert m.store.integrity() == "ok"


def test_sql_looking_text_is_stored_verbatim_and_searchable(tmp_path):
    m = open_memory(tmp_path)
    evil = ["Robert'); DROP TABLE episodes;--", 'x" OR 1=1 -- NEAR(a b) AND text:*',
            "SELECT * FROM claims WHERE 1; DELETE FROM entities"]
    ids = [r.id for r in m.ingest(evil, "ns")]
    assert [e.text for e in m.store.get("ns", ids)] == evil
    for query in evil + ['"', "*", "NEAR(", "AND OR NOT"]:
        m.recall(query, "ns")                        # never an FTS5 syntax error
    assert m.recall("DROP TABLE episodes", "ns")[0].id == ids[0]
    assert m.store.integrity() == "ok" and m.stats("ns")["episodes"] == 3


def test_forget_leaves_no_trace_in_any_index_or_file(tmp_path):
    m = open_memory(tmp_path)
    keep = m.ingest(["Ordinary note about lunch."], "ns")[0]
    gone = m.ingest(["Xylophonic Quibblefritz owns the zzsecretzz vault."], "ns")[0]
    assert m.recall("zzsecretzz", "ns")[0].id == gone.id
    assert b"zzsecretzz" in db_bytes(tmp_path)
    m.forget(gone.id, "ns")
    assert m.store.get("ns", [gone.id]) == []
    assert m.store.lexical("ns", ["zzsecretzz", "quibblefritz"], 10) == []
    assert not m.index.contains("ns", gone.id) and m.index.size("ns") == 1
    assert [e.id for e in m.recall("zzsecretzz vault", "ns")] == [keep.id]
    assert m.store.claims_of("ns", [gone.id]) == []
    assert m.store.entities_known("ns", ["Xylophonic Quibblefritz"]) == set()
    m.close()
    assert b"zzsecretzz" not in db_bytes(tmp_path) and b"Quibblefritz" not in db_bytes(tmp_path)
    m = open_memory(tmp_path)                        # the rebuilt index does not hold it either
    assert m.stats("ns")["dense_index"] == 1
    forgotten = m.store.conn.execute("SELECT id, reason FROM forgotten").fetchall()
    assert [tuple(r) for r in forgotten] == [(gone.id, "forget")]


def test_prune_release_reservoir_ttl_capacity(tmp_path):
    m = open_memory(tmp_path, reservoir=3, capacity=6, ttl_days=10, evict_below=0.3,
                    release_after_days=2)
    ids = [r.id for r in m.ingest([f"Consolidated fact number {w} about {w}s." for w in
                                   ("apple", "pear", "plum", "fig", "kiwi")], "ns")]
    m.mark_consolidated(ids, snapshot="snap-1", namespace="ns")
    report = m.prune("ns")                            # within the grace: still recalled
    assert report["released"] == 0 and m.stats("ns")["by_status"] == {"consolidated": 5}
    assert m.recall("apple fact", "ns")[0].id == ids[0]
    m.clock["now"] += 3 * DAY
    report = m.prune("ns")
    assert (report["released"], report["reservoir"], report["released_deleted"]) == (5, 3, 2)
    assert m.stats("ns")["by_status"] == {"released": 3}
    assert len(m.rehearsal("ns", n=2)) == 2 and len(m.rehearsal("ns", n=10)) == 3
    assert m.index.size("ns") == 0 and m.recall("apple fact", "ns") == []

    m.clock["now"] += 27 * DAY       # old, faded, but new: no night learned them, they stay
    fresh = [r.id for r in m.ingest([{"text": f"note {i} about the {w}", "created_at": 0.0,
                                      "pinned": i == 0}
                                     for i, w in enumerate(("lamp", "desk", "door"))], "ns")]
    report = m.prune("ns")
    assert report["ttl_evicted"] == 0 and m.store.get("ns", fresh[:1])[0].pinned
    assert len(m.store.get("ns", fresh)) == 3

    many = [r.id for r in m.ingest([f"new note about topic {w}" for w in
                                    ("alpha", "beta", "gamma", "delta", "omega")], "ns")]
    m.feedback(many[0], "ns")
    report = m.prune("ns")       # 11 over a capacity of 6: the 3 released go, 2 too many stay
    assert report["capacity_evicted"] == 3 and report["episodes"] == 8
    assert report["over_capacity"] == 2 and m.stats("ns")["by_status"] == {"new": 8}
    assert m.store.get("ns", [many[0]]), "the episode with feedback outranks the rest"
    assert m.index.size("ns") == len(m.store.vectors("ns")[0])
    assert m.store.integrity() == "ok"


def test_private_episodes_are_never_consolidated(tmp_path):
    m = open_memory(tmp_path)
    (p,) = m.ingest([{"text": "My diary entry.", "private": True}], "ns")
    assert m.select_for_sleep("ns") == []
    with pytest.raises(ReverieError, match="private"):
        m.mark_consolidated([p.id], "snap", "ns")


def test_migration_from_v1_keeps_episodes(tmp_path):
    path = tmp_path / "memory.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for s in statements(MIGRATIONS[1]):
        conn.execute(s)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO namespaces VALUES ('old', 0)")
    conn.execute("INSERT INTO episodes (namespace, text, created_at, embedding, content_hash) "
                 "VALUES ('old', 'Stored before v2.', 0, ?, 'h')",
                 (np.ones(256, np.float32).tobytes(),))
    conn.close()
    store = SQLiteStore(path)
    assert store.migrated_from == 1
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    plan = store.conn.execute("EXPLAIN QUERY PLAN SELECT id FROM episodes WHERE namespace = ? "
                              "AND pinned = 1", ("old",)).fetchall()
    assert "episodes_pinned" in str([tuple(r) for r in plan])
    (e,) = store.get("old", [1])
    assert (e.text, e.entity_novelty, e.superseded_by, e.reservoir, e.consolidated_at) == (
        "Stored before v2.", 0.0, None, False, None)
    assert store.lexical("old", ["stored"], 5) == [1]
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(ReverieError, match="newer than this reverie"):
        SQLiteStore(path)


def test_jsonl_and_text_lines_parse(tmp_path):
    from reverie.memory.records import parse_lines
    data = b'plain line\n\n{"text": "json line", "pinned": true}\n'
    assert parse_lines(data) == ["plain line", {"text": "json line", "pinned": True}]
    with pytest.raises(ReverieError, match="line 2: not valid UTF-8"):
        parse_lines(b"ok\nbad \xff\n")
    with pytest.raises(ReverieError, match="line 1: invalid JSON"):
        parse_lines(b'{"text": oops}\n')
    assert json.loads(json.dumps(parse_lines(b"x\n")))


def _batches_doubled():
    from reverie.memory import parallel
    return parallel.map_batches(lambda b: 2 * b, [1, 2, 3])


def test_worker_batches_keep_order_and_survive_a_fork():
    import multiprocessing
    assert _batches_doubled() == [2, 4, 6]            # the parent's workers now exist
    with multiprocessing.get_context("fork").Pool(1) as child:
        # why: a forked child inherits the pool object but none of its threads
        assert child.apply_async(_batches_doubled).get(timeout=60) == [2, 4, 6]
