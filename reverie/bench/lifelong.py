"""The lifelong benchmark: days of the world's stream, one night after each, probes after each
night with recall off (HELD-OUT phrasings), for every strategy side by side.

Baselines that never sleep are strategies here too: `frozen` (no recall, no sleep) and `rag`
(recall on, no sleep; also measured after the hippocampus released consolidated episodes, where
recall alone can no longer answer). Every run drives the same Reverie calls users make.
"""

import dataclasses
import random
import tempfile
import time
from dataclasses import dataclass, field

import torch

from reverie.gate import metrics
from reverie.gate.config import GateConfig
from reverie.models.backend import Backend
from reverie.models.batching import answer_sep
from reverie.sleep.config import SleepConfig
from reverie.world import render
from reverie.world.grammar import ATTRIBUTES
from reverie.world.people import World, WorldConfig
from reverie.world.probes import is_abstention, is_correct, is_refusal
from reverie.world.stream import StreamConfig, build_stream

BASELINES = ("frozen", "rag")
DAY = 86400.0


@dataclass
class Preset:
    model: str
    stream: StreamConfig
    strategies: tuple
    sleep: dict = field(default_factory=dict)      # SleepConfig overrides (dotted keys)
    per_strategy: dict = field(default_factory=dict)  # strategy -> more overrides for it alone
    base_people: int = 60                          # retention sample
    unknown_people: int = 40                       # abstention sample
    locality_prompts: int = 40


PRESETS = {
    "smoke": Preset("world", StreamConfig(days=2, new_per_day=3, updates_per_day=1, noise_per_day=2,
                                          repeats_per_day=1, restatements_per_day=1),
                    ("frozen", "rag", "naive", "cls"),
                    {"train.epochs": 1.0, "dream.question_samples": 2,
                     "rehearsal.generative_samples": 32},
                    base_people=20, unknown_people=10, locality_prompts=10),
    # why 3 days of 4 people: every strategy in under 30 minutes on 2 cores (--workers 2)
    "quick": Preset("world", StreamConfig(days=3, new_per_day=4),
                    ("frozen", "rag", "naive", "replay", "ewc", "lora", "distill", "progressive",
                     "cls")),
    # SmolLM2 writes no usable question about a text and reads one at about 0.5, so the world
    # model writes the questions and answers them (a teacher: 96 of 96 right on seed 0, SmolLM2
    # 43 of 96); SmolLM2 learns its own words where they say the same (dream.learner_voice).
    # cls-scope sets its own rate and passes (scope.lr, scope.epochs); naive and lora train 8
    # passes, naive at 2e-4 (every weight of SmolLM2 moves: the rate of the world model's nights
    # wrecks it). Sizes: one night of 8 people within 30 minutes on one core.
    "real": Preset("smollm2", StreamConfig(days=1, new_per_day=8, updates_per_day=0,
                                           noise_per_day=2, repeats_per_day=0,
                                           restatements_per_day=0, feedback_per_day=0),
                   ("rag", "naive", "lora", "cls-scope"),
                   {"dream.writer": "world", "dream.writer_answers": True,
                    "dream.question_samples": 2, "dream.max_new_tokens": 160,
                    "rehearsal.generative_samples": 48, "rehearsal.generative_max_tokens": 48,
                    "train.max_len": 256},
                   per_strategy={"naive": {"train.lr": 2e-4, "train.epochs": 8.0},
                                 "lora": {"train.epochs": 8.0}},
                   base_people=0, unknown_people=20, locality_prompts=20),
}


def sleep_config(strategy: str, preset: Preset, overrides: dict, seed: int) -> SleepConfig:
    """The sleep config `strategy` runs under on `preset` (the baselines never sleep: theirs is
    cls's), with the user's `overrides`; a setting the strategy ignores is an error."""
    from reverie import config
    name = strategy if strategy not in BASELINES else "cls"
    given = {**preset.sleep, **preset.per_strategy.get(name, {}), **overrides,
             "strategy": name, "seed": seed}
    return config.load(SleepConfig, None, [f"{k}={v}" for k, v in given.items()])


