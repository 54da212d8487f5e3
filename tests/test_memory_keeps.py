"""Nothing told is lost: pruning deletes only what the weights hold, the release grace counts
from the night, what a released episode superseded stays superseded (and comes back when the
newer one is forgotten), and `reverie memory prune` reads the user's memory settings.

Fast: the hashing embedder, except where supersede needs MiniLM's sentence vectors."""

import argparse
import json
import sqlite3

import numpy as np
import pytest

from reverie.cli import memory as memory_cli
from reverie.errors import ReverieError
from reverie.memory import Memory, MemoryConfig
from reverie.memory.embedder import HashingEmbedder, shared
from reverie.memory.salience import DAY
from reverie.memory.sqlite import MIGRATIONS, SQLiteStore, statements

NOW = 1_000_000_000.0     # unix seconds, 2001


def open_memory(path, embedder=None, **cfg):
    clock = {"now": NOW}
    m = Memory(path, MemoryConfig(**cfg), embedder=embedder or HashingEmbedder(),
               now=lambda: clock["now"])
    m.clock = clock
    return m


# ---------------------------------------------------------------- eviction
def test_a_journal_imported_with_its_dates_survives_pruning(tmp_path):
    m = open_memory(tmp_path, ttl_days=30, evict_below=0.5, capacity=2, reservoir=1)
    year_ago = NOW - 365 * DAY
    ids = [r.id for r in m.ingest(
        [{"text": f"Journal entry {w}: walked to the {w} market.", "created_at": year_ago,
          "private": w == "fig", "pinned": w == "plum"}
         for w in ("apple", "pear", "plum", "fig", "kiwi", "lime")], "ns")]
    m.mark_consolidated(ids[1:2], "snap-0", "ns")       # pear: learned, released below
    m.clock["now"] += 1
    m.mark_consolidated(ids[4:], "snap-1", "ns")        # kiwi, lime: learned a second later
    report = m.prune("ns", release_after_days=0.5 / 86400)
    # a year old and faded far below evict_below, six over a capacity of two: only the one
    # released episode (pear: its facts are in the weights) may go; the rest stay, counted
    assert sorted(e.id for e in m.store.get("ns", ids)) == ids[:1] + ids[2:]
    assert (report["released"], report["reservoir"], report["ttl_evicted"],
            report["capacity_evicted"], report["over_capacity"]) == (1, 1, 0, 1, 3)
    m.clock["now"] += 1 * DAY
    report = m.prune("ns")
    assert (report["ttl_evicted"], report["capacity_evicted"], report["over_capacity"]) == (
        0, 0, 3)
    assert m.stats("ns")["by_status"] == {"new": 3, "consolidated": 2}


# ---------------------------------------------------------------- release grace
def test_the_release_grace_counts_from_the_night_not_from_ingest(tmp_path):
    m = open_memory(tmp_path, release_after_days=7)
    (old,) = m.ingest([{"text": "Backlogged note about the garden shed.",
                        "created_at": NOW - 30 * DAY}], "ns")
    m.mark_consolidated([old.id], "snap-1", "ns")
    m.clock["now"] += 1 * DAY                           # its first night was yesterday
    assert m.prune("ns")["released"] == 0
    assert m.get(old.id, "ns").consolidated_at == NOW
    assert [e.id for e in m.recall("garden shed", "ns")] == [old.id]
    m.clock["now"] += 6.5 * DAY
    assert m.prune("ns")["released"] == 1
    m.store.update("ns", old.id, status="new")          # a rollback reopens it: no date
    assert m.get(old.id, "ns").consolidated_at is None


def test_an_old_database_gets_the_night_date_and_its_grace_starts_at_upgrade(tmp_path):
    path = tmp_path / "memory.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for version in (1, 2, 3):
        for s in statements(MIGRATIONS[version]):
            conn.execute(s)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO namespaces VALUES ('ns', 0)")
    conn.execute("INSERT INTO episodes (namespace, text, created_at, embedding, content_hash, "
                 "status, snapshot) VALUES ('ns', 'Consolidated long ago.', 0, ?, 'h', "
                 "'consolidated', 'snap-1')", (np.ones(256, np.float32).tobytes(),))
    conn.close()
    assert SQLiteStore(path).migrated_from == 3
    m = open_memory(tmp_path, release_after_days=7)
    assert m.prune("ns")["released"] == 0               # ingested in 1970, but the grace
    assert m.get(1, "ns").consolidated_at == NOW        # starts now
    m.clock["now"] += 8 * DAY
    assert m.prune("ns")["released"] == 1


# ---------------------------------------------------------------- supersede archive
@pytest.fixture(scope="module")
def minilm():
    return shared()


