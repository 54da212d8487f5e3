"""Newer wins: a new episode's claims replace the older claims they restate about the same
subject.

For each claim of a new episode (a sentence about a named subject), the older episodes that make
claims about the same subject are compared sentence by sentence (claims.claim_score: cos of the
value-masked frames + capped cos of the values). In each older episode, the best-matching
sentence is superseded when it scores >= supersede_threshold and beats that episode's runner-up
by supersede_margin: one sentence at most, and only a clear winner, because a wrong supersede
hides a true fact while a missed one is still resolved by order (the context puts newer
episodes last, and the model was trained that the later statement wins). An episode whose
every sentence is superseded leaves recall. Claim vectors are cached in the claims table.

Forgetting the newer episode makes what it superseded current again (`restoration`, `restore`);
releasing it does not (it was learned), and pruning keeps the older text meanwhile.
"""

from collections import OrderedDict

import numpy as np

from reverie.memory import claims as claimlib
from reverie.memory.records import content_hash


class CachedEmbed:
    """embed, remembering the last `size` texts: claim frames and values recur across batches
    ('Someone works for something.', a city, a firm), so most are embedded once. (size, dim)
    float32 at most: 8192 texts of MiniLM are 12 MB."""

    def __init__(self, embed, size: int = 8192):
        self.embed, self.size = embed, size
        self._vectors: OrderedDict = OrderedDict()      # text -> (dim,) float32

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return self.embed([])
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            for t, v in zip(missing, self.embed(missing)):
                self._vectors[t] = v
        out = np.stack([self._vectors[t] for t in texts])           # (texts, dim)
        for t in texts:
            self._vectors.move_to_end(t)
        while len(self._vectors) > self.size:
            self._vectors.popitem(last=False)
        return out


def claim_vectors(embed, cs) -> dict:
    """(episode_id, idx) -> (1 + n_values, dim) unit vectors of the claim's masked frame and
    values, from one embedding call over the distinct texts (frames and values recur)."""
    texts = [claimlib.claim_texts(c["frame"]) for c in cs]
    distinct = list(dict.fromkeys(t for ts in texts for t in ts))
    flat = embed(distinct) if distinct else None                     # (distinct, dim)
    row = {t: k for k, t in enumerate(distinct)}
    return {(c["episode_id"], c["idx"]): flat[[row[t] for t in ts]] for c, ts in zip(cs, texts)}