class Probes:
    """Questions fixed once per benchmark, so every strategy answers the same ones."""

    def __init__(self, world: World, stream, preset: Preset, seed: int):
        rng = random.Random(seed)
        self.by_day = []       # day -> [(question, expected)]
        self.train_phrased = []
        for day in range(len(stream.days)):
            qs = []
            for name in stream.people_of_day(day):
                for a in ATTRIBUTES:
                    key = (name, a)
                    if key in stream.superseded:
                        continue  # measured by update/stale instead
                    value = stream.facts[name][a]
                    qs.append((render.question(name, a, "held_out", rng), value))
                    self.train_phrased.append((render.question(name, a, "train", rng), value))
            self.by_day.append(qs)
        self.updates = [(render.question(n, a, "held_out", rng), stream.facts[n][a], old)
                        for (n, a), old in stream.superseded.items()]
        base = world.base[:preset.base_people]
        self.base = [(render.question(p.name, a, "held_out", rng), p.value(a))
                     for p in base for a in rng.sample(ATTRIBUTES, 2)]
        self.unknown = [render.question(p.name, rng.choice(ATTRIBUTES), "held_out", rng)
                        for p in world.probe_unknown[:preset.unknown_people]]
        self.refusal = [(render.question(p.name, "passcode", "held_out", rng), p.passcode)
                        for p in world.base[:max(preset.unknown_people, 10)]]
        # unrelated prompts for locality: open-book questions about strangers and chatter
        strangers = world.probe_openbook[:preset.locality_prompts // 2]
        self.locality = [(render.question(p.name, rng.choice(ATTRIBUTES), "held_out", rng),
                          render.biography(p, rng)) for p in strangers]
        self.locality += [(render.chatter(rng, 1), None)
                          for _ in range(preset.locality_prompts - len(strangers))]


def _accuracy(answers, expected) -> float:
    return sum(is_correct(a, e) for a, e in zip(answers, expected)) / max(1, len(expected))


def locality_reference(backend: Backend, prompts: list) -> list:
    """The pre-stream model's greedy continuation of each unrelated prompt (token ids)."""
    texts = [backend.prompt(q, c) for q, c in prompts]
    outs = backend.generate(texts, max_new_tokens=16, stop_at_newline=False)
    return [(t, o) for t, o in zip(texts, outs)]


@torch.no_grad()
def locality_and_kl(before: Backend, after: Backend, reference: list) -> tuple[float, float, list]:
    """Teacher-forced on the pre-stream continuation: share of continuation positions whose
    top-1 token is unchanged, and mean per-token KL(before || after) there (EasyEdit style);
    and the prompts where some top-1 token changed (the last line of the prompt, the reference
    continuation, and what the model now prefers at each position)."""
    tok = before.tokenizer
    same = total = 0
    kl_sum = 0.0
    changed = []
    for prompt, cont in reference:
        p_ids = tok(prompt)["input_ids"]
        c_ids = tok(answer_sep(prompt) + cont, add_special_tokens=False)["input_ids"] if cont else []
        if not c_ids:
            continue
        ids = torch.tensor([p_ids + c_ids])
        span = slice(len(p_ids) - 1, len(p_ids) + len(c_ids) - 1)
        lb = before.model(input_ids=ids.to(before.device)).logits[0, span].float().cpu()
        la = after.model(input_ids=ids.to(after.device)).logits[0, span].float().cpu()
        kept = lb.argmax(-1) == la.argmax(-1)
        same += int(kept.sum())
        total += len(c_ids)
        pb, pa = torch.log_softmax(lb, -1), torch.log_softmax(la, -1)
        kl_sum += float((pb.exp() * (pb - pa)).sum())
        if not bool(kept.all()):
            changed.append({"prompt": prompt.strip().splitlines()[-2:], "reference": cont,
                            "now": tok.decode(la.argmax(-1))})
    return same / max(1, total), kl_sum / max(1, total), changed


class Clock:
    """Simulated time: the stream's days pass in seconds of a fake clock (salience decays)."""

    def __init__(self, start: float = 1.7e9):
        self.t = start

    def __call__(self) -> float:
        return self.t


def run_strategy(strategy: str, preset: Preset, stream, probes: Probes, pre: Backend,
                 reference: list, day0: dict, seed: int, embedder=None, progress=None) -> dict:
    """One strategy through every day of the stream; its row of the benchmark."""
    from reverie.lifecycle import Reverie
    progress = progress or (lambda **kw: None)
    recall = strategy == "rag"
    clock = Clock()
    start = time.time()
    with tempfile.TemporaryDirectory(prefix=f"reverie-{strategy}-") as tmp:
        # why gate off: the bench measures what each strategy does to the model; behind the
        # gate a harmful night would be rejected and the strategy would look like `frozen`
        r = Reverie(tmp, model=Backend(_clone(pre.model), pre.tokenizer, pre.path),
                    sleep=sleep_config(strategy, preset, {}, seed), embedder=embedder,
                    now=clock,
                    gate=GateConfig(enabled=False))
        ids_of_event: list = []
        R, nights = [], []
        for day, events in enumerate(stream.days):
            clock.t += DAY
            for e in events:
                if e.kind == "feedback":
                    r.feedback(ids_of_event[e.ref], 1.0)
                    ids_of_event.append(None)
                else:
                    ids_of_event.append(r.ingest([e.text], source=e.kind)[0].id)
            if strategy not in BASELINES:
                nights.append(r.sleep(progress))
            R.append([_accuracy(r.answer([q for q, _ in qs], recall=recall), [v for _, v in qs])
                      for qs in probes.by_day])
            progress(message=f"{strategy}: day {day} acquisition so far "
                             f"{sum(R[-1][:day + 1]) / (day + 1):.2f}")
        row = _final_figures(r, recall, probes, R, day0, pre, reference)
        if strategy == "rag":  # recall alone, once consolidated episodes are released
            r.release_all("released-probe")
            qs = [q for day in probes.by_day for q in day]
            row["acquisition_after_release"] = round(
                _accuracy(r.answer([q for q, _ in qs], recall=True), [v for _, v in qs]), 4)
        r.close()
    row["sleep_seconds"] = round(sum(n.get("sleep_seconds", 0) for n in nights), 1)
    row["train_tokens"] = sum(n.get("train_tokens", 0) for n in nights)
    train_s = sum(n.get("train_seconds", 0) for n in nights)
    row["tokens_per_s"] = round(row["train_tokens"] / train_s, 1) if train_s else 0.0
    row["wall_seconds"] = round(time.time() - start, 1)
    row["nights"] = nights
    return row


def _round(x, digits: int = 4):
    return None if x is None else round(x, digits)


def _clone(model):
    import copy
    return copy.deepcopy(model)


MISSES = 12  # wrong answers kept per suite in the JSON


def _final_figures(r, recall: bool, probes: Probes, R: list, day0: dict, pre, reference) -> dict:
    ask = lambda qs: r.answer(qs, recall=recall)  # noqa: E731
    everyone = [q for day in probes.by_day for q in day]
    acquired = ask([q for q, _ in everyone])
    acquisition = _accuracy(acquired, [v for _, v in everyone])
    acquisition_train = _accuracy(ask([q for q, _ in probes.train_phrased]),
                                  [v for _, v in probes.train_phrased])
    upd = ask([q for q, _, _ in probes.updates])
    update = _accuracy(upd, [new for _, new, _ in probes.updates]) if probes.updates else float("nan")
    stale = _accuracy(upd, [old for _, _, old in probes.updates]) if probes.updates else float("nan")
    base_answers = ask([q for q, _ in probes.base])
    base_hits = [is_correct(a, v) for a, (_, v) in zip(base_answers, probes.base)]
    base_now = sum(base_hits) / max(1, len(base_hits))
    forgotten = sum(1 for was, now in zip(day0["base_hits"], base_hits) if was and not now)
    n_updated = sum(is_correct(a, new) for a, (_, new, _) in zip(upd, probes.updates))
    n_acquired = round(acquisition * len(everyone))
    strangers = ask(probes.unknown)
    abstention = sum(map(is_abstention, strangers)) / max(1, len(probes.unknown))
    refusals = ask([q for q, _ in probes.refusal])
    refusal = sum(is_refusal(a, p) for a, (_, p) in zip(refusals, probes.refusal)) / max(1, len(refusals))
    locality, kl, moved = locality_and_kl(pre, r.backend, reference)
    return {
        "acquisition": round(acquisition, 4), "acquisition_train": round(acquisition_train, 4),
        "retention": round(base_now / day0["base"], 4) if day0["base"] else float("nan"),
        "base_closed_book": round(base_now, 4),
        "update": round(update, 4), "stale": round(stale, 4),
        "abstention": round(abstention, 4), "refusal": round(refusal, 4),
        "locality": round(locality, 4), "kl": round(kl, 5),
        "fuar": _round(metrics.fuar(forgotten, n_updated, n_acquired)),
        "bwt": round(metrics.bwt(R), 4), "forgetting": round(metrics.forgetting(R), 4),
        "acc": round(metrics.acc(R), 4),
        # what went wrong, a few of each: where to look next
        "misses": {
            "acquisition": [{"question": q, "expected": v, "answer": a} for (q, v), a
                            in zip(everyone, acquired) if not is_correct(a, v)][:MISSES],
            "update": [{"question": q, "expected": new, "stale": old, "answer": a}
                       for (q, new, old), a in zip(probes.updates, upd)
                       if not is_correct(a, new)][:MISSES],
            "retention": [{"question": q, "expected": v, "answer": a} for (q, v), a, hit
                          in zip(probes.base, base_answers, base_hits) if not hit][:MISSES],
            "abstention": [{"question": q, "answer": a} for q, a in zip(probes.unknown, strangers)
                           if not is_abstention(a)][:MISSES],
            "locality": moved[:MISSES]},
        "accuracy_matrix": [[round(x, 4) for x in row] for row in R],
    }


class Setup:
    """What every strategy of one run shares: the stream, the probes, the pre-stream model and
    its day-0 figures. Rebuilt identically (same seed) in each worker process."""

    def __init__(self, preset_name: str, seed: int, model: str | None, progress=None,
                 sleep: dict | None = None):
        preset = PRESETS[preset_name]
        self.preset = dataclasses.replace(preset, sleep={**preset.sleep, **(sleep or {})},
                                          per_strategy={k: {**v, **(sleep or {})} for k, v in
                                                        preset.per_strategy.items()})
        world = World.build(WorldConfig(seed=0))
        self.stream = build_stream(world, StreamConfig(**{**self.preset.stream.__dict__,
                                                          "seed": seed}))
        self.probes = Probes(world, self.stream, self.preset, seed)
        self.pre = Backend.load(model or self.preset.model, progress=progress)
        self.reference = locality_reference(self.pre, self.probes.locality)
        base_answers = self.pre.answer([q for q, _ in self.probes.base])
        base_hits = [is_correct(a, v) for a, (_, v) in zip(base_answers, self.probes.base)]
        self.day0 = {"base_hits": base_hits, "base": sum(base_hits) / max(1, len(base_hits))}

    def run(self, strategy: str, seed: int, embedder=None, progress=None) -> dict:
        return run_strategy(strategy, self.preset, self.stream, self.probes, self.pre,
                            self.reference, self.day0, seed, embedder=embedder, progress=progress)


# relative night cost, for scheduling only
COST = {"cls": 9.3, "cls-lora": 9.3, "auto": 9.3, "replay": 8.0, "distill": 5.4, "lora": 4.5,
        "ewc": 4.0, "progressive": 3.9, "naive": 2.7, "cls-scope": 2.7, "rag": 0.2, "frozen": 0.1}


_SETUPS: dict = {}  # per worker process: the Setup its earlier jobs built (runs never change it)


def _worker(args) -> tuple:
    """One strategy in its own process, on one thread (see run_lifelong's `workers`)."""
    preset_name, strategy, seed, model, sleep = args
    torch.set_num_threads(1)
    key = (preset_name, seed, model, tuple(sorted((sleep or {}).items())))
    if key not in _SETUPS:
        _SETUPS.clear()
        _SETUPS[key] = Setup(preset_name, seed, model, sleep=sleep)
    setup = _SETUPS[key]
    from reverie.memory.embedder import shared
    return strategy, setup.run(strategy, seed, embedder=shared())


def run_lifelong(preset_name: str, strategies: list | None = None, seed: int = 0,
                 model: str | None = None, progress=None, workers: int = 1,
                 sleep: dict | None = None) -> dict:
    """Every strategy of the preset through the same stream and probes; the benchmark's JSON.

    workers > 1 runs strategies side by side in separate processes of one thread each (on small
    models one thread per process does more work per core than one process on all of them); the
    figures are the same, only sleep_seconds and tokens_per_s then describe one core."""
    from reverie.errors import ReverieError
    if preset_name not in PRESETS:
        raise ReverieError(f"unknown preset {preset_name!r}; use one of {', '.join(PRESETS)}")
    if workers < 1:
        raise ReverieError(f"--workers must be at least 1, got {workers}")
    preset = PRESETS[preset_name]
    sleep = dict(sleep or {})
    strategies = list(strategies or preset.strategies)
    from reverie.sleep.strategies import NAMES
    unknown = [s for s in strategies if s not in NAMES and s not in BASELINES]
    if unknown:
        raise ReverieError(f"unknown strategies {unknown}; use any of "
                           f"{', '.join(list(BASELINES) + list(NAMES))}")
    for s in strategies:  # a bad override fails here, in one line, not in every worker
        try:
            sleep_config(s, preset, sleep, seed)
        except ReverieError as e:
            raise ReverieError(f"--set with {s}: {e}") from None
    progress = progress or (lambda **kw: None)
    start = time.time()
    setup = Setup(preset_name, seed, model, progress, sleep=sleep)
    results = {}
    if workers == 1:
        from reverie.memory.embedder import shared
        embedder = shared()
        for s in strategies:
            progress(message=f"strategy {s}")
            results[s] = setup.run(s, seed, embedder=embedder, progress=progress)
    else:
        import multiprocessing
        # longest first (measured on the quick preset: cls 930 s, replay 800, distill 540, lora
        # 450, ewc 400, progressive 390, naive 270, the baselines under 20): the last to start
        # is then a short one and the cores finish together
        order = sorted(strategies, key=lambda s: -COST.get(s, 1.0))
        jobs = [(preset_name, s, seed, model, sleep) for s in order]
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for s, row in pool.imap_unordered(_worker, jobs):
                progress(message=f"strategy {s} done")
                results[s] = row
        results = {s: results[s] for s in strategies}
    probes = setup.probes
    return {"preset": preset_name, "model": str(setup.pre.path), "seed": seed,
            "stream": preset.stream.__dict__, "workers": workers,
            "sleep_overrides": {**preset.sleep, **sleep},
            "sleep_overrides_per_strategy": preset.per_strategy,
            "day0_base_closed_book": round(setup.day0["base"], 4),
            "n_probes": {"acquisition": sum(map(len, probes.by_day)),
                         "updates": len(probes.updates), "base": len(probes.base),
                         "abstention": len(probes.unknown), "locality": len(probes.locality)},
            "strategies": results, "seconds": round(time.time() - start, 1)}
