"""Tenants: who a request is, and the memory and model each tenant is served from.

Isolation by construction: every tenant has its own data directory (tenants/<name>/ under the
service's data dir) with its own hippocampus and its own snapshot lineage over the shared base
model. A night consolidates one tenant's episodes into that tenant's lineage only, so tenant B's
model never trained on A's facts and B's recall never reads A's store.

`Serving` is what a request holds from its start to its end: the backend and the snapshot id it
answers from, with tokenizers of its own (why: a fast tokenizer is not safe to share between a
thread that pads and one that encodes; "Already borrowed"). A swap replaces a tenant's Serving by
one assignment, so a request sees the old model or the new one, never both.
"""

import copy
import hmac
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from reverie import snapshots
from reverie.errors import ReverieError
from reverie.lifecycle import Reverie
from reverie.memory.salience import surprise_scorer
from reverie.memory.store import check_namespace_name
from reverie.models.backend import Backend

TENANTS_DIR = "tenants"


@dataclass(frozen=True)
class Serving:
    backend: Backend
    snapshot: str | None          # None: the base model
    encoder: object               # tokenizer for request threads (encode only, never pads)
    decoder: object               # tokenizer for the model worker (decode only)

    @classmethod
    def of(cls, backend: Backend, snapshot: str | None) -> "Serving":
        return cls(backend, snapshot, copy.deepcopy(backend.tokenizer),
                   copy.deepcopy(backend.tokenizer))

    @property
    def label(self) -> str:
        return self.snapshot or "base"

    @property
    def max_positions(self) -> int:
        return int(getattr(self.backend.model.config, "max_position_embeddings", 2048))


@dataclass(frozen=True)
class Principal:
    tenant: str
    admin: bool


class Auth:
    """API key -> Principal. Keys are compared in constant time. With no key configured the
    service is open (loopback only, see config.load_keys): every request is the open tenant,
    with admin rights."""

    def __init__(self, keys: dict, admin_key: str | None, open_tenant: str):
        self.keys, self.admin_key, self.open_tenant = dict(keys), admin_key, open_tenant

    @property
    def open(self) -> bool:
        return not self.keys and not self.admin_key

    def principal(self, authorization: str | None, tenant_header: str | None) -> Principal:
        from reverie.serve.errors import APIError
        if self.open:
            return Principal(tenant_header or self.open_tenant, admin=True)
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise APIError(401, "missing API key; send 'Authorization: Bearer <key>'",
                           "invalid_request_error", code="invalid_api_key")
        key = key.strip()
        if self.admin_key and hmac.compare_digest(key.encode(), self.admin_key.encode()):
            return Principal(tenant_header or self.open_tenant, admin=True)
        tenant = None
        for known, name in self.keys.items():
            if hmac.compare_digest(key.encode(), known.encode()):
                tenant = name
        if tenant is None:
            raise APIError(401, "incorrect API key", "invalid_request_error",
                           code="invalid_api_key")
        if tenant_header and tenant_header != tenant:
            raise APIError(403, "X-Reverie-Tenant names another tenant; a tenant key acts for "
                                "its own tenant only", "permission_error", code="wrong_tenant")
        return Principal(tenant, admin=False)


def _view(backend: Backend) -> Backend:
    """The same weights with a tokenizer of its own, for the memory's scorer and counter."""
    return Backend(backend.model, copy.deepcopy(backend.tokenizer), backend.path)


