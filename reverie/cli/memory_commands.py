"""What the `reverie memory ...` and `reverie ask` commands do, as library calls returning dicts.

Each opens the data directory, does one thing, closes. The CLI only parses and formats.
"""

from pathlib import Path

from reverie.errors import ReverieError
from reverie.memory.memory import Memory
from reverie.memory.records import parse_lines


def _backend(model: str | None, progress=None):
    if not model or model == "none":
        return None
    from reverie.models.backend import Backend
    return Backend.load(model, progress=progress)


def open_memory(data_dir, model: str | None = None, config=None, progress=None):
    """A Memory whose surprise and token budget use `model` (None or 'none': no model)."""
    backend = _backend(model, progress)
    kw = {}
    if backend is not None:
        from reverie.memory.salience import surprise_scorer
        tok = backend.tokenizer
        kw = dict(scorer=surprise_scorer(backend),
                  count_tokens=lambda text: len(tok(text, add_special_tokens=False)["input_ids"]))
    return Memory(data_dir, config, **kw), backend


def ingest(source: str, data_dir, namespace: str, model: str | None, batch_size: int = 256,
           progress=None) -> dict:
    """Ingest a file (or '-' = the given stdin bytes via source_bytes) in batches."""
    if source == "-":
        import sys
        data, where = sys.stdin.buffer.read(), "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise ReverieError(f"input file {source!r} not found; pass a text or JSONL file, "
                               f"or - for stdin")
        data, where = path.read_bytes(), source
    records = parse_lines(data, where)
    memory, _ = open_memory(data_dir, model, progress=progress)
    stored = repeats = 0
    ids = []
    with memory:
        for start in range(0, len(records), batch_size):
            for r in memory.ingest(records[start:start + batch_size], namespace, source=where):
                ids.append(r.id)
                repeats += r.repeat
                stored += not r.repeat
            if progress:
                progress(step=min(start + batch_size, len(records)), total=len(records))
    return {"stored": stored, "repeats": repeats, "ids": ids, "namespace": namespace}


def recall(query: str, data_dir, namespace: str, k: int | None = None) -> list[dict]:
    with Memory(data_dir) as memory:
        return [{"id": e.id, "created_at": e.created_at, "priority": round(e.priority, 4),
                 "text": memory.current_text(e)} for e in memory.recall(query, namespace, k)]


def stats(data_dir, namespace: str | None) -> dict:
    with Memory(data_dir) as memory:
        return memory.stats(namespace)


def memory_config(preset: str | None = None, overrides=()):
    """The memory settings: the `memory:` section of a serve config (preset name or YAML path),
    then KEY=VALUE overrides; with neither, the defaults (what `reverie sleep` prunes with)."""
    from reverie import config
    from reverie.memory.config import MemoryConfig
    return config.load(MemoryConfig, preset, list(overrides), section="memory")


def prune(data_dir, namespace: str, preset: str | None = None, overrides=()) -> dict:
    with Memory(data_dir, memory_config(preset, overrides)) as memory:
        return memory.prune(namespace)


def forget(episode_id: str, data_dir, namespace: str, model: str = "world") -> dict:
    """An episode no snapshot consolidated leaves the store and its indexes (path
    "memory-only"); one in the weights goes through the lifecycle, which rebuilds them without
    it and probes (reverie.lifecycle.forget)."""
    with Memory(data_dir) as memory:
        episode = memory.get(episode_id, namespace)
        if episode.snapshot is None:
            return {**memory.forget(episode_id, namespace), "path": "memory-only"}
    from reverie.lifecycle import Reverie
    r = Reverie(data_dir, model=model, namespace=namespace)
    try:
        return r.forget(episode.id)
    finally:
        r.close()


def ask(question: str, data_dir, namespace: str, model: str, recall: bool = True,
        progress=None) -> dict:
    """Answer with the model, recalled episodes in its context (or none with recall=False)."""
    if not question.strip():
        raise ReverieError("the question is empty")
    from reverie.snapshots import active_dir
    served = active_dir(data_dir)  # why: after a night, the data directory's snapshot answers
    backend = _backend(str(served) if served else model, progress)
    if backend is None:
        raise ReverieError("ask needs a model; pass --model world, smollm2 or a directory")
    context, used = None, []
    if recall:
        tok = backend.tokenizer
        with Memory(data_dir, count_tokens=lambda t: len(tok(t, add_special_tokens=False)
                                                         ["input_ids"])) as memory:
            recalled = memory.context(question, namespace)
            context, used = recalled.context or None, [e.id for e in recalled.episodes]
    answer = backend.answer([question], [context])[0]
    return {"answer": answer, "episodes": used, "context": context}