def apply(store, embed, cfg, namespace, ids, texts) -> list[int]:
    """Store each new episode's claims; a newer claim about the same subject whose frame is
    close to an older one supersedes it. Returns episodes now superseded entirely.

    Every claim that may be compared (its subject has claims in another episode, stored or of
    this batch) is embedded up front in one call; the episodes are then applied in order."""
    mine_of = [[dict(c, episode_id=eid) for c in claimlib.claims(text)]
               for eid, text in zip(ids, texts)]
    count: dict = {}
    for mine in mine_of:
        for subject in {c["subject"] for c in mine}:
            count[subject] = count.get(subject, 0) + 1
    stored = store.claims_about(namespace, sorted(count))
    shared = {s for s, n in count.items() if n > 1} | {c["subject"] for c in stored}
    vectors = claim_vectors(embed, [c for mine in mine_of for c in mine
                                    if c["subject"] in shared] +
                            [c for c in stored
                             if c["embedding"] is None and c["superseded_by"] is None])
    emptied = []
    for eid, mine in zip(ids, mine_of):
        if not mine:
            continue
        subjects = sorted({c["subject"] for c in mine})
        older = [c for c in store.claims_about(namespace, subjects)
                 if c["superseded_by"] is None and c["episode_id"] != eid]
        store.add_claims(namespace, mine)
        if not older:
            continue
        vecs = {id(c): vectors[(eid, c["idx"])] for c in mine}
        for c in mine:
            store.set_claim(namespace, eid, c["idx"], embedding=vecs[id(c)].reshape(-1))
        for c in older:
            if c["embedding"] is None:
                vecs[id(c)] = vectors[(c["episode_id"], c["idx"])]
                store.set_claim(namespace, c["episode_id"], c["idx"],
                                embedding=vecs[id(c)].reshape(-1))
            else:
                vecs[id(c)] = np.frombuffer(c["embedding"], np.float32).reshape(
                    -1, vecs[id(mine[0])].shape[1])
        touched = set()
        for c in mine:
            by_episode: dict = {}
            for o in older:
                if o["subject"] == c["subject"] and o["superseded_by"] is None:
                    by_episode.setdefault(o["episode_id"], []).append(o)
            for group in by_episode.values():
                sims = sorted(((claimlib.claim_score(vecs[id(c)], vecs[id(o)]), k)
                               for k, o in enumerate(group)), reverse=True)
                best, k = sims[0]
                runner_up = sims[1][0] if len(sims) > 1 else -2.0
                frame, value = claimlib.claim_parts(vecs[id(c)], vecs[id(group[k])])
                # why: one sentence of the older episode at most, only a clear winner, and
                # only the same kind of statement about the same kind of value (see config)
                if best >= cfg.supersede_threshold and \
                        best - runner_up >= cfg.supersede_margin and \
                        frame >= cfg.supersede_min_frame and value >= cfg.supersede_min_value:
                    group[k]["superseded_by"] = eid
                    store.set_claim(namespace, group[k]["episode_id"], group[k]["idx"],
                                    superseded_by=eid)
                    touched.add(group[k]["episode_id"])
        for old_id in touched:
            old = store.get(namespace, [old_id])[0]
            cs = store.claims_of(namespace, [old_id])
            # why: a sentence without a subject (chatter) is not replaced by anything
            if len(cs) == len(claimlib.sentences(old.text)) and \
                    all(c["superseded_by"] is not None for c in cs):
                store.update(namespace, old_id, superseded_by=eid)
                emptied.append(old_id)
    return emptied


def restoration(store, embed, namespace, ids) -> dict:
    """What forgetting `ids` restores: the claims and episodes they superseded, and, for each
    older episode a night already learned without those sentences (so no weights hold them,
    and pruning will release it), a new episode of just those sentences (its record and
    vector), so recall answers for them and the next night teaches them. Reads and embeds
    only; `restore` writes."""
    claims = store.claims_superseded_by(namespace, ids)
    marks = ",".join("?" * len(ids))
    wholly = store.select_ids(namespace, f"superseded_by IN ({marks})",
                              params=tuple(ids)) if ids else []
    by_episode: dict = {}
    for c in claims:
        by_episode.setdefault(c["episode_id"], set()).add(c["idx"])
    records = []
    for old in store.get(namespace, sorted(by_episode)):
        if old.status == "new":
            continue           # the next night takes it whole
        cs = store.claims_of(namespace, [old.id])
        n = len(claimlib.sentences(old.text))
        text = claimlib.without(old.text, set(range(n)) - by_episode[old.id],
                                {c["idx"]: c["subject"] for c in cs})
        records.append(dict(text=text, source=old.source, created_at=old.created_at,
                            metadata={**old.metadata, "restored_from": old.id},
                            surprise=old.surprise, novelty=old.novelty,
                            entity_novelty=old.entity_novelty, feedback=old.feedback,
                            priority=old.priority, content_hash=content_hash(text)))
    if records:
        for r, v in zip(records, embed([r["text"] for r in records])):      # v: (dim,)
            r["embedding"] = v
    return {"claims": claims, "wholly": wholly, "records": records}


def restore(store, namespace, plan) -> list[int]:
    """Write a `restoration` plan (inside the caller's transaction); returns the new ids."""
    for c in plan["claims"]:
        store.set_claim(namespace, c["episode_id"], c["idx"], superseded_by=None)
    for i in plan["wholly"]:
        store.update(namespace, i, superseded_by=None)
    ids = store.insert(namespace, plan["records"])
    # why: no supersede pass: `apply` takes the episode it is given for the newest statement,
    # and these are older ones; the context orders them before newer statements
    store.add_claims(namespace, [dict(c, episode_id=i) for i, r in zip(ids, plan["records"])
                                 for c in claimlib.claims(r["text"])])
    return ids
