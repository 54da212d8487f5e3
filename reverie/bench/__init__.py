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


def run_bench(name: str, unit: str, make_config, run, json_path: str, keys: tuple) -> dict:
    """The shape every `reverie bench X` command shares: validate the config (a ValueError
    becomes a one-line error), check the --json target, run under a progress bar, write the
    figures, print the headline ones."""
    import json

    from reverie.progress import Bar
    try:
        cfg = make_config()
    except ValueError as e:
        raise ReverieError(f"bench {name}: {e}") from None
    out = json_target(json_path)
    bar = Bar(f"bench {name}", unit=unit)
    try:
        figures = run(cfg, progress=bar)
    finally:
        bar.close()
    out.write_text(json.dumps(figures, indent=2))
    print(json.dumps({k: figures[k] for k in keys}, indent=2))
    return figures