class Tenant:
    """One tenant's memory (through the facade) and the Serving it answers from. `lock` guards
    the memory: SQLite, the dense index and the recall counts are used one request at a time."""

    def __init__(self, name: str, root: Path, base: Serving, cfg, embedder=None):
        self.name, self.dir = name, Path(root) / TENANTS_DIR / name
        self.lock = threading.RLock()
        self.reverie = Reverie(self.dir, model=base.backend, sleep=cfg.sleep, memory=cfg.memory,
                               namespace=name, gate=cfg.gate, embedder=embedder)
        active = snapshots.active_id(self.dir)
        self.serving = base if self.reverie.backend is base.backend else \
            Serving.of(self.reverie.backend, active)
        self._attach_memory(self.serving.backend)
        self.forgotten_during_night: set = set()

    @property
    def memory(self):
        return self.reverie.memory

    def _attach_memory(self, backend: Backend):
        view = _view(backend)
        self.memory.scorer = surprise_scorer(view)
        self.memory.count_tokens = lambda t: len(view.tokenizer(t, add_special_tokens=False)
                                                 ["input_ids"])

    # ------------------------------------------------------------ swap
    def sync(self, base: Serving) -> Serving:
        """Serve what `active` names now (a night or a deletion in another process moved it):
        load it, then switch in one assignment; the memory re-reads the statuses that process
        wrote. Requests that started before keep the Serving they took."""
        with self.lock:
            r = self.reverie
            r.reload()
            backend, snapshot = r.backend, r.active
            if backend is base.backend:
                serving = base
            elif backend is self.serving.backend:
                serving = self.serving
            else:
                serving = Serving.of(backend, snapshot)
            self.serving = serving
            self._attach_memory(serving.backend)
            self.refresh_memory()
        return serving

    def refresh_memory(self):
        """Drop the dense index so the next recall rebuilds it from SQLite (another process
        changed statuses: consolidated, released, evicted, deleted)."""
        with self.lock:
            self.memory.flush()
            self.memory.index = None

    # ------------------------------------------------------------ snapshots
    def snapshots(self) -> list[dict]:
        root, active = self.dir / "snapshots", snapshots.active_id(self.dir)
        out = []
        for path in sorted(root.glob("*/manifest.json")) if root.is_dir() else []:
            try:
                m = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            episodes = m.get("episodes", [])
            out.append({"id": path.parent.name, "object": "snapshot", "parent": m.get("parent"),
                        "created_at": m.get("created_at"), "strategy": m.get("strategy"),
                        "episodes": len(episodes) if isinstance(episodes, list) else episodes,
                        "gate": m.get("gate"), "active": path.parent.name == active})
        return out

    def has_snapshot(self, snapshot: str) -> bool:
        return (self.dir / "snapshots" / snapshot / "manifest.json").is_file()

    def point_active(self, snapshot: str | None):
        """Move the `active` pointer atomically (None: back to the base model). Uses the
        facade's activate() where it exists (it also reopens episodes only snapshots outside
        the new lineage consolidated)."""
        if snapshot is not None and hasattr(self.reverie, "activate"):
            with self.lock:
                self.reverie.activate(snapshot)
            return
        pointer = self.dir / snapshots.ACTIVE
        if snapshot is None:
            pointer.unlink(missing_ok=True)
            return
        tmp = self.dir / f".{snapshots.ACTIVE}.tmp"
        tmp.write_text(snapshot)
        os.replace(tmp, pointer)

    # ------------------------------------------------------------ scheduler's view
    def unconsolidated(self) -> tuple[int, float, int]:
        """(count, summed priority, newest id) of episodes waiting for a night."""
        with self.lock:
            return self.reverie.waiting()

    def episode_counts(self) -> dict:
        with self.lock:
            return self.reverie.episode_counts()

    def close(self):
        with self.lock:
            self.reverie.close()


def prepare_root(root: Path) -> None:
    """A bad data directory fails at start with one line, not on the first request."""
    try:
        (Path(root) / TENANTS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReverieError(f"cannot use --data {str(root)!r} ({e.strerror}); pass a writable "
                           f"directory") from None


class Tenants:
    """Tenants by name, opened on first use (and at start for those already on disk)."""

    def __init__(self, root, base: Serving, cfg, embedder=None):
        self.root, self.base, self.cfg, self.embedder = Path(root), base, cfg, embedder
        prepare_root(self.root)
        self._tenants: dict = {}
        self._lock = threading.Lock()
        for path in sorted((self.root / TENANTS_DIR).glob("*")):
            if path.is_dir() and (path / "memory.sqlite").is_file():
                self.get(path.name)

    def get(self, name: str) -> Tenant:
        tenant = self._tenants.get(name)
        if tenant is None:
            with self._lock:
                tenant = self._tenants.get(name)
                if tenant is None:
                    check_namespace_name(name)  # why: before any folder is made for it
                    tenant = Tenant(name, self.root, self.base, self.cfg, self.embedder)
                    self._tenants[name] = tenant
        return tenant

    def all(self) -> list[Tenant]:
        return list(self._tenants.values())

    def close(self):
        for t in self.all():
            t.close()
