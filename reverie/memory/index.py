"""Dense index per namespace: exact (faiss IndexFlatIP) while small, inverted lists past
`ivf_from` vectors.

Why not HNSW: an HNSW graph cannot delete, and forget must remove a vector, not hide it. Why IVF
at scale: ingest asks each new episode's nearest stored neighbour (novelty, repeats); a flat scan
makes that O(N) per episode, about 0.3 s per batch of 256 at 100k episodes, which alone caps
ingest below the 200/s target. IVF (nlist lists, nprobe scanned) cuts that to a few percent and
still removes by id. SQLite holds the embeddings, so the index is rebuilt from the store on open
and after a crash; it is never the source of truth.
"""

import numpy as np


class DenseIndex:
    def __init__(self, dim: int, ivf_from: int = 20_000, nlist: int = 256, nprobe: int = 24):
        import faiss
        self._faiss = faiss
        self.dim, self.ivf_from, self.nlist, self.nprobe = dim, ivf_from, nlist, nprobe
        self.by_namespace: dict = {}

    def _index(self, namespace: str):
        if namespace not in self.by_namespace:
            flat = self._faiss.IndexFlatIP(self.dim)
            self.by_namespace[namespace] = self._faiss.IndexIDMap2(flat)
        return self.by_namespace[namespace]

    def _to_ivf(self, namespace: str) -> None:
        """Move a grown flat index onto inverted lists trained on its own vectors."""
        faiss, flat = self._faiss, self.by_namespace[namespace]
        ids = faiss.vector_to_array(flat.id_map).astype(np.int64)
        vectors = flat.index.reconstruct_n(0, flat.ntotal)                # (n, dim)
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, self.nlist,
                                 faiss.METRIC_INNER_PRODUCT)
        step = max(1, len(vectors) // 50_000)       # why: k-means needs ~200 points per list
        ivf.train(vectors[::step])
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)   # remove / reconstruct by id
        ivf.nprobe = self.nprobe
        ivf.add_with_ids(vectors, ids)
        self.by_namespace[namespace] = ivf

    def add(self, namespace: str, ids, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        index = self._index(namespace)
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                           np.asarray(ids, dtype=np.int64))
        if isinstance(index, self._faiss.IndexIDMap2) and index.ntotal >= self.ivf_from:
            self._to_ivf(namespace)

    def remove(self, namespace: str, ids) -> int:
        if namespace not in self.by_namespace or not len(ids):
            return 0
        index = self.by_namespace[namespace]
        present = [int(i) for i in ids if self.contains(namespace, int(i))]
        return index.remove_ids(np.asarray(present, dtype=np.int64)) if present else 0

    def search(self, namespace: str, vectors: np.ndarray, k: int):
        """vectors (q, dim) -> (scores (q, k'), ids (q, k')), k' = min(k, size); best first;
        ids -1 where inverted lists held fewer than k' vectors."""
        index = self.by_namespace.get(namespace)
        q = len(vectors)
        if index is None or index.ntotal == 0 or k <= 0 or q == 0:
            return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)
        k = min(k, index.ntotal)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if q > 1:
            return index.search(vectors, k)
        # why: a single query gains nothing from threads, and waking them costs latency. The
        # count is the calling thread's OpenMP setting, which torch shares: left at 1 it
        # would run every later embedding of this thread on one core, so it is put back
        threads = self._faiss.omp_get_max_threads()
        self._faiss.omp_set_num_threads(1)
        try:
            return index.search(vectors, k)
        finally:
            self._faiss.omp_set_num_threads(threads)

    def size(self, namespace: str) -> int:
        index = self.by_namespace.get(namespace)
        return 0 if index is None else index.ntotal

    def contains(self, namespace: str, episode_id: int) -> bool:
        index = self.by_namespace.get(namespace)
        if index is None:
            return False
        try:
            index.reconstruct(int(episode_id))
            return True
        except RuntimeError:
            return False
