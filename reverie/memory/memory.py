"""Memory: the hippocampus. Ingest (durable before it returns), recall, context, salience, forget.

Ingest reads top to bottom: validate every record (nothing is stored if one is bad) -> embed ->
fold repeats into their originals -> salience (novelty, entity novelty, surprise) -> one
transaction (episodes, claims, entities, supersede) -> commit -> dense index. SQLite is the source
of truth; the dense index is rebuilt from it on open.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reverie.errors import ReverieError
from reverie.memory import claims as claimlib
from reverie.memory import salience, supersede
from reverie.memory.config import MemoryConfig
from reverie.memory.index import DenseIndex
from reverie.memory.records import content_hash, validate
from reverie.memory.sqlite import SQLiteStore
from reverie.memory.store import check_namespace_name

DB_FILE = "memory.sqlite"


@dataclass
class Ingested:
    id: int
    repeat: bool = False     # True: folded into the stored episode `id`, no new row


@dataclass
class Recalled:
    context: str             # episodes joined by "\n", older first (newer statements win)
    episodes: list           # the Episodes used, in context order
    tokens: int


class Memory:
    def __init__(self, data_dir, config: MemoryConfig | None = None, embedder=None, scorer=None,
                 count_tokens=None, now=time.time):
        """embedder: texts -> float32 (n, dim) unit vectors (default: MiniLM, loaded once);
        scorer: texts -> mean token NLL (nats), for surprise (None: surprise 0);
        count_tokens: text -> model tokens, for the context budget (default: words * 1.3);
        now: clock in unix seconds (the benchmarks simulate days)."""
        self.cfg = config or MemoryConfig()
        self.data_dir = Path(data_dir)
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ReverieError(f"--data {str(self.data_dir)!r} is a file; pass a directory")
        self.store = SQLiteStore(self.data_dir / DB_FILE)
        self._embedder, self.scorer, self.now = embedder, scorer, now
        self.count_tokens = count_tokens or (lambda text: int(len(text.split()) * 1.3) + 1)
        self.index = None
        self._pending_recalls: dict = {}
        self._claim_embed = supersede.CachedEmbed(self.embed)

    # ------------------------------------------------------------ embedder, dense index (lazy)
    def embed(self, texts: list[str]) -> np.ndarray:
        """texts -> (n, dim) unit vectors; the default model loads on first use, so commands
        that never embed (forget, prune, stats) start fast."""
        if self._embedder is None:
            from reverie.memory.embedder import shared
            self._embedder = shared(self.cfg.embed_tokens, self.cfg.bf16)
        return self._embedder(texts)

    def _dense(self) -> DenseIndex:
        if self.index is None:
            dim = self.embed(["x"]).shape[1]
            self.index = DenseIndex(dim)
            for ns in self.store.namespaces():
                ids, vectors = self.store.vectors(ns)
                self.index.add(ns, ids, vectors)
        return self.index

    # ------------------------------------------------------------ ingest
    def ingest(self, records, namespace: str = "default", source: str = "") -> list[Ingested]:
        check_namespace_name(namespace)
        batch = [validate(r, i, self.cfg) for i, r in enumerate(records)]
        if not batch:
            return []
        index, now = self._dense(), self.now()
        self.store.ensure_namespace(namespace)
        results: list = [None] * len(batch)
        hashes = [content_hash(r["text"]) for r in batch]

        # 1. exact repeats (of stored episodes or of an earlier record of this batch) fold
        fresh, first_of = [], {}
        for i, h in enumerate(hashes):
            original = self.store.by_hash(namespace, h)
            if original is not None:
                results[i] = Ingested(original, repeat=True)
            elif h in first_of:
                results[i] = ("batch", first_of[h])
            else:
                first_of[h] = i
                fresh.append(i)

        # 2. embed; near-duplicates (same entities, cosine >= threshold) fold too
        vectors = (self.embed([batch[i]["text"] for i in fresh]) if fresh
                   else np.zeros((0, index.dim), np.float32))                 # (fresh, dim)
        stored_sim, stored_id = index.search(namespace, vectors, 1)
        in_batch = vectors @ vectors.T if len(fresh) else np.zeros((0, 0))
        ents = [claimlib.entities(batch[i]["text"]) for i in fresh]
        keep, novelty = [], {}
        for j, i in enumerate(fresh):
            best, best_ref = 0.0, None
            if stored_sim.shape[1]:
                best, best_ref = float(stored_sim[j, 0]), ("stored", int(stored_id[j, 0]))
            for jj in keep:
                if in_batch[j, jj] > best:
                    best, best_ref = float(in_batch[j, jj]), ("batch", fresh[jj])
            if best >= self.cfg.duplicate_threshold and self._same_entities(
                    namespace, ents[j], best_ref, batch, fresh, ents):
                results[i] = Ingested(best_ref[1], True) if best_ref[0] == "stored" else best_ref
                continue
            keep.append(j)
            novelty[i] = float(np.clip(1.0 - best, 0.0, 1.0))

        # 3. salience of what is new: entity novelty, surprise
        new = [fresh[j] for j in keep]
        known = self.store.entities_known(namespace, sorted({e for j in keep for e in ents[j]}))
        entity_novelty, seen = {}, set(known)
        for j in keep:
            es = ents[j]
            entity_novelty[fresh[j]] = sum(e not in seen for e in es) / len(es) if es else 0.0
            seen.update(es)
        nll = ([0.0] * len(new) if not (self.scorer and new)
               else self.scorer([batch[i]["text"] for i in new]))         # nats per token

        # 4. one durable transaction
        rows = []
        for i, n in zip(new, nll):
            r = batch[i]
            parts = dict(surprise=salience.normalise_surprise(self.cfg, n), novelty=novelty[i],
                         entity_novelty=entity_novelty[i], repeats=0,
                         feedback=float(r.get("feedback", 0.0)))
            rows.append(dict(r, source=r.get("source") or source, **parts,
                             created_at=float(r.get("created_at", now)),
                             priority=salience.priority(self.cfg, **parts),
                             embedding=vectors[fresh.index(i)], content_hash=hashes[i]))
        with self.store.transaction():
            ids = self.store.insert(namespace, rows)
            for i, eid in zip(new, ids):
                results[i] = Ingested(eid)
            for i, res in enumerate(results):
                if isinstance(res, tuple):           # a repeat of an earlier record of the batch
                    results[i] = Ingested(results[res[1]].id, True)
                if results[i].repeat:
                    self._strengthen(namespace, results[i].id, batch[i])
            self.store.add_entities(namespace, sorted({e for j in keep for e in ents[j]}))
            superseded = supersede.apply(self.store, self._claim_embed, self.cfg, namespace, ids,
                                         [batch[i]["text"] for i in new])
        index.add(namespace, ids, vectors[[fresh.index(i) for i in new]] if new else vectors)
        index.remove(namespace, superseded)
        return results

    def _same_entities(self, namespace, mine, ref, batch, fresh, ents) -> bool:
        """A repeat names the same people, places and dates (Jaccard >= 0.8)."""
        if ref[0] == "batch":
            theirs = ents[fresh.index(ref[1])]
        else:
            found = self.store.get(namespace, [ref[1]])
            theirs = claimlib.entities(found[0].text) if found else []
        a, b = set(mine), set(theirs)
        return (not a and not b) or len(a & b) / max(1, len(a | b)) >= 0.8

    def _strengthen(self, namespace, episode_id, record):
        e = self.store.get(namespace, [episode_id])[0]
        e.repeats += 1
        e.feedback = max(e.feedback, float(record.get("feedback", 0.0)))
        self.store.update(namespace, episode_id, repeats=e.repeats, feedback=e.feedback,
                          priority=salience.of_episode(self.cfg, e))

    # ------------------------------------------------------------ recall
    def recall(self, query: str, namespace: str = "default", k: int | None = None) -> list:
        """Hybrid recall: BM25 and dense candidates, and episodes naming the people the query
        names (an FTS phrase per full name), fused by reciprocal rank; best first."""
        ns = self.store.check_namespace(namespace)
        if not isinstance(query, str) or not query.strip():
            raise ReverieError("the recall query is empty; pass the question or words to look for")
        k = k or self.cfg.recall_k
        qv = self.embed([query[:4000]])                                   # (1, dim)
        _, dense_ids = self._dense().search(ns, qv, self.cfg.candidates)
        lexical_ids = self.store.lexical(ns, claimlib.query_terms(query), self.cfg.candidates)
        rankings = [lexical_ids, [int(i) for i in dense_ids[0] if i >= 0]]
        people = claimlib.names(query)
        if people:  # why: a name is the query's most selective part, but BM25 and the dense
            # vector weigh it like any word: "Boris Stroud's alma mater" ranked five other
            # people's alma maters above Boris Stroud's biography. The name as an FTS phrase
            # is a third ranking in the fusion.
            rankings.append(self.store.lexical(ns, people, self.cfg.candidates))
        scores: dict = {}
        for ranking in rankings:
            for rank, eid in enumerate(ranking):
                scores[eid] = scores.get(eid, 0.0) + 1.0 / (self.cfg.rrf_k + rank + 1)
        top = sorted(scores, key=lambda e: (-scores[e], -e))[:k]
        for eid in top:
            self._pending_recalls[(ns, eid)] = self._pending_recalls.get((ns, eid), 0) + 1
        return self.store.get(ns, top)

    def current_text(self, episode, claims_by_episode=None) -> str:
        """The episode's text without the sentences that newer episodes superseded."""
        cs = (claims_by_episode or {}).get(episode.id)
        if cs is None:
            cs = self.store.claims_of(episode.namespace, [episode.id])
        dropped = {c["idx"] for c in cs if c["superseded_by"] is not None}
        if not dropped:
            return episode.text
        return claimlib.without(episode.text, dropped, {c["idx"]: c["subject"] for c in cs})

    def context(self, query: str, namespace: str = "default") -> Recalled:
        """Pinned episodes plus the best recalled ones, within the token budget, older first.

        When the query names someone (a multi-word capitalised name), only recalled episodes
        that mention them are kept, and none if no episode does: a small model reads a focused
        context better than one padded with other people's facts, and a context about other
        people turns what the model knows into "I don't know" (the lifelong bench's `rag` kept
        0.02 of base facts closed-book knowledge with such contexts)."""
        ranked = self.recall(query, namespace, k=2 * self.cfg.recall_k)
        names = claimlib.names(query)
        focused = [e for e in ranked if any(n in e.text for n in names)]
        ranked = focused if names else ranked[:self.cfg.recall_k]
        pinned = self.store.get(namespace, self.store.select_ids(namespace, "pinned = 1"))
        chosen, used, texts = [], 0, {}
        cs = self.store.claims_of(namespace, [e.id for e in pinned + ranked])
        by_episode: dict = {}
        for c in cs:
            by_episode.setdefault(c["episode_id"], []).append(c)
        for e in pinned + [e for e in ranked if not e.pinned]:
            text = self.current_text(e, {e.id: by_episode.get(e.id, [])})
            cost = self.count_tokens(text)
            if not text or used + cost > self.cfg.context_tokens:
                continue
            chosen.append(e)
            texts[e.id] = text
            used += cost
        chosen.sort(key=lambda e: (e.created_at, e.id))   # why: the newer statement comes last
        return Recalled("\n".join(texts[e.id] for e in chosen), chosen, used)

    def flush(self) -> None:
        """Write the recall counts gathered since the last flush (kept off the recall path)."""
        pending, self._pending_recalls = self._pending_recalls, {}
        by_ns: dict = {}
        for (ns, eid), n in pending.items():
            by_ns.setdefault(ns, {}).setdefault(n, []).append(eid)
        with self.store.transaction():
            for ns, groups in by_ns.items():
                for n, ids in groups.items():
                    self.store.mark_recalled(ns, ids, times=n)

    # ------------------------------------------------------------ tags, lifecycle marks
    def feedback(self, episode_id: int, namespace: str = "default", importance: float = 1.0):
        """Explicit importance (0..1) raises the episode's priority; returns the episode."""
        e = self.get(episode_id, namespace)
        if isinstance(importance, bool) or not 0 <= importance <= 1:
            raise ReverieError(f"feedback importance must be in [0, 1], got {importance!r}")
        e.feedback = max(e.feedback, float(importance))
        e.priority = salience.of_episode(self.cfg, e)
        self.store.update(namespace, episode_id, feedback=e.feedback, priority=e.priority)
        return e

    def get(self, episode_id, namespace: str = "default"):
        ns = self.store.check_namespace(namespace)
        try:
            episode_id = int(episode_id)
        except (TypeError, ValueError):
            raise ReverieError(f"episode id must be an integer, got {episode_id!r}") from None
        found = self.store.get(ns, [episode_id])
        if not found:
            raise ReverieError(f"no episode {episode_id} in namespace {ns!r}; list them with "
                               f"`reverie memory recall` or `reverie memory stats`")
        return found[0]

    def select_for_sleep(self, namespace: str = "default", limit: int = 100) -> list:
        """New, non-private episodes by decayed priority, highest first (what a night takes)."""
        ns = self.store.check_namespace(namespace)
        ids = self.store.select_ids(ns, "status = 'new' AND private = 0 AND superseded_by IS NULL")
        episodes = self.store.get(ns, ids)
        now = self.now()
        episodes.sort(key=lambda e: -salience.decayed(self.cfg, e.priority, e.created_at, now))
        return episodes[:limit]

    def has_namespace(self, namespace: str = "default") -> bool:
        """Whether anything was ever stored in `namespace` (the other calls reject one that
        was not)."""
        return self.store.has_namespace(namespace)

    def waiting(self, namespace: str = "default") -> tuple[int, float, int]:
        """(count, summed priority, newest id) of the episodes waiting for a night; zeros for a
        namespace never used."""
        return self.store.waiting(namespace) if self.store.has_namespace(namespace) \
            else (0, 0.0, 0)

    def counts(self, namespace: str = "default") -> dict:
        """Episodes by status ({} for a namespace never used); cheaper than stats()."""
        return self.store.stats(namespace)["by_status"] if self.store.has_namespace(namespace) \
            else {}

    def rehearsal(self, namespace: str = "default", n: int = 100, seed: int = 0) -> list:
        """Up to n episodes of the rehearsal reservoir (released, kept for replay), sampled
        with a seed so a night can be rerun."""
        ns = self.store.check_namespace(namespace)
        ids = self.store.select_ids(ns, "reservoir = 1")
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(ids), size=min(n, len(ids)), replace=False) if ids else []
        return self.store.get(ns, [ids[i] for i in sorted(pick)])

    def mark_consolidated(self, ids, snapshot: str, namespace: str = "default") -> int:
        ns = self.store.check_namespace(namespace)
        episodes = self.store.get(ns, [int(i) for i in ids])
        private = [e.id for e in episodes if e.private]
        if private:
            raise ReverieError(f"episodes {private} are private and never consolidated; drop "
                               f"them from the night's selection")
        now = self.now()   # why: the release grace counts from the night, not from ingest
        with self.store.transaction():
            for e in episodes:
                self.store.update(ns, e.id, status="consolidated", snapshot=snapshot,
                                  consolidated_at=now)
        return len(episodes)

    def forget(self, episode_id, namespace: str = "default") -> dict:
        """Remove an episode from the store, the lexical and dense indexes and the entity
        memory; the bytes are scrubbed. What it superseded is current again (restore_superseded).
        Unlearning it from weights is the gate's job."""
        e = self.get(episode_id, namespace)
        plan = supersede.restoration(self.store, self.embed, namespace, [e.id])
        with self.store.transaction():
            restored = supersede.restore(self.store, namespace, plan)
            self.store.add_entities(namespace, claimlib.entities(e.text), delta=-1)
            self.store.delete(namespace, [e.id], reason="forget")
        if self.index is not None:       # else it is rebuilt from the store when next needed
            self.index.remove(namespace, [e.id])
            self._restore_unsuperseded(namespace)
        self.store.scrub()
        return {"forgotten": e.id, "namespace": namespace, "snapshot": e.snapshot,
                "restored": restored}

    def restore_superseded(self, ids, namespace: str = "default") -> list[int]:
        """What the episodes `ids` superseded is current again (they are being forgotten; also
        for ids pruning already released, which are no longer stored). Returns the ids of the
        new episodes holding sentences restored from consolidated ones
        (supersede.restoration)."""
        ns = self.store.check_namespace(namespace)
        plan = supersede.restoration(self.store, self.embed, ns, [int(i) for i in ids])
        with self.store.transaction():
            restored = supersede.restore(self.store, ns, plan)
        if self.index is not None:
            self._restore_unsuperseded(ns)
        return restored

    def _restore_unsuperseded(self, namespace):
        """Episodes a deleted episode had superseded are recallable again."""
        ids, vectors = self.store.vectors(namespace)
        index = self._dense()
        missing = [j for j, i in enumerate(ids) if not index.contains(namespace, int(i))]
        index.add(namespace, ids[missing], vectors[missing] if missing else vectors[:0])

    def prune(self, namespace: str = "default", release_after_days: float | None = None) -> dict:
        """release_after_days overrides the config's grace for this call (0: release now)."""
        from reverie.memory.pruning import prune
        grace = self.cfg.release_after_days if release_after_days is None else release_after_days
        return prune(self, self.store.check_namespace(namespace), grace)

    def stats(self, namespace: str | None = None) -> dict:
        self.flush()
        if namespace is None:
            return {"namespaces": self.store.namespaces(), "file": str(self.store.path)}
        ns = self.store.check_namespace(namespace)
        out = self.store.stats(ns)
        out["dense_index"] = self._dense().size(ns)
        return out

    def close(self) -> None:
        self.flush()
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
