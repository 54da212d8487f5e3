"""Snapshots: the registry of accepted models under data_dir/snapshots/, and `active`.

Each snapshot is an immutable folder snapshots/<id>/: a plain HF model folder (config,
safetensors, tokenizer), or for a strategy that keeps its adapters apart the PEFT adapters alone
(manifest kind "adapter", `base` names the full weights they sit on); plus manifest.json (id,
parent, created_at, strategy, the night's episodes with their texts, its settings, the gate
report, metrics, reverie version) and the state the night left for the next (sleep_state.json
and, for EWC, sleep_state.safetensors), so a rollback restores the state along with the
weights. The id is a hash of the weight files: the same weights are the same snapshot.

Crash safety (a SIGKILL at any point leaves a consistent registry):
  1. the folder is written under snapshots/.tmp-*, every file and the folder fsynced;
  2. it is renamed to snapshots/<id> and snapshots/ fsynced: now it exists, complete;
  3. only then `active` moves (write .active.tmp, fsync, os.replace, fsync the data dir).
A reader sees the old snapshot or the new one, never half of one. `recover` removes what a kill
left behind (temporary folders and pointers). Marking episodes consolidated happens after step 3
(in reverie.lifecycle), so no episode is ever marked without its committed snapshot.
"""

import hashlib
import json
import os
import shutil
import signal
import time
import uuid
from pathlib import Path

from reverie.errors import ReverieError

ACTIVE = "active"
ROOT = "snapshots"
MANIFEST = "manifest.json"
STATE_JSON = "sleep_state.json"
STATE_TENSORS = "sleep_state.safetensors"
TEMP_PREFIX = ".tmp-"


