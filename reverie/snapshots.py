"""Snapshots: each accepted night's model as snapshots/<id>/ (a plain HF folder plus
manifest.json) under the data directory, and `active`, the id of the one that serves.

Writes are atomic: the folder is written under a temporary name and renamed into place, then the
`active` pointer is replaced with os.replace, so a reader sees the old snapshot or the new one,
never half of one. (The full registry with content addressing, lineage and rollback is the gate
issue's.)
"""

import json
import os
import shutil
import time
from pathlib import Path

ACTIVE = "active"


def active_id(data_dir) -> str | None:
    pointer = Path(data_dir) / ACTIVE
    return pointer.read_text().strip() if pointer.is_file() else None


def active_dir(data_dir) -> Path | None:
    """The serving snapshot's folder, or None while the data directory has none."""
    sid = active_id(data_dir)
    return Path(data_dir) / "snapshots" / sid if sid else None


def commit(data_dir, backend, manifest: dict) -> str:
    """Write `backend` as a new snapshot and make it the active one. Returns its id."""
    root = Path(data_dir) / "snapshots"
    root.mkdir(parents=True, exist_ok=True)
    sid = f"night-{len(list(root.glob('night-*'))):04d}-{int(time.time())}"
    tmp = root / f".{sid}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    backend.save(tmp)
    manifest = {"id": sid, "parent": active_id(data_dir), "created_at": time.time(), **manifest}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(tmp, root / sid)
    pointer = Path(data_dir) / f".{ACTIVE}.tmp"
    pointer.write_text(sid)
    os.replace(pointer, Path(data_dir) / ACTIVE)
    return sid
