"""The SleepState a night leaves for the next, to and from a snapshot's generic state files.

The snapshot registry stores a JSON document and a few named tensors (reverie.snapshots); what
they mean is the night's business, so the conversion lives here, beside the night's caller.
"""

import dataclasses
from pathlib import Path

from reverie import snapshots
from reverie.models.batching import Example
from reverie.sleep.strategies.base import SleepState


def to_files(state: SleepState) -> tuple[dict, dict]:
    """SleepState -> (doc: nights, seen, reservoir, behaviour; tensors: Fisher and anchor)."""
    doc = {"nights": state.nights, "seen": state.seen,
           "reservoir": [dataclasses.asdict(e) for e in state.reservoir],
           "behaviour": [dataclasses.asdict(e) for e in state.behaviour],
           "behaviour_seen": state.behaviour_seen}
    tensors = {}
    if state.fisher is not None:
        tensors = {f"fisher.{n}": t for n, t in state.fisher.items()}
        tensors.update({f"anchor.{n}": t for n, t in (state.anchor or {}).items()})
    return doc, tensors


def from_files(doc: dict | None, tensors: dict) -> SleepState:
    """(doc, tensors) -> SleepState; a fresh one for doc None (no state saved)."""
    if doc is None:
        return SleepState()
    state = SleepState(nights=doc["nights"], seen=doc["seen"],
                       reservoir=[Example(**e) for e in doc["reservoir"]],
                       behaviour=[Example(**e) for e in doc.get("behaviour", [])],
                       behaviour_seen=doc.get("behaviour_seen", 0))
    if tensors:
        state.fisher = {k[7:]: v for k, v in tensors.items() if k.startswith("fisher.")}
        state.anchor = {k[7:]: v for k, v in tensors.items() if k.startswith("anchor.")}
    return state


def save_state(folder: Path, state: SleepState) -> None:
    """Write `state` into a snapshot folder (sleep_state.json, sleep_state.safetensors)."""
    snapshots.save_state(Path(folder), *to_files(state))


def load_state(folder: Path | None) -> SleepState:
    """The SleepState saved with a snapshot (a fresh one for None or a folder without one)."""
    return from_files(*snapshots.load_state(folder))


def commit(data_dir, backend, manifest: dict, state: SleepState | None = None,
           activate: bool = True) -> str:
    """snapshots.commit with the night's SleepState stored beside the weights."""
    doc, tensors = to_files(state) if state is not None else (None, None)
    return snapshots.commit(data_dir, backend, manifest, state=doc, tensors=tensors,
                            activate=activate)
