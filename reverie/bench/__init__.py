"""Benchmarks that drive the same library calls users run, and write their figures as JSON."""

from pathlib import Path

from reverie.errors import ReverieError


def json_target(path: str) -> Path:
    """Where a benchmark writes its figures; checked before any work starts."""
    out = Path(path)
    if out.parent and not out.parent.exists():
        raise ReverieError(f"--json directory {str(out.parent)!r} does not exist; create it or "
                           f"write the figures elsewhere")
    return out