BIO = ("Corwin Ashgrove works for Halcyon Foods. He studied at Penwick College. His hometown "
       "is Tallinn.")
JOB = "Corwin Ashgrove has left Halcyon Foods and now works for Brightline Freight."


def told(tmp_path, minilm):
    m = open_memory(tmp_path, minilm, reservoir=0)
    (bio,) = m.ingest([BIO], "ns")
    m.clock["now"] += DAY
    (job,) = m.ingest([JOB], "ns")
    assert {c["idx"]: c["superseded_by"] for c in m.store.claims_of("ns", [bio.id])} == {
        0: job.id, 1: None, 2: None}
    return m, bio.id, job.id


def test_releasing_the_update_keeps_the_old_value_superseded(tmp_path, minilm):
    m, bio, job = told(tmp_path, minilm)
    m.mark_consolidated([job], "snap-1", "ns")
    report = m.prune("ns", release_after_days=0)        # the update is learned and deleted
    assert report["released_deleted"] == 1 and m.store.get("ns", [job]) == []
    # the biography still waits for a night; it must not teach the stale employer
    (waiting,) = m.select_for_sleep("ns")
    assert waiting.id == bio and "Halcyon" not in m.current_text(waiting)
    assert m.store.claims_of("ns", [bio])[0]["superseded_by"] == job
    m.restore_superseded([job], "ns")                    # the update is forgotten after all
    assert m.current_text(m.get(bio, "ns")) == BIO


def test_a_released_episode_keeps_its_superseded_sentence_until_the_update_is_forgotten(
        tmp_path, minilm):
    m, bio, job = told(tmp_path, minilm)
    m.mark_consolidated([bio], "snap-1", "ns")          # learned without its first sentence
    report = m.prune("ns", release_after_days=0)
    assert m.get(bio, "ns").status == "released"         # out of recall, text kept
    assert (report["released_deleted"], report["archived"]) == (0, 1)
    assert [e.id for e in m.recall("Where does Corwin Ashgrove work?", "ns")] == [job]
    m.clock["now"] += 400 * DAY
    assert m.prune("ns")["episodes"] == 2                # the archive is never evicted
    out = m.forget(job, "ns")
    (restored,) = out["restored"]
    e = m.get(restored, "ns")
    assert (e.text, e.status, e.created_at) == ("Corwin Ashgrove works for Halcyon Foods.",
                                                "new", NOW)
    assert e.metadata == {"restored_from": bio}
    assert [x.id for x in m.select_for_sleep("ns")] == [restored]
    assert "Halcyon Foods" in m.context("Where does Corwin Ashgrove work?", "ns").context


def test_forgetting_the_update_restores_a_sentence_the_night_left_out(tmp_path, minilm):
    m, bio, job = told(tmp_path, minilm)
    m.mark_consolidated([bio], "snap-1", "ns")          # learned without its first sentence,
    (restored,) = m.forget(job, "ns")["restored"]        # still in recall for its grace
    assert m.get(restored, "ns").text == "Corwin Ashgrove works for Halcyon Foods."
    m.clock["now"] += 8 * DAY                            # its grace over, bio leaves recall;
    assert m.prune("ns")["released_deleted"] == 1       # the restored sentence stays, new
    assert [e.id for e in m.select_for_sleep("ns")] == [restored]


# ---------------------------------------------------------------- the CLI's settings
def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="reverie")
    memory_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        code = args.func(args) or 0
    except ReverieError as e:
        print(f"reverie: {e}")
        code = 2
    return code, capsys.readouterr().out


def test_memory_prune_reads_the_settings_it_is_given(tmp_path, capsys):
    data = tmp_path / "d"
    with Memory(data, embedder=HashingEmbedder()) as m:
        ids = [r.id for r in m.ingest(["Note about the lamp.", "Note about the desk."], "ns")]
        m.mark_consolidated(ids, "snap-1", "ns")
    argv = ["memory", "prune", "--data", str(data), "--namespace", "ns"]
    code, out = run(argv, capsys)                        # defaults: a 7-day grace
    assert code == 0 and json.loads(out)["released"] == 0
    serve = tmp_path / "serve.yaml"
    serve.write_text("port: 9000\nmemory:\n  release_after_days: 0\n  reservoir: 1\n")
    code, out = run(argv + ["--preset", str(serve)], capsys)
    assert code == 0 and (json.loads(out)["released"], json.loads(out)["reservoir"]) == (2, 1)
    code, out = run(argv + ["--set", "capacity=0"], capsys)
    assert code == 2 and out == "reverie: invalid config MemoryConfig: capacity must be > 0, " \
                                "got 0\n"
