"""One process at a time changes a data directory's weights and episode marks.

A night, a deletion and a rollback each hold an exclusive lock on data_dir/.lock (flock: the
kernel drops it when the process dies, so a kill leaves nothing to clean up). A second process
that tries meanwhile (a CLI `reverie sleep` beside the service's night) is told at once who
holds it, rather than racing it to `active`.
"""

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from reverie.errors import ReverieError

LOCK = ".lock"


@contextmanager
def exclusive(data_dir, what: str):
    """Hold the data directory's lock for `what` ("night", "forget", ...) or fail in one line."""
    path = Path(data_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise ReverieError(f"data directory {str(data_dir)!r} is busy ({holder}); try "
                               f"again when it ends") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} in process {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)
