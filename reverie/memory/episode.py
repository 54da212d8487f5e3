"""The episode: one experience as the hippocampus holds it."""

import json
from dataclasses import dataclass, field

# new: captured, waiting for a night; consolidated: in the weights of `snapshot`, still recalled;
# released: consolidated and out of recall (kept only in the rehearsal reservoir for replay).
# Forgotten episodes are deleted outright; the `forgotten` table keeps only id and snapshot.
STATUSES = ("new", "consolidated", "released")


@dataclass
class Episode:
    id: int
    namespace: str
    text: str
    source: str = ""
    created_at: float = 0.0                 # unix seconds
    metadata: dict = field(default_factory=dict)
    private: bool = False                   # never consolidated into weights
    pinned: bool = False                    # always in context (identity notes); never evicted
    surprise: float = 0.0                   # 0..1, normalised mean token NLL under the model
    novelty: float = 0.0                    # 0..1, 1 - max cosine to what was stored before
    entity_novelty: float = 0.0             # 0..1, share of named entities new to the namespace
    repeats: int = 0                        # near-duplicates folded into this episode
    feedback: float = 0.0                   # explicit importance, 0..1
    priority: float = 0.0                   # the weighted combination (salience.priority)
    recall_count: int = 0
    status: str = "new"
    snapshot: str | None = None             # the snapshot that consolidated it
    superseded_by: int | None = None        # a newer episode replaced every claim of this one
    reservoir: bool = False                 # kept for rehearsal after release
    consolidated_at: float | None = None    # unix seconds a night consolidated it; the release
                                            # grace counts from here

    @classmethod
    def from_row(cls, row) -> "Episode":
        d = dict(row)
        d["metadata"] = json.loads(d.get("metadata") or "{}")
        for flag in ("private", "pinned", "reservoir"):
            d[flag] = bool(d[flag])
        d.pop("embedding", None)
        d.pop("content_hash", None)
        return cls(**d)
