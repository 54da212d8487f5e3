"""The memory benchmark: the hippocampus alone (recall, no sleep) on a stream of the world.

run() reads top to bottom: build the world and a long stream -> pad with filler to N episodes ->
ingest day by day (timed, simulated clock) -> apply feedback -> salience AUC -> recall@5 and
open-book accuracy on HELD-OUT questions about the new people -> update new/stale rates ->
recall latency -> RSS. HELD-OUT phrasings are only used for the questions asked, never ingested.
"""

import random
import resource
import tempfile
import time
from dataclasses import dataclass, replace

import numpy as np

from reverie.config import field, positive
from reverie.errors import ReverieError
from reverie.world.stream import StreamConfig

DAY = 86400.0
T0 = 1_700_000_000.0   # simulated clock start (unix seconds)


@dataclass
class MemoryBenchConfig:
    episodes: int = field(5000, "episodes ingested (stream first; filler pads beyond it)")
    seed: int = field(0, "stream seed; filler, probes and latency queries derive from it")
    model: str = field("world", "model for surprise and answers")
    stream: StreamConfig = field(StreamConfig(days=50, new_per_day=8, updates_per_day=20,
                                              noise_per_day=52, restatements_per_day=15,
                                              repeats_per_day=6, feedback_per_day=2),
                                 "the world's stream (the world holds 400 stream people); its "
                                 "seed is the bench's")
    batch_size: int = field(256, "episodes per ingest call (one commit each)")
    latency_queries: int = field(300, "recall calls timed for the latency figures")
    answer_batch: int = field(64, "questions per generation batch")
    misses: int = field(8, "wrong answers listed in the JSON per suite, with their contexts")

    def __post_init__(self):
        positive(self, "episodes", "batch_size", "latency_queries", "answer_batch")


# ---------------------------------------------------------------- filler (no names, no facts)
_WHO = ("the team", "someone", "the office", "a colleague", "the new intern", "our group",
        "the night shift", "the committee", "a visitor", "the cleaner", "the manager", "we",
        "the neighbours", "my cousin", "the landlord", "a courier", "the tenants", "the choir",
        "the volunteers", "the twins", "the gardener", "our teacher", "the plumber", "the guests")
_DID = ("talked about", "forgot", "moved", "cleaned", "complained about", "ordered", "fixed",
        "lost", "painted", "rearranged", "tested", "photographed", "counted", "repaired",
        "labelled", "borrowed", "returned", "discussed", "ignored", "measured", "polished",
        "wrapped", "sorted", "dropped", "weighed", "hid", "swapped", "folded", "stacked", "found")
_WHAT = ("the old chairs", "a pile of boxes", "the blue folders", "the kettle", "some plants",
         "the spare keys", "the whiteboard", "a broken lamp", "the parking signs", "the fridge",
         "the calendar", "the window blinds", "two umbrellas", "the printer cables",
         "a stack of magazines", "the notice board", "the recycling bins", "the coat rack",
         "the garden hose", "a basket of apples", "the dusty rug", "the bicycle pump",
         "a jar of buttons", "the curtains", "the toolbox", "a tin of paint", "the doormat",
         "the biscuit tin", "a bag of flour", "the laundry")
_WHERE = ("in the hallway", "by the stairs", "in the basement", "on the balcony", "in the shed",
          "near the lifts", "in the attic", "behind the counter", "in the car park",
          "at the bus stop", "in the kitchen", "under the desk", "on the roof", "in the lobby")
_WHEN = ("this morning", "after lunch", "late yesterday", "before the break", "again",
         "for an hour", "at the weekend", "during the storm", "quietly", "without asking",
         "twice", "in a hurry", "at dawn", "after the meeting", "for no reason", "by mistake")


def filler(rng: random.Random) -> str:
    """A varied line of everyday chatter: 2-3 clauses of lower-case words, no entities."""
    parts = [f"{rng.choice(_WHO)} {rng.choice(_DID)} {rng.choice(_WHAT)} {rng.choice(_WHERE)} "
             f"{rng.choice(_WHEN)}" for _ in range(rng.randint(2, 3))]
    return " ".join(p[0].upper() + p[1:] + "." for p in parts)


