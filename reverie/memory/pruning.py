"""Pruning: let go of what sleep has made redundant, and nothing else.

The promise: a fact the user told is answered, from recall or from the weights, until they ask
for it to be forgotten. So pruning only ever deletes episodes a night consolidated and whose
grace is over (`released`: their facts are in the weights); never a `new` one, never one still
`consolidated`, never a private or pinned one, and never one holding a sentence a newer episode
superseded: that sentence is in no weights, and it is current again if the newer episode is
forgotten, so the episode stays, out of recall, as the archive.

In order, per namespace:
  1. release   consolidated episodes whose night is older than the grace (release_after_days,
               counted from consolidated_at) leave recall (until then recall still answers for
               a fact a night learned only in part); a bounded rehearsal reservoir of them is
               kept for replay, drawn by priority-weighted sampling without replacement
               (Efraimidis-Spirakis keys u ** (1 / w)), seeded by the ids so a rerun keeps the
               same reservoir; the archive stays; the rest are deleted.
  2. ttl       released episodes outside the reservoir older than ttl_days whose decayed
               priority fell below evict_below go.
  3. capacity  past `capacity` episodes, released ones go, lowest decayed priority first; when
               that is not enough the rest stay and the report counts them (over_capacity).
Every deletion goes through the store's delete (lexical index, claims) and the dense index, and is
scrubbed at the end.
"""

import numpy as np

from reverie.memory import salience
from reverie.memory.salience import DAY

# episodes holding a sentence that a newer episode superseded
ARCHIVE = ("EXISTS (SELECT 1 FROM claims c WHERE c.episode_id = episodes.id AND "
           "c.superseded_by IS NOT NULL)")
# what pruning may delete: released, neither pinned nor private, not in the archive
EVICTABLE = f"status = 'released' AND pinned = 0 AND private = 0 AND NOT {ARCHIVE}"


def _reservoir_keys(episodes, cfg) -> dict:
    keys = {}
    for e in episodes:
        u = np.random.default_rng(e.id).random()
        w = max(salience.of_episode(cfg, e), 1e-6)
        keys[e.id] = u ** (1.0 / w)
    return keys


def prune(memory, namespace: str, grace_days: float) -> dict:
    cfg, store, now = memory.cfg, memory.store, memory.now()
    report = {"released": 0, "reservoir": 0, "released_deleted": 0, "archived": 0,
              "ttl_evicted": 0, "capacity_evicted": 0, "over_capacity": 0}
    deleted: list[int] = []

    # 0. consolidated without a date (before schema v4, or rolled forward on open): from now
    with store.transaction():
        for i in store.select_ids(namespace, "status = 'consolidated' AND "
                                             "consolidated_at IS NULL"):
            store.update(namespace, i, consolidated_at=now)

    # 1. release consolidated episodes, keep a bounded reservoir and the archive
    consolidated = store.get(namespace, store.select_ids(
        namespace, "status = 'consolidated' AND pinned = 0 AND consolidated_at <= ?",
        params=(now - grace_days * DAY,)))
    in_reservoir = store.get(namespace, store.select_ids(namespace, "reservoir = 1"))
    archive = set(store.select_ids(namespace, ARCHIVE))
    pool = consolidated + in_reservoir
    keys = _reservoir_keys(pool, cfg)
    keep = set(sorted(keys, key=lambda i: -keys[i])[:cfg.reservoir])
    with store.transaction():
        for e in pool:
            if e.id in keep or e.id in archive:
                store.update(namespace, e.id, status="released", reservoir=int(e.id in keep))
            else:
                deleted.append(e.id)
        store.delete(namespace, deleted, reason="released")
    if memory.index is not None:         # else it is rebuilt from the store when next needed
        memory.index.remove(namespace, [e.id for e in consolidated])
    report.update(released=len(consolidated), reservoir=len(keep),
                  released_deleted=len(deleted),
                  archived=len(({e.id for e in pool} & archive) - keep))

    # 2. ttl: old and faded, among what the weights hold
    old = store.get(namespace, store.select_ids(
        namespace, f"{EVICTABLE} AND reservoir = 0 AND created_at < ?",
        params=(now - cfg.ttl_days * DAY,)))
    faded = [e.id for e in old
             if salience.decayed(cfg, e.priority, e.created_at, now) < cfg.evict_below]
    report["ttl_evicted"] = store.delete(namespace, faded, reason="ttl")
    deleted += faded

    # 3. hard capacity, met from what the weights hold
    over = len(store.select_ids(namespace)) - cfg.capacity
    if over > 0:
        episodes = store.get(namespace, store.select_ids(namespace, EVICTABLE))
        episodes.sort(key=lambda e: salience.decayed(cfg, e.priority, e.created_at, now))
        victims = [e.id for e in episodes[:over]]
        report["capacity_evicted"] = store.delete(namespace, victims, reason="capacity")
        report["over_capacity"] = over - len(victims)
        deleted += victims

    if memory.index is not None:
        memory.index.remove(namespace, deleted)
    if deleted:
        store.scrub()
    report["episodes"] = len(store.select_ids(namespace))
    return report
