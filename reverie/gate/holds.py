"""Refused nights per episode, and the holds they lead to (gate/refused.json).

An episode refused in `hold_after` nights waits outside the night's selection (it stays in
memory and recall), so one bad episode cannot block every later night. A hold expires: the
episode is tried again after `hold_hours`, doubled each time it is held again, and one more
refusal holds it again at once. An accepted night that consolidates an episode clears it.

File: {"episodes": {id: {"count": refused nights before its first hold, "held_at": seconds
since the epoch or null, "holds": times held}}}. The first format ({id: count}) is read too.
"""

import json
import os
import time
from pathlib import Path

HOUR = 3600.0   # seconds


def write_durable(path: Path, text: str) -> None:
    """Replace `path` with `text`: a temporary file, fsynced, renamed over it, directory
    fsynced, so a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Holds:
    def __init__(self, path: Path, hold_after: int, hold_hours: float, now=time.time):
        self.path, self.hold_after, self.hold_hours, self.now = Path(path), hold_after, \
            hold_hours, now

    def counts(self) -> dict[int, dict]:
        """{episode id: {"count", "held_at", "holds"}} for every episode with a refusal."""
        if not self.path.is_file():
            return {}
        doc = json.loads(self.path.read_text())
        if "episodes" in doc:
            return {int(i): e for i, e in doc["episodes"].items()}
        # the first format, {id: count}: a hold it recorded counts from the file's last write
        written = self.path.stat().st_mtime
        return {int(i): {"count": int(n), "held_at": written if n >= self.hold_after else None,
                         "holds": int(n >= self.hold_after)} for i, n in doc.items()}

    def held(self) -> set:
        """Episodes held now (their wait not over)."""
        now = self.now()
        return {i for i, e in self.counts().items() if self._until(e) > now}

    def _until(self, e: dict) -> float:
        """When the episode's hold ends (seconds since the epoch; 0: not held)."""
        if e["held_at"] is None:
            return 0.0
        return e["held_at"] + self.hold_hours * HOUR * 2 ** (max(1, e["holds"]) - 1)

    def refused(self, ids) -> None:
        """One refused night for each of `ids` (the episodes the gate blames)."""
        counts, now = self.counts(), self.now()
        for i in map(int, ids):
            e = counts.setdefault(i, {"count": 0, "held_at": None, "holds": 0})
            if e["held_at"] is not None or e["count"] + 1 >= self.hold_after:
                e.update(count=max(e["count"], self.hold_after), held_at=now,
                         holds=e["holds"] + 1)    # held: the first time, or again after expiry
            else:
                e["count"] += 1
        self._write(counts)

    def release(self, ids=None) -> list[int]:
        """Clear these episodes' refusals (None: every episode's); returns the ids cleared."""
        counts = self.counts()
        gone = sorted(counts if ids is None else {int(i) for i in ids} & set(counts))
        if gone:
            self._write({i: e for i, e in counts.items() if i not in set(gone)})
        return gone

    def _write(self, counts: dict) -> None:
        write_durable(self.path, json.dumps({"episodes": {str(i): e for i, e in
                                                          sorted(counts.items())}}))