def crash_point(name: str) -> None:
    """Die here with SIGKILL when REVERIE_CRASH_AT names this point (the gate benchmark's kill
    trials and the crash tests use it to hit the few milliseconds of a commit)."""
    if os.environ.get("REVERIE_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------ pointer and paths
def root(data_dir) -> Path:
    return Path(data_dir) / ROOT


def active_id(data_dir) -> str | None:
    pointer = Path(data_dir) / ACTIVE
    return pointer.read_text().strip() or None if pointer.is_file() else None


def active_dir(data_dir) -> Path | None:
    """The serving snapshot's folder, or None while the data directory has none."""
    sid = active_id(data_dir)
    return root(data_dir) / sid if sid else None


def exists(data_dir, sid: str) -> bool:
    return bool(sid) and (root(data_dir) / sid / MANIFEST).is_file()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    _fsync_file(path)  # why: a rename is durable only once its directory is fsynced


def write_durable(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def set_active(data_dir, sid: str) -> None:
    """Point `active` at a complete snapshot, atomically and durably."""
    data_dir = Path(data_dir)
    if not exists(data_dir, sid):
        raise ReverieError(f"no snapshot {sid!r} in {str(root(data_dir))!r}; list them with "
                           f"`reverie snapshots list`")
    tmp = data_dir / f".{ACTIVE}.tmp"
    write_durable(tmp, sid)
    os.replace(tmp, data_dir / ACTIVE)
    _fsync_dir(data_dir)


def clear_active(data_dir) -> None:
    """Serve the base model again (a deletion removed every night)."""
    pointer = Path(data_dir) / ACTIVE
    if pointer.exists():
        pointer.unlink()
        _fsync_dir(Path(data_dir))


# ------------------------------------------------------------ the night's state
def save_state(folder: Path, doc: dict, tensors: dict | None = None) -> None:
    """The state a night leaves for the next, stored generically: `doc` (JSON-able) ->
    sleep_state.json, `tensors` (name -> tensor, e.g. EWC's Fisher and anchor) ->
    sleep_state.safetensors. reverie.lifecycle.state converts a SleepState to and from these."""
    write_durable(folder / STATE_JSON, json.dumps(doc))
    if tensors:
        from safetensors.torch import save_file
        save_file({n: t.contiguous() for n, t in tensors.items()}, str(folder / STATE_TENSORS))


def load_state(folder: Path | None) -> tuple[dict | None, dict]:
    """(doc, tensors) saved with a snapshot; (None, {}) for None or a folder without them."""
    if folder is None or not (Path(folder) / STATE_JSON).is_file():
        return None, {}
    doc = json.loads((Path(folder) / STATE_JSON).read_text())
    tensors = {}
    if (Path(folder) / STATE_TENSORS).is_file():
        from safetensors.torch import load_file
        tensors = load_file(str(Path(folder) / STATE_TENSORS))
    return doc, tensors


# ------------------------------------------------------------ commit
def weights_id(folder: Path) -> str:
    """sha256 over the weight files (name and bytes), first 16 hex digits."""
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*.safetensors")):
        if f.name == STATE_TENSORS:
            continue
        h.update(str(f.relative_to(folder)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("reverie")
    except PackageNotFoundError:
        return "unknown"


def _is_adapter(backend) -> bool:
    from peft import PeftModel
    return isinstance(backend.model, PeftModel)


def commit(data_dir, backend, manifest: dict, state: dict | None = None,
           tensors: dict | None = None, activate: bool = True) -> str:
    """Write `backend` (and the state its night left, as save_state takes it) as a snapshot;
    make it active unless activate=False. Returns its id. `manifest` may name the parent
    (default: the active one)."""
    snaps = root(data_dir)
    snaps.mkdir(parents=True, exist_ok=True)
    tmp = snaps / f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    adapter = _is_adapter(backend)
    backend.save(tmp)
    crash_point("snapshot-saved")
    sid = weights_id(tmp)
    if state is not None:
        save_state(tmp, state, tensors)
    manifest = {"id": sid, "parent": manifest.get("parent", active_id(data_dir)),
                "created_at": time.time(), "kind": "adapter" if adapter else "full",
                "reverie_version": _version(), **{k: v for k, v in manifest.items()
                                                   if k != "parent"}}
    if adapter:
        manifest["adapters"] = sorted(backend.model.peft_config)
    manifest.update(_loader(tmp, adapter))
    write_durable(tmp / MANIFEST, json.dumps(manifest, indent=2, default=str))
    for f in tmp.rglob("*"):
        if f.is_file():
            _fsync_file(f)
    for d in [tmp, *[p for p in tmp.rglob("*") if p.is_dir()]]:
        _fsync_dir(d)
    crash_point("snapshot-written")
    final = snaps / sid
    if final.exists():            # the same weights were committed before: immutable, reuse
        shutil.rmtree(tmp)
    else:
        os.rename(tmp, final)
        _fsync_dir(snaps)
    crash_point("snapshot-renamed")
    if activate:
        set_active(data_dir, sid)
    return sid


def _loader(folder: Path, adapter: bool) -> dict:
    """What a snapshot needs to load as the gated model, for the manifest."""
    from reverie.models import scope
    if (folder / scope.FILE).is_file():
        return {"loader": "reverie", "loader_reason": "scope.json keeps each night's change to "
                "the text about its subjects; plain transformers would apply every change "
                "everywhere (export with --merged to accept that)"}
    if adapter:
        return {"loader": "peft", "loader_reason": "PEFT adapters over the weights `base` "
                "names; `reverie snapshots export` merges them into a plain folder"}
    return {"loader": "transformers", "loader_reason": "a plain HF folder"}


# ------------------------------------------------------------ reading
def read_manifest(data_dir, sid: str) -> dict:
    path = root(data_dir) / str(sid) / MANIFEST
    if not path.is_file():
        known = [m["id"] for m in list_snapshots(data_dir)]
        raise ReverieError(f"no snapshot {sid!r} in {str(root(data_dir))!r}; known: "
                           f"{', '.join(known) or 'none yet'}")
    return json.loads(path.read_text())


def list_snapshots(data_dir) -> list[dict]:
    """Manifests of every complete snapshot, oldest first."""
    snaps = root(data_dir)
    if not snaps.is_dir():
        return []
    out = [json.loads((d / MANIFEST).read_text()) for d in snaps.iterdir()
           if not d.name.startswith(".") and (d / MANIFEST).is_file()]
    return sorted(out, key=lambda m: (m["created_at"], m["id"]))


def verified(manifest: dict) -> list[int]:
    """The episodes a snapshot's weights were verified to hold (its gate answered all their
    probes): what may leave recall. Older manifests list only the episodes trained on."""
    return [int(e) for e in manifest.get("verified", manifest.get("episodes", []))]


def lineage(data_dir, sid: str | None) -> list[dict]:
    """Manifests from the oldest ancestor down to `sid` (empty for None)."""
    chain = []
    while sid:
        m = read_manifest(data_dir, sid)
        chain.append(m)
        sid = m.get("parent")
    return chain[::-1]


def load(data_dir, sid: str, device: str | None = None):
    """A Backend serving snapshot `sid`: a full folder loads directly; an adapter snapshot loads
    its base and puts every adapter on it (all active, their deltas add up)."""
    from reverie.models.backend import Backend
    m = read_manifest(data_dir, sid)
    folder = root(data_dir) / sid
    if m["kind"] != "adapter":
        return Backend.load(str(folder), device=device)
    from peft import PeftModel
    base = Backend.load(m["base"], device=device)
    names = m["adapters"]
    model = PeftModel.from_pretrained(base.model, _adapter_dir(folder, names[0]),
                                      adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(_adapter_dir(folder, name), adapter_name=name)
    model.base_model.set_adapter(names)
    return Backend(model, base.tokenizer, folder)


def _adapter_dir(folder: Path, name: str) -> str:
    """PEFT saves the adapter named 'default' at the top and any other in a subfolder."""
    return str(folder / name) if (folder / name / "adapter_config.json").is_file() else str(folder)


# ------------------------------------------------------------ recovery, removal, retention
def recover(data_dir) -> dict:
    """Remove what a killed commit left behind: temporary folders and pointer files."""
    data_dir = Path(data_dir)
    removed = 0
    snaps = root(data_dir)
    if snaps.is_dir():
        for d in snaps.iterdir():
            if d.name.startswith((TEMP_PREFIX, ".trash-")):
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
    tmp = data_dir / f".{ACTIVE}.tmp"
    if tmp.exists():
        tmp.unlink()
        removed += 1
    sid = active_id(data_dir)
    if sid and not exists(data_dir, sid):
        raise ReverieError(f"{str(data_dir / ACTIVE)!r} names snapshot {sid!r}, which is missing; "
                           f"activate another with `reverie snapshots activate ID`")
    return {"removed_temporary": removed}


def remove(data_dir, sid: str) -> None:
    """Delete a snapshot folder: renamed out of sight first, so a kill leaves no half folder
    under a valid name (recover clears .trash-*)."""
    if sid == active_id(data_dir):
        raise ReverieError(f"snapshot {sid} is active; activate another one before removing it")
    folder = root(data_dir) / sid
    trash = root(data_dir) / f".trash-{sid}-{uuid.uuid4().hex[:6]}"
    os.rename(folder, trash)
    _fsync_dir(root(data_dir))
    shutil.rmtree(trash)


def gc(data_dir, keep_recent: int = 3) -> list[str]:
    """Retention: remove snapshots that are neither active, nor its ancestors (the exact
    deletion path rebuilds from them), nor among the `keep_recent` newest. Returns removed ids."""
    needed = {m["id"] for m in lineage(data_dir, active_id(data_dir))}
    others = [m["id"] for m in list_snapshots(data_dir) if m["id"] not in needed]
    doomed = others[:max(0, len(others) - keep_recent)]
    for sid in doomed:
        remove(data_dir, sid)
    return doomed


# ------------------------------------------------------------ comparing
def diff(data_dir, a: str, b: str) -> dict:
    """Two snapshots side by side: their probe figures and the episodes only one holds."""
    ma, mb = read_manifest(data_dir, a), read_manifest(data_dir, b)
    ea = {int(e) for m in lineage(data_dir, a) for e in m.get("episodes", [])}
    eb = {int(e) for m in lineage(data_dir, b) for e in m.get("episodes", [])}
    fa, fb = _figures(ma), _figures(mb)
    return {"a": a, "b": b,
            "figures": {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb))},
            "episodes_only_in_a": sorted(ea - eb), "episodes_only_in_b": sorted(eb - ea),
            "lineage": {"a": [m["id"] for m in lineage(data_dir, a)],
                        "b": [m["id"] for m in lineage(data_dir, b)]}}


def _figures(m: dict) -> dict:
    gate = m.get("gate") or {}
    return gate.get("candidate") or {}


# ------------------------------------------------------------ export
def export(data_dir, sid: str, out, merged: bool = False) -> dict:
    """Write snapshot `sid` as a plain HF folder `out` that transformers alone loads (adapters
    merged in), with a copy of its manifest. A scoped snapshot's change applies only to text
    about its nights' subjects, which plain transformers cannot express: refused unless
    `merged`, which exports the weights with every change applied everywhere and records
    `scope_dropped` and the merged model's locality against the scoped one."""
    from reverie.models import export as ex
    from reverie.models import scope
    m = read_manifest(data_dir, sid)
    folder = root(data_dir) / sid
    ex.check_target(out)
    scoped = (folder / scope.FILE).is_file()
    if scoped and not merged:
        raise ReverieError(f"snapshot {sid} keeps its nights' changes in a scope that plain "
                           f"transformers cannot express; use --merged to export the weights "
                           f"with every change applied everywhere")
    backend = load(data_dir, sid)
    model = ex.plain_model(backend.model)
    manifest = dict(m, exported_from=sid, loader="transformers",
                    loader_reason="exported as a plain HF folder")
    if scoped:
        from reverie.models.backend import Backend
        from transformers import AutoModelForCausalLM
        plain = AutoModelForCausalLM.from_pretrained(folder).to(backend.device).eval()
        manifest.update(scope_dropped=True, locality=ex.locality(
            Backend(plain, backend.tokenizer, folder), backend),
            locality_prompts=len(ex.GENERIC_PROMPTS))
        model = plain
    ex.write_folder(model, backend.tokenizer, out,
                    {MANIFEST: json.dumps(manifest, indent=2, default=str)})
    return {"snapshot": sid, "out": str(out), **{k: manifest[k] for k in
                                                 ("scope_dropped", "locality") if k in manifest}}

