"""reverie.memory: the hippocampus. Durable episodic store, hybrid recall, salience, pruning.

    from reverie.memory import Memory
    with Memory("reverie-data") as memory:
        memory.ingest(["Ada Lowell works for Acme."], namespace="default")
        memory.context("Who employs Ada Lowell?").context
"""

from reverie.memory.config import MemoryConfig
from reverie.memory.episode import Episode
from reverie.memory.memory import Ingested, Memory, Recalled

__all__ = ["Memory", "MemoryConfig", "Episode", "Ingested", "Recalled"]
