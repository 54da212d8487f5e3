"""Deletion that reaches the weights: forget episodes from the hippocampus and from the model.

  memory-only   no snapshot consolidated them: deleting them from the store is enough
  exact         rebuild from the snapshot before the first night that consolidated one of them,
                replaying that night and every later one of the active lineage without them
                (each manifest keeps its night's episode texts, settings and seed; each snapshot
                its SleepState), serve the rebuilt line, then delete the old snapshots that held
                them (weights and manifests)
  approximate   the lineage lacks a night's texts (snapshots from before lineage was kept):
                teach the active model to abstain on questions about them, with the retention
                sample and a KL to its own samples holding the rest, and commit that
  exact+abstain the exact rebuild, then that same abstention lesson, when the rebuilt model
                still guesses about them (abstains below GateConfig.deletion_abstention)
Then a probe: questions about each forgotten text (the gate's stored ones and fresh ones the
model writes open-book), asked closed-book: how many it still answers, how many it abstains on.

A journal (data_dir/forget.pending.json) is written first and removed last; Reverie finishes an
interrupted deletion when it next opens the data directory. The night replays consolidate
exactly the episodes each manifest kept (the selection was made when the night first ran).
"""

import copy
import json
import random
import time
from types import SimpleNamespace

from reverie import snapshots
from reverie.errors import ReverieError
from reverie.gate import probes as P
from reverie.lifecycle.state import commit, load_state
from reverie.models.prompts import ABSTAIN, is_abstention
from reverie.sleep.config import SleepConfig, upgrade
from reverie.sleep.night import run_night

JOURNAL = "forget.pending.json"


def _ids(episode_id) -> list[int]:
    raw = episode_id if isinstance(episode_id, (list, tuple)) else [episode_id]
    try:
        return sorted({int(i) for i in raw})
    except (TypeError, ValueError):
        raise ReverieError(f"episode ids must be integers, got {episode_id!r}") from None


def forget(r, episode_id) -> dict:
    """See the module docstring. `r` is the Reverie; returns path, probe figures, seconds."""
    ids = _ids(episode_id)
    start = time.time()
    journal = r.data_dir / JOURNAL
    resuming = journal.is_file()
    chain = snapshots.lineage(r.data_dir, r.active)
    texts = {e["id"]: e["text"] for m in chain for e in m.get("night", {}).get("episodes", [])
             if e["id"] in ids}
    in_store = {e.id: e for e in r.episodes(ids)}
    missing = [i for i in ids if i not in in_store and i not in texts
               and not any(i in m.get("episodes", []) for m in chain)]
    if missing and not resuming:
        raise ReverieError(f"no episode {missing[0]} in namespace {r.namespace!r} or in the "
                           f"active snapshot's lineage; list them with `reverie memory stats`")
    for i, e in in_store.items():
        texts.setdefault(i, r.memory.current_text(e))
    r.data_dir.mkdir(parents=True, exist_ok=True)
    snapshots.write_durable(journal, json.dumps(ids))

    # questions to probe with, gathered while the model still knows the answers
    stored = [(p["question"], p["answer"]) for p in r.gate.retention_questions()
              if p["episode"] is not None and int(p["episode"]) in ids]
    written = P.write_questions(r.backend, [texts[i] for i in sorted(texts)],
                                2 * r.gate.cfg.questions_per_episode)
    questions = list(dict.fromkeys(stored + [qa for ps in written for qa in ps]))

    for i in in_store:
        r.memory.forget(i, r.namespace)
    gone = [i for i in ids if i not in in_store]
    if gone and r.has_episodes():   # released already: what they superseded is current again
        r.memory.restore_superseded(gone, r.namespace)
    first = next((k for k, m in enumerate(chain) if set(m.get("episodes", [])) & set(ids)), None)
    replayed = 0
    if first is None:
        path = "memory-only"
    elif all("night" in m for m in chain[first:]):
        path = "exact"
        replayed = _rebuild(r, chain[first:], set(ids))
    else:
        path = "approximate"
        _unlearn(r, [q for q, _ in questions], ids)
    # why: also when resuming after a kill that came once the rebuilt line was serving
    removed = _purge(r, set(ids)) if path != "approximate" else []
    r.gate.forget_episodes(ids)
    closed = r.backend.answer([q for q, _ in questions]) if questions else []
    abstained = _share(sum(map(is_abstention, closed)), len(closed))
    if path == "exact" and abstained < r.gate.cfg.deletion_abstention:
        # why: the rebuilt model never saw them, but a model whose abstention has eroded
        # guesses about people it never saw; teach it to say it does not know
        _unlearn(r, [q for q, _ in questions], ids)
        path = "exact+abstain"
        closed = r.backend.answer([q for q, _ in questions])
    journal.unlink()
    return {"forgotten": ids, "path": path, "snapshot": r.active, "replayed_nights": replayed,
            "removed_snapshots": removed,
            "probe": {"questions": len(questions),
                      "closed_book": _share(sum(P.matches(c, a) for c, (_, a)
                                                in zip(closed, questions)), len(closed)),
                      "abstention": _share(sum(map(is_abstention, closed)), len(closed))},
            "seconds": round(time.time() - start, 2)}


