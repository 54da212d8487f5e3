"""Pruning: let go of what sleep has made redundant and of what never mattered.

In order, per namespace:
  1. release   consolidated episodes older than the grace (release_after_days) leave recall
               (their knowledge is in the weights; until then recall still answers for a fact a
               night learned only in part); a bounded
               rehearsal reservoir of them is kept for replay, drawn by priority-weighted sampling
               without replacement (Efraimidis-Spirakis keys u ** (1 / w)), seeded by the ids so
               a rerun keeps the same reservoir; the rest are deleted.
  2. ttl       episodes older than ttl_days whose decayed priority fell below evict_below go.
  3. capacity  past `capacity` episodes, the lowest decayed priority go first.
Pinned episodes are never pruned. Every deletion goes through the store's delete (lexical index,
claims) and the dense index, and is scrubbed at the end.
"""

import numpy as np

from reverie.memory import salience
from reverie.memory.salience import DAY


def _reservoir_keys(episodes, cfg) -> dict:
    keys = {}
    for e in episodes:
        u = np.random.default_rng(e.id).random()
        w = max(salience.of_episode(cfg, e), 1e-6)
        keys[e.id] = u ** (1.0 / w)
    return keys


def prune(memory, namespace: str, grace_days: float) -> dict:
    cfg, store, now = memory.cfg, memory.store, memory.now()
    report = {"released": 0, "reservoir": 0, "released_deleted": 0, "ttl_evicted": 0,
              "capacity_evicted": 0}
    deleted: list[int] = []

    # 1. release consolidated episodes, keep a bounded reservoir
    consolidated = store.get(namespace, store.select_ids(
        namespace, "status = 'consolidated' AND pinned = 0 AND created_at <= ?",
        params=(now - grace_days * DAY,)))
    in_reservoir = store.get(namespace, store.select_ids(namespace, "reservoir = 1"))
    pool = consolidated + in_reservoir
    keys = _reservoir_keys(pool, cfg)
    keep = set(sorted(keys, key=lambda i: -keys[i])[:cfg.reservoir])
    with store.transaction():
        for e in pool:
            if e.id in keep:
                store.update(namespace, e.id, status="released", reservoir=1)
            else:
                deleted.append(e.id)
        store.delete(namespace, [i for i in deleted], reason="released")
    if memory.index is not None:         # else it is rebuilt from the store when next needed
        memory.index.remove(namespace, [e.id for e in consolidated])
    report.update(released=len(consolidated), reservoir=len(keep),
                  released_deleted=len(deleted))

    # 2. ttl: old and faded
    old = store.get(namespace, store.select_ids(
        namespace, "pinned = 0 AND reservoir = 0 AND created_at < ?",
        params=(now - cfg.ttl_days * DAY,)))
    faded = [e.id for e in old
             if salience.decayed(cfg, e.priority, e.created_at, now) < cfg.evict_below]
    report["ttl_evicted"] = store.delete(namespace, faded, reason="ttl")
    deleted += faded

    # 3. hard capacity
    ids = store.select_ids(namespace, "pinned = 0")
    over = len(store.select_ids(namespace)) - cfg.capacity
    if over > 0:
        episodes = store.get(namespace, ids)
        episodes.sort(key=lambda e: salience.decayed(cfg, e.priority, e.created_at, now))
        victims = [e.id for e in episodes[:over]]
        report["capacity_evicted"] = store.delete(namespace, victims, reason="capacity")
        deleted += victims

    if memory.index is not None:
        memory.index.remove(namespace, deleted)
    if deleted:
        store.scrub()
    report["episodes"] = len(store.select_ids(namespace))
    return report
