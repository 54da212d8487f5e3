"""The store interface: what the hippocampus asks of a database.

Callers (reverie.memory.memory.Memory, pruning) only use these methods, so a PostgreSQL backend
(pgvector for the vectors, tsvector for the lexical side) can follow without touching them. Every
method takes the namespace; none returns another namespace's rows. Writes made inside
`transaction()` are durable when it exits.
"""

import abc
import re
from contextlib import AbstractContextManager

import numpy as np

from reverie.errors import ReverieError

NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RECALLABLE = ("new", "consolidated")   # statuses recall may return


def check_namespace_name(namespace) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_RE.match(namespace):
        raise ReverieError(f"invalid namespace {namespace!r}: use 1-64 letters, digits, '_', '.' "
                           f"or '-', starting with a letter or digit")
    return namespace


class Store(abc.ABC):
    # ------------------------------------------------------------ namespaces
    @abc.abstractmethod
    def namespaces(self) -> dict[str, int]:
        """name -> number of stored episodes."""

    @abc.abstractmethod
    def has_namespace(self, namespace: str) -> bool: ...

    @abc.abstractmethod
    def ensure_namespace(self, namespace: str) -> None:
        """Create the namespace if needed (writes create namespaces; reads never do)."""

    def check_namespace(self, namespace: str) -> str:
        """For reads: the namespace must exist, else a one-line error listing the known ones."""
        check_namespace_name(namespace)
        if not self.has_namespace(namespace):     # why: on the recall path; no counting here
            known = self.namespaces()
            raise ReverieError(f"unknown namespace {namespace!r}; known: "
                               f"{', '.join(sorted(known)) or 'none yet'} (ingest into a "
                               f"namespace to create it)")
        return namespace

    # ------------------------------------------------------------ episodes
    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager: ...

    @abc.abstractmethod
    def insert(self, namespace: str, rows: list[dict]) -> list[int]:
        """Insert episode rows (Episode fields + 'embedding' float32 (dim,)); returns ids."""

    @abc.abstractmethod
    def get(self, namespace: str, ids: list[int]) -> list: ...

    @abc.abstractmethod
    def by_hash(self, namespace: str, content_hash: str) -> int | None:
        """The id of the episode with this content hash (exact repeats fold into it)."""

    @abc.abstractmethod
    def update(self, namespace: str, episode_id: int, **fields) -> None: ...

    @abc.abstractmethod
    def delete(self, namespace: str, ids: list[int], reason: str) -> int:
        """Remove episodes and everything derived from them (lexical index, claims). With
        reason 'forget', what they superseded is current again; with any other reason
        (released, evicted: learned) it stays superseded."""

    @abc.abstractmethod
    def scrub(self) -> None:
        """Physically remove the bytes of deleted rows (indexes, logs)."""

    @abc.abstractmethod
    def select_ids(self, namespace: str, where: str = "", order: str = "id", limit=None,
                   params=()) -> list[int]:
        """Ids matching a filter over episode columns (used by pruning)."""

    # ------------------------------------------------------------ recall
    @abc.abstractmethod
    def lexical(self, namespace: str, terms: list[str], k: int) -> list[int]:
        """Best-first ids of recallable episodes matching any term (BM25)."""

    @abc.abstractmethod
    def vectors(self, namespace: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (n,), embeddings float32 (n, dim)) of recallable episodes: the dense
        index is rebuilt from these."""

    @abc.abstractmethod
    def mark_recalled(self, namespace: str, ids: list[int], times: int = 1) -> None: ...

    # ------------------------------------------------------------ claims and entities
    @abc.abstractmethod
    def claims_about(self, namespace: str, subjects: list[str]) -> list[dict]: ...

    @abc.abstractmethod
    def claims_superseded_by(self, namespace: str, ids: list[int]) -> list[dict]:
        """Claims that the episodes `ids` superseded (their older sentences)."""

    @abc.abstractmethod
    def add_claims(self, namespace: str, rows: list[dict]) -> None: ...

    @abc.abstractmethod
    def claims_of(self, namespace: str, ids: list[int]) -> list[dict]: ...

    @abc.abstractmethod
    def set_claim(self, namespace: str, episode_id: int, idx: int, **fields) -> None:
        """Set a claim's embedding (float32 array) or superseded_by."""

    @abc.abstractmethod
    def entities_known(self, namespace: str, entities: list[str]) -> set[str]: ...

    @abc.abstractmethod
    def add_entities(self, namespace: str, entities: list[str], delta: int = 1) -> None: ...

    @abc.abstractmethod
    def stats(self, namespace: str) -> dict: ...

    @abc.abstractmethod
    def waiting(self, namespace: str) -> tuple[int, float, int]:
        """(count, summed priority, newest id) of new, non-private, current episodes."""

    @abc.abstractmethod
    def close(self) -> None: ...