def _rebuild(r, nights: list[dict], forgotten: set) -> int:
    """Replay `nights` (manifests, oldest first) from the first one's parent without the
    forgotten episodes; commit each rebuilt night, then serve the last. Returns nights replayed."""
    from reverie import config
    parent = nights[0]["parent"]
    backend = snapshots.load(r.data_dir, parent) if parent else r.base_backend()
    state = load_state(snapshots.root(r.data_dir) / parent if parent else None)
    renamed, replayed = {}, 0
    for m in nights:
        night = m["night"]
        kept = [e for e in night["episodes"] if e["id"] not in forgotten]
        if not kept:                       # the night held nothing else: it vanishes
            renamed[m["id"]] = parent
            continue
        cfg = config.from_dict(SleepConfig, upgrade(night["sleep"]))
        episodes = [SimpleNamespace(id=e["id"], text=e["text"], priority=e["priority"],
                                    private=False) for e in kept]
        before = state.nights
        result = run_night(backend, episodes, cfg, state)
        parent = commit(r.data_dir, result.candidate, {
            "parent": parent, "strategy": result.report["strategy"],
            "namespace": m.get("namespace"),
            "base": m.get("base", r.base), "episodes": result.episodes,
            "verified": [e for e in snapshots.verified(m) if e not in forgotten],
            "night": dict(night, episodes=kept, state_nights=before),
            "gate": {"decision": "replayed", "reasons": [f"rebuilt from {m['id']} without "
                                                         f"forgotten episodes"]},
            "metrics": {k: v for k, v in result.report.items() if isinstance(v, (int, float))},
            "rebuilt_from": m["id"]}, state=state, activate=False)
        renamed[m["id"]] = parent
        backend, replayed = result.candidate, replayed + 1
    if parent:
        snapshots.set_active(r.data_dir, parent)
    else:
        snapshots.clear_active(r.data_dir)
    store = r.memory.store
    with store.transaction():
        for ns in store.namespaces():
            for old, new in renamed.items():
                for eid in store.select_ids(ns, "snapshot = ?", params=(old,)):
                    store.update(ns, eid, snapshot=new)
    r.gate.rename(renamed)     # the retention rows follow the rebuilt line
    r.swap(parent, backend, state)
    return replayed


def _purge(r, forgotten: set) -> list[str]:
    """Remove every snapshot whose night held a forgotten episode, and their descendants."""
    manifests = snapshots.list_snapshots(r.data_dir)
    tainted = {m["id"] for m in manifests if forgotten & set(m.get("episodes", []))}
    grew = True
    while grew:
        more = {m["id"] for m in manifests if m.get("parent") in tainted} - tainted
        tainted |= more
        grew = bool(more)
    tainted.discard(r.active)
    for sid in sorted(tainted):
        snapshots.remove(r.data_dir, sid)
    return sorted(tainted)


def _unlearn(r, questions: list[str], ids: list[int]) -> None:
    """A short night of "I don't know." on the forgotten questions, held in place by the
    retention sample, the model's own answers about the episodes it keeps, and a KL to its own
    samples."""
    from reverie.models.batching import Example
    from reverie.sleep.strategies.base import Night
    from reverie.sleep.strategies.distill import Distill
    from reverie.sleep.strategies.focus import Focus
    from reverie.sleep.train import train
    cfg = copy.deepcopy(r.sleep_cfg)
    cfg.train.epochs, cfg.train.lr = r.gate.cfg.lesson_epochs, r.gate.cfg.lesson_lr
    # why the lineage's sample: an update superseded rows; the lesson must not teach them back
    lineage_ids = {m["id"] for m in snapshots.lineage(r.data_dir, r.active)}
    keep = [(p["question"], p["answer"]) for p in r.gate.retention(lineage_ids)
            if p["episode"] is None or int(p["episode"]) not in ids]
    if not keep:        # no gate sample yet (gate off): what the model knows, from its writing
        keep = [(p["question"], p["answer"])
                for p in P.base_sample(r.backend, r.gate.cfg.retention_base, cfg.seed)]
    # why: the neighbours matter most; questions about the episodes kept in the lineage, with
    # the model's own closed-book answers as targets, so the lesson moves only the forgotten
    kept = [e["text"] for m in snapshots.lineage(r.data_dir, r.active)
            for e in m.get("night", {}).get("episodes", [])][-32:]
    near = [q for ps in P.write_questions(r.backend, kept, 2) for q, _ in ps]
    keep += list(zip(near, r.backend.answer(near))) if near else []
    material = [Example("unlearn", question=q, answer=ABSTAIN) for q in questions]
    material += [Example("retain", question=q, answer=a) for q, a in keep]
    generative = [Example("generative", text=t) for t in P.own_text(r.backend, 32, 48, cfg.seed)]
    model = copy.deepcopy(r.backend.model)
    state = copy.deepcopy(r.state)
    night = Night(cfg, state, r.backend.tokenizer, reference=r.backend.model,
                  generative=generative, rng=random.Random(cfg.seed), lr=cfg.train.lr,
                  epochs=cfg.train.epochs)
    # why Focus: like a night, the lesson changes the MLP blocks only, so the people it keeps
    # lose less (12-epoch deletion bench, all weights: kept people 0.65 -> 0.54)
    parts = [Focus(), Distill()]
    for p in parts:
        model = p.wrap(night, model)
    train(model, material, parts, night)
    for p in parts:
        model = p.finish(night, model)
    from reverie.models.backend import Backend
    candidate = Backend(model.eval(), r.backend.tokenizer, r.backend.path)
    sid = commit(r.data_dir, candidate, {
        "parent": r.active, "strategy": "unlearn", "namespace": r.namespace, "base": r.base,
        "episodes": [], "unlearned": ids,
        "gate": {"decision": "unlearned", "reasons": [f"taught to abstain on {len(questions)} "
                                                      f"questions about forgotten episodes"]}},
        state=state)
    r.swap(sid, candidate, state)


def _share(n, total) -> float:
    return round(n / total, 4) if total else 0.0