def auc(scores_pos, scores_neg) -> float:
    """Probability that a positive outranks a negative (ties count half): Mann-Whitney."""
    pos, neg = np.asarray(scores_pos, float), np.asarray(scores_neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    for v in np.unique(allv):                       # average ranks over ties
        tie = allv == v
        ranks[tie] = ranks[tie].mean()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def rss_mb() -> dict:
    current = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return {"rss_mb": round(current, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def build(cfg: MemoryBenchConfig):
    """World, stream and the day-by-day ingest plan: list of (day, [(event_index|None, text)])."""
    from reverie.world.people import World, WorldConfig
    from reverie.world.stream import build_stream
    world = World.build(WorldConfig(seed=0))     # the world the world model was trained on
    try:
        stream = build_stream(world, replace(cfg.stream, seed=cfg.seed))
    except ValueError as e:
        raise ReverieError(f"bench stream: {e}") from None
    events = stream.events
    n_text = sum(e.kind != "feedback" for e in events)
    pad = max(0, cfg.episodes - n_text)
    rng = random.Random(cfg.seed + 1)
    days = cfg.stream.days
    per_day = [pad // days + (d < pad % days) for d in range(days)]
    plan, flat = [], 0
    for d, day in enumerate(stream.days):
        items = [(flat + i, e.text) for i, e in enumerate(day) if e.kind != "feedback"]
        items += [(None, filler(rng)) for _ in range(per_day[d])]
        rng.shuffle(items)
        # why: the day's updates keep the stream's order (a person can move twice in a day;
        # the stream's truth is the last move, so it must also be the last one ingested)
        slots = [k for k, (ev, _) in enumerate(items) if ev is not None
                 and day[ev - flat].kind == "update"]
        for k, item in zip(slots, sorted(items[k] for k in slots)):
            items[k] = item
        plan.append((d, items))
        flat += len(day)
    return world, stream, plan, pad


def run(cfg: MemoryBenchConfig, data_dir=None, progress=None, backend=None) -> dict:
    from reverie.memory import Memory, MemoryConfig
    from reverie.memory.salience import surprise_scorer
    from reverie.models.backend import Backend
    from reverie.world import render
    from reverie.world.probes import is_correct
    say = progress or (lambda **kw: None)
    st = cfg.stream
    per_day = (st.new_per_day + st.updates_per_day + st.noise_per_day + st.restatements_per_day
               + st.repeats_per_day)
    if cfg.episodes < st.days * per_day:           # small runs: fewer days, no filler
        cfg = replace(cfg, stream=replace(st, days=max(2, -(-cfg.episodes // per_day))))
    backend = backend or Backend.load(cfg.model)
    tok = backend.tokenizer
    world, stream, plan, pad = build(cfg)
    events = stream.events
    clock = {"now": T0}
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="reverie-bench-")
        data_dir = tmp.name
    memory = Memory(data_dir, MemoryConfig(), scorer=surprise_scorer(backend),
                    count_tokens=lambda t: len(tok(t, add_special_tokens=False)["input_ids"]),
                    now=lambda: clock["now"])
    ns = "bench"

    # ---- ingest, day by day; feedback events mark their episode at the end of the day
    episode_of, at_ingest, n_ingested, n_stored, ingest_s = {}, {}, 0, 0, 0.0
    total = sum(len(items) for _, items in plan)
    for day, items in plan:
        clock["now"] = T0 + day * DAY
        records = [{"text": text, "created_at": T0 + day * DAY + k}
                   for k, (_, text) in enumerate(items)]
        for s in range(0, len(records), cfg.batch_size):
            t = time.perf_counter()
            results = memory.ingest(records[s:s + cfg.batch_size], ns)
            ingest_s += time.perf_counter() - t
            fresh = [r.id for r in results if not r.repeat]
            for e in memory.store.get(ns, fresh):
                at_ingest[e.id] = e.priority
            for (ev, _), r in zip(items[s:s + cfg.batch_size], results):
                if ev is not None:
                    episode_of[ev] = r.id
            n_ingested += len(results)
            n_stored += len(fresh)
            say(step=n_ingested, total=total, stage="ingest")
        for i, ev in enumerate(events):
            if ev.kind == "feedback" and ev.day == day and ev.ref in episode_of:
                memory.feedback(episode_of[ev.ref], ns, 1.0)
    # why: repeats fold into their originals; top up with filler until the store holds N
    rng = random.Random(cfg.seed + 3)
    while n_stored < cfg.episodes:
        records = [{"text": filler(rng), "created_at": clock["now"] + k}
                   for k in range(min(cfg.batch_size, cfg.episodes - n_stored))]
        t = time.perf_counter()
        results = memory.ingest(records, ns)
        ingest_s += time.perf_counter() - t
        n_ingested += len(results)
        n_stored += sum(not r.repeat for r in results)
        pad += len(results)

    figures = {"seed": cfg.seed, "episodes_requested": cfg.episodes,
               "episodes_ingested": n_ingested, "stored": memory.store.stats(ns)["episodes"],
               "filler": pad, "stream_events": len(events),
               "ingest_per_s": round(n_ingested / ingest_s, 1)}

    # ---- salience: priority at ingest separates new information from nothing new
    kinds = {"new_person": [], "update": [], "noise": [], "restatement": []}
    for i, ev in enumerate(events):
        if ev.kind in kinds and i in episode_of and episode_of[i] in at_ingest:
            kinds[ev.kind].append(at_ingest[episode_of[i]])
    pos, neg = kinds["new_person"] + kinds["update"], kinds["noise"] + kinds["restatement"]
    figures["salience_auc"] = round(auc(pos, neg), 4)
    figures["salience_mean_priority"] = {k: round(float(np.mean(v)), 4) if v else None
                                         for k, v in kinds.items()}
    figures["salience_boost"] = _boost_demo(memory, ns, events, episode_of, at_ingest)

    # ---- recall@5 and open-book accuracy on the new people (HELD-OUT questions)
    rng = random.Random(cfg.seed + 2)
    people = {p.name: p for p in world.stream}
    new_people = [n for n in stream.arrived]
    updated = {k for k in stream.superseded}
    attrs = [a for a in ("birth_date", "birth_city", "university", "field", "employer",
                         "employer_city")]
    probes = []
    for name in new_people:
        a = rng.choice([x for x in attrs if (name, x) not in updated])
        probes.append((name, a, render.question(name, a, "held_out", rng),
                       stream.facts[name][a]))
    hits, contexts, misses = [], [], []
    for name, a, q, value in probes:
        top = memory.recall(q, ns, k=5)
        # relevant: an episode naming the person and stating the asked value (the biography,
        # or a re-rendered repeat of it that was stored on its own)
        hits.append(any(name in e.text and value.lower() in e.text.lower() for e in top))
        if not hits[-1] and len(misses) < 5:
            misses.append({"question": q, "top5": [e.text[:80] for e in top]})
        contexts.append(memory.context(q, ns).context)
    answers = backend.answer([p[2] for p in probes], contexts, batch_size=cfg.answer_batch)
    figures["recall_at_5"] = round(float(np.mean(hits)), 4)
    figures["recall_misses"] = misses
    figures["open_book_accuracy"] = round(float(np.mean(
        [is_correct(ans, p[3]) for p, ans in zip(probes, answers)])), 4)
    figures["open_book_n"] = len(probes)
    # the model's own skill on the same questions, the gold biography alone in the context
    bio_text = {ev.name: ev.text for ev in events if ev.kind == "new_person"}
    gold = backend.answer([p[2] for p in probes], [bio_text[p[0]] for p in probes],
                          batch_size=cfg.answer_batch)
    figures["open_book_gold_accuracy"] = round(float(np.mean(
        [is_correct(ans, p[3]) for p, ans in zip(probes, gold)])), 4)
    figures["open_book_samples"] = [{"question": p[2], "expected": p[3], "answer": ans,
                                     "context": c} for p, ans, c in
                                    list(zip(probes, answers, contexts))[:3]]

    # ---- updates: the newer value wins, the superseded one is gone
    uprobes = [(name, a, render.question(name, a, "held_out", rng), stream.facts[name][a], old)
               for (name, a), old in sorted(stream.superseded.items())]
    ucontexts = [memory.context(q, ns).context for _, _, q, _, _ in uprobes]
    uanswers = backend.answer([p[2] for p in uprobes], ucontexts, batch_size=cfg.answer_batch)
    figures["update_n"] = len(uprobes)
    last_update = {(ev.name, ev.attribute): ev.text for ev in events if ev.kind == "update"}
    gold_ctx = ["\n".join(x for x in (bio_text.get(p[0]), last_update[(p[0], p[1])]) if x)
                for p in uprobes]
    ugold = backend.answer([p[2] for p in uprobes], gold_ctx, batch_size=cfg.answer_batch)
    figures["update_gold_new"] = round(float(np.mean([is_correct(a, p[3])
                                                      for p, a in zip(uprobes, ugold)])), 4)
    figures["update_new"] = round(float(np.mean([is_correct(a, p[3])
                                                 for p, a in zip(uprobes, uanswers)])), 4)
    figures["update_stale"] = round(float(np.mean([is_correct(a, p[4]) and not
                                                   is_correct(a, p[3])
                                                   for p, a in zip(uprobes, uanswers)])), 4)
    figures["update_samples"] = [{"question": p[2], "new": p[3], "old": p[4], "answer": a,
                                  "context": c} for p, a, c in
                                 list(zip(uprobes, uanswers, ucontexts))[:3]]
    # why: the wrong answers say what to fix (reading, recall, or supersede)
    figures["open_book_misses"] = [{"question": p[2], "expected": p[3], "answer": ans,
                                    "context": c} for p, ans, c in zip(probes, answers, contexts)
                                   if not is_correct(ans, p[3])][:cfg.misses]
    figures["update_misses"] = [{"question": p[2], "new": p[3], "old": p[4], "answer": a,
                                 "context": c} for p, a, c in zip(uprobes, uanswers, ucontexts)
                                if not is_correct(a, p[3])][:cfg.misses]

    # ---- recall latency (query embedding included), mixed questions
    names = list(people) + [p.name for p in world.base]
    lat = []
    for _ in range(cfg.latency_queries):
        name, a = rng.choice(names), rng.choice(attrs)
        q = render.question(name, a, "held_out", rng)
        t = time.perf_counter()
        memory.recall(q, ns, k=5)
        lat.append(time.perf_counter() - t)
    figures["recall_p50_ms"] = round(_pct(lat, 50), 2)
    figures["recall_p99_ms"] = round(_pct(lat, 99), 2)
    figures.update(rss_mb())
    figures["memory_stats"] = memory.stats(ns)
    memory.close()
    if tmp is not None:
        tmp.cleanup()
    return figures


def _boost_demo(memory, ns, events, episode_of, at_ingest) -> dict:
    """Priority at ingest vs now, for episodes that got repeats, feedback, or neither."""
    groups = {"repeated": set(), "feedback": set(), "untouched": set()}
    for i, ev in enumerate(events):
        if ev.kind in ("new_person", "update") and i in episode_of:
            groups["untouched"].add(episode_of[i])
    for e in memory.store.get(ns, sorted(groups["untouched"])):
        if e.repeats and not e.feedback:
            groups["repeated"].add(e.id)
        elif e.feedback and not e.repeats:
            groups["feedback"].add(e.id)
    groups["untouched"] -= {e.id for e in memory.store.get(ns, sorted(groups["untouched"]))
                            if e.repeats or e.feedback}
    out = {}
    for name, ids in groups.items():
        eps = [e for e in memory.store.get(ns, sorted(ids)) if e.id in at_ingest]
        out[name] = {"n": len(eps),
                     "priority_at_ingest": round(float(np.mean([at_ingest[e.id] for e in eps])), 4)
                     if eps else None,
                     "priority_now": round(float(np.mean([e.priority for e in eps])), 4)
                     if eps else None}
    return out
