"""Episode marks against the active lineage: what a kill or a rollback can leave disagreeing.

An episode is marked when a snapshot verified it (its manifest's "verified": the gate saw the
weights answer it), not merely trained on it. Marking comes after `active` moves (reverie.lifecycle.facade), so a kill can leave episodes the
active lineage consolidated still new: they are rolled forward. After a rollback, episodes
marked by snapshots outside the active lineage are new again (rolled back).
"""

from reverie import snapshots


def reconcile(data_dir, active: str | None, memory, namespace: str) -> dict:
    """Make episode marks agree with the active lineage; returns how many moved each way."""
    chain = snapshots.lineage(data_dir, active)
    owner = {e: m["id"] for m in chain for e in snapshots.verified(m)}
    lineage_ids = {m["id"] for m in chain}
    store = memory.store
    forward = back = 0
    with store.transaction():
        for ns in store.namespaces():
            unmarked = store.get(ns, store.select_ids(ns, "status = 'new'"))
            for e in unmarked:
                if e.id in owner and not e.private:
                    store.update(ns, e.id, status="consolidated", snapshot=owner[e.id])
                    forward += 1
            marked = store.get(ns, store.select_ids(
                ns, "status IN ('consolidated', 'released')"))
            for e in marked:
                if e.snapshot in lineage_ids:
                    continue
                if e.id in owner:      # a rebuilt line consolidated it too (deletion)
                    store.update(ns, e.id, snapshot=owner[e.id])
                else:
                    store.update(ns, e.id, status="new", snapshot=None, reservoir=0)
                    back += 1
    if back:
        memory.index = None
    if forward and store.has_namespace(namespace):
        memory.prune(namespace)
    return {"rolled_forward": forward, "reopened": back}


def problems(data_dir, active: str | None, memory) -> list[str]:
    """What must hold once a data directory is reopened, as lines naming what does not:
    every consolidated or released episode is marked by a snapshot of the active lineage,
    none the lineage consolidated is still new, and the store passes its integrity check."""
    chain = snapshots.lineage(data_dir, active)
    in_lineage = {m["id"] for m in chain}
    owned = {e for m in chain for e in snapshots.verified(m)}
    out = []
    store = memory.store
    for ns in store.namespaces():
        for e in store.get(ns, store.select_ids(ns)):
            if e.status in ("consolidated", "released") and e.snapshot not in in_lineage:
                out.append(f"episode {e.id} marked by {e.snapshot}, not in the lineage")
            if e.status == "new" and e.id in owned:
                out.append(f"episode {e.id} consolidated by the active lineage but new")
    if store.integrity() != "ok":
        out.append("sqlite integrity check failed")
    return out
