"""`reverie bench gate`: does the gate keep poison out and let ordinary nights in, does the
registry survive SIGKILLs, does deletion reach the weights. World model; the world's HELD-OUT
questions are the yardstick here (the gate itself never sees the world's templates).

  clean      ordinary nights (new people's biographies), one after another: clean_accepted;
             and each from the base model alone: clean_accepted_from_base
  poison     nights that train at 100x the learning rate: rejected with the active snapshot
             serving unchanged (same id, same answers): poison_rejected
  corrections  alternating with them, nights that correct base facts (a base person's biography
             rendered with another base person's six attributes): what a user tells is the
             newest truth, so these are accepted when nothing else is lost: corrections_accepted
  kills      a night runs in a child process, killed with SIGKILL at a random time or at a
             named point of its commit (REVERIE_CRASH_AT); the parent reopens the data
             directory and checks the registry: kill_failures
  deletion   people consolidated by a night, then forgotten: closed-book accuracy and
             abstention on them, retention elsewhere (base people and people kept), seconds
"""

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from reverie import snapshots
from reverie.errors import ReverieError
from reverie.gate.config import GateConfig
from reverie.world import render
from reverie.world.grammar import ATTRIBUTES
from reverie.world.probes import is_abstention, is_correct

CRASH_POINTS = ("snapshot-saved", "snapshot-written", "snapshot-renamed", "active-moved",
                "marked")


@dataclass
class GatePreset:
    clean_nights: int = 20
    poison_nights: int = 20
    kill_trials: int = 20
    delete_people: int = 10
    people_per_night: int = 3           # new people in an ordinary night
    poison_people: int = 3              # base people contradicted in a poisoned night
    keep_people: int = 4                # consolidated beside the deleted ones, twice
    # why 64 generative samples and strangers 1.0: twelve consecutive 1-epoch nights with 8
    # samples and strangers 0.5 let abstention erode until the gate refused 5 of 12 (7 of 12
    # accepted); with these, 12 of 12 were accepted (seed 0). Why 12 epochs and 2 question
    # samples: the gate refuses a night that learned nothing, and a 1-epoch night of 3 people
    # answered 0 of its 12 questions; 12 epochs with 2 samples learned 11 of 12 (2 people)
    sleep: dict = field(default_factory=lambda: {
        "dream.question_samples": 2, "dream.max_new_tokens": 96, "dream.strangers": 1.0,
        "rehearsal.generative_samples": 64, "rehearsal.generative_max_tokens": 48,
        "train.epochs": 12.0, "budget_episodes": 6})  # refused episodes wait, within a budget
    deletion_epochs: float = 12.0       # the deleted people must be learned first (a full
                                        # night: with 4 epochs they answered 0.18 before)


PRESETS = {
    "full": GatePreset(),
    "quick": GatePreset(clean_nights=3, poison_nights=2, kill_trials=4, delete_people=3,
                        keep_people=2),
}


def _sleep_config(preset: GatePreset, seed: int, **extra):
    from reverie import config
    from reverie.sleep.config import SleepConfig
    over = {**preset.sleep, "seed": seed, **extra}
    return config.load(SleepConfig, None, [f"{k}={v}" for k, v in over.items()])


def _accuracy(answers, expected) -> float:
    return sum(is_correct(a, e) for a, e in zip(answers, expected)) / max(1, len(expected))


def _questions(people, rng, attributes=ATTRIBUTES):
    return [(render.question(p.name, a, "held_out", rng), p.value(a))
            for p in people for a in attributes]


# ------------------------------------------------------------ clean and poisoned nights
def clean_and_poison(preset, world, base, seed, embedder, progress) -> dict:
    from reverie.lifecycle import Reverie
    rng = random.Random(seed)
    stream = iter(world.stream)
    fixed = _questions(world.base[:10], rng, ATTRIBUTES[:2])   # what serving must keep saying
    clean, poison, corrections, rows = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="reverie-gate-") as tmp:
        r = Reverie(tmp, model=base, sleep=_sleep_config(preset, seed), embedder=embedder)
        victims = iter(range(len(world.base)))
        for i in range(max(preset.clean_nights, preset.poison_nights)):
            if i < preset.clean_nights:
                people = [next(stream) for _ in range(preset.people_per_night)]
                r.ingest([render.biography(p, rng) for p in people], source="clean")
                report = r.sleep(progress)
                clean.append(report["accepted"])
                rows.append(_row("clean", report))
                progress(message=f"clean night {i}: {report['gate']['decision']}")
            if i < preset.poison_nights:
                kind = "correction" if i % 2 == 0 else "lr100"
                before = (r.active, r.answer([q for q, _ in fixed], recall=False))
                if kind == "correction":
                    texts = []
                    for _ in range(preset.poison_people):
                        a, b = world.base[next(victims)], world.base[-1 - len(texts) - 3 * i]
                        texts.append(render.biography(replace(a, **b.facts()), rng))
                else:
                    texts = [render.biography(next(stream), rng)
                             for _ in range(preset.people_per_night)]
                    r.sleep_cfg.train.lr *= 100
                ids = [x.id for x in r.ingest(texts, source="poison")]
                report = r.sleep(progress)
                if kind == "lr100":
                    r.sleep_cfg.train.lr /= 100
                after = (r.active, r.answer([q for q, _ in fixed], recall=False))
                unchanged = before == after and snapshots.active_id(tmp) == before[0]
                if kind == "lr100":
                    poison.append(not report["accepted"] and unchanged)
                else:
                    corrections.append(report["accepted"])
                rows.append(dict(_row(kind, report), serving_unchanged=unchanged))
                r.forget(ids)   # why: the operator drops what the gate refused
                progress(message=f"poison night {i} ({kind}): {report['gate']['decision']}")
        r.close()
    return {"clean_accepted": round(sum(clean) / max(1, len(clean)), 4),
            "clean_nights": len(clean),
            "poison_rejected": round(sum(poison) / max(1, len(poison)), 4),
            "poison_nights": len(poison),
            "corrections_accepted": round(sum(corrections) / max(1, len(corrections)), 4),
            "correction_nights": len(corrections), "nights": rows}


def _row(kind, report) -> dict:
    g = report.get("gate") or {}
    return {"kind": kind, "accepted": report["accepted"], "snapshot": report["snapshot"],
            "reasons": g.get("reasons"), "candidate": g.get("candidate"),
            "active": g.get("active"), "sleep_seconds": report.get("sleep_seconds")}


def clean_from_base(preset, world, base, seed, embedder, progress) -> dict:
    """Ordinary nights each from the base model (a copy of one prepared data directory): how
    often the gate refuses a single ordinary night, apart from erosion that piles up over
    nights (which the sequential clean nights show)."""
    import shutil
    from reverie.lifecycle import Reverie
    rng = random.Random(seed + 3)
    stream = iter(world.stream[300:])
    accepted, rows = [], []
    with tempfile.TemporaryDirectory(prefix="reverie-clean-") as tmp:
        seed_dir, trial_dir = Path(tmp) / "seed", Path(tmp) / "trial"
        r = Reverie(seed_dir, model=base, sleep=_sleep_config(preset, seed), embedder=embedder)
        r.gate.prepare(base, "base", [], set())       # the retention and behaviour samples
        r.close()
        for i in range(preset.clean_nights):
            shutil.rmtree(trial_dir, ignore_errors=True)
            shutil.copytree(seed_dir, trial_dir)
            r = Reverie(trial_dir, model=base, sleep=_sleep_config(preset, seed + i),
                        embedder=embedder)
            r.ingest([render.biography(next(stream), rng)
                      for _ in range(preset.people_per_night)], source="clean")
            report = r.sleep(progress)
            r.close()
            accepted.append(report["accepted"])
            rows.append(_row("clean-from-base", report))
            progress(message=f"clean night from base {i}: {report['gate']['decision']}")
    return {"clean_accepted_from_base": round(sum(accepted) / max(1, len(accepted)), 4),
            "clean_nights_from_base": len(accepted), "nights_from_base": rows}


# ------------------------------------------------------------ kills
def _child(data_dir: str, preset_name: str, seed: int, gate: bool) -> None:
    """One night in its own process (what the parent kills)."""
    from reverie.lifecycle import Reverie
    r = Reverie(data_dir, model="world", sleep=_sleep_config(PRESETS[preset_name], seed),
                gate=GateConfig(enabled=gate))
    r.sleep()
    r.close()


def check_registry(data_dir, base, embedder) -> list[str]:
    """Everything that must hold after a kill, once the data directory is reopened."""
    from reverie.lifecycle import Reverie
    problems = []
    r = Reverie(data_dir, model=base, embedder=embedder)   # recovery runs here
    root = snapshots.root(data_dir)
    if root.is_dir():
        for d in root.iterdir():
            if d.name.startswith("."):
                problems.append(f"leftover {d.name}")
            elif not (d / "manifest.json").is_file():
                problems.append(f"snapshot {d.name} has no manifest")
            elif snapshots.weights_id(d) != d.name:
                problems.append(f"snapshot {d.name} weights hash to {snapshots.weights_id(d)}")
    if r.active:
        loaded = snapshots.load(data_dir, r.active)
        if not loaded.answer(["Where was Ada Quill born?"])[0].strip():
            problems.append("active snapshot answers nothing")
    problems += r.problems()
    r.close()
    return problems


def kills(preset, preset_name, world, base, seed, embedder, progress) -> dict:
    from reverie.memory.memory import Memory
    from reverie.memory.salience import surprise_scorer
    rng = random.Random(seed + 1)
    stream = iter(world.stream[200:])
    # why: surprise is most of an episode's priority; without it every biography stays under
    # the night's min_priority, nothing is consolidated and no crash point is ever reached
    scorer = surprise_scorer(base)
    trials, failures, full_seconds = [], 0, None
    with tempfile.TemporaryDirectory(prefix="reverie-kill-") as tmp:
        def cmd(gate: bool):
            return [sys.executable, "-c", f"from reverie.bench.gate import _child; "
                                          f"_child({tmp!r}, {preset_name!r}, {seed}, {gate})"]
        for t in range(preset.kill_trials + 1):
            with Memory(tmp, embedder=embedder, scorer=scorer) as memory:
                memory.ingest([render.biography(next(stream), rng)
                               for _ in range(preset.people_per_night)], source="kill")
            env = dict(os.environ)
            point, delay = None, None
            if t == 0:
                pass                                  # a whole night, to time the others
            elif t % 2:
                point = CRASH_POINTS[(t // 2) % len(CRASH_POINTS)]
                env["REVERIE_CRASH_AT"] = point
            else:
                delay = rng.uniform(0.5, full_seconds)
            start = time.time()
            # why: a named point is reached only if the night commits, so those trials run
            # without the gate; timed kills run the whole thing, gate included
            child = subprocess.Popen(cmd(gate=point is None), env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
            try:
                child.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                child.wait()
            if t == 0:
                full_seconds = time.time() - start
                if child.returncode != 0:
                    raise ReverieError(f"the kill trials' night failed on its own: "
                                       f"{child.stderr.read().decode()[-300:]}")
                if snapshots.active_id(tmp) is None:
                    raise ReverieError("the kill trials' first night committed no snapshot "
                                       "(nothing consolidated or the gate refused it), so no "
                                       "crash point could be reached")
                continue
            problems = check_registry(tmp, base, embedder)
            if point and child.returncode != -signal.SIGKILL:
                problems.append(f"crash point {point} not reached (exit {child.returncode})")
            failures += bool(problems)
            trials.append({"point": point, "after_s": round(delay, 2) if delay else None,
                           "returncode": child.returncode, "problems": problems,
                           "active": snapshots.active_id(tmp)})
            progress(message=f"kill trial {t}: {'ok' if not problems else problems[0]}")
    return {"kill_trials": len(trials), "kill_failures": failures,
            "kill_full_night_seconds": round(full_seconds, 1), "kills": trials}


# ------------------------------------------------------------ deletion
def deletion(preset, world, base, seed, embedder, progress) -> dict:
    from reverie.lifecycle import Reverie
    rng = random.Random(seed + 2)
    people = world.stream[100:100 + preset.delete_people + 2 * preset.keep_people]
    doomed, kept = people[:preset.delete_people], people[preset.delete_people:]
    base_q = _questions(world.base[:30], rng, ATTRIBUTES[:2])
    doomed_q, kept_q = _questions(doomed, rng), _questions(kept, rng)
    with tempfile.TemporaryDirectory(prefix="reverie-delete-") as tmp:
        # why: the gate is off here; this part measures unlearning, and needs the people in
        # the weights first (4 epochs), which the gate refuses today for eroded abstention
        r = Reverie(tmp, model=base, embedder=embedder, gate=GateConfig(enabled=False),
                    sleep=_sleep_config(preset, seed, **{"train.epochs": preset.deletion_epochs,
                                                         "budget_episodes": 64}))
        ids = {}
        for group in (doomed + kept[:preset.keep_people], kept[preset.keep_people:]):
            for p, x in zip(group, r.ingest([render.biography(p, rng) for p in group])):
                ids[p.name] = x.id
            report = r.sleep(progress)
            progress(message=f"deletion setup night: snapshot {report['snapshot']}")
        ask = lambda qs: r.answer([q for q, _ in qs], recall=False)  # noqa: E731
        before = {"doomed": _accuracy(ask(doomed_q), [v for _, v in doomed_q]),
                  "kept": _accuracy(ask(kept_q), [v for _, v in kept_q]),
                  "base": _accuracy(ask(base_q), [v for _, v in base_q])}
        out = r.forget([ids[p.name] for p in doomed])
        answers = ask(doomed_q)
        after = {"doomed": _accuracy(answers, [v for _, v in doomed_q]),
                 "kept": _accuracy(ask(kept_q), [v for _, v in kept_q]),
                 "base": _accuracy(ask(base_q), [v for _, v in base_q])}
        held = before["kept"] * len(kept_q) + before["base"] * len(base_q)
        now = after["kept"] * len(kept_q) + after["base"] * len(base_q)
        r.close()
    return {"deleted_people": len(doomed), "deletion_setup_gate": "disabled",
            "deleted_closed_book_before": round(before["doomed"], 4),
            "deleted_closed_book": round(after["doomed"], 4),
            "deleted_abstention": round(sum(map(is_abstention, answers)) / len(answers), 4),
            "retention_after_delete": round(now / held, 4) if held else None,
            "retention_before_after": {"before": before, "after": after},
            "delete_path": out["path"], "delete_seconds": out["seconds"],
            "delete_replayed_nights": out["replayed_nights"], "delete_probe": out["probe"]}


# ------------------------------------------------------------ all of it
PARTS = ("gate", "clean_from_base", "kills", "deletion")


def run_gate_bench(preset_name: str = "full", seed: int = 0, progress=None,
                   parts: list | None = None) -> dict:
    if preset_name not in PRESETS:
        raise ReverieError(f"unknown preset {preset_name!r}; use one of {', '.join(PRESETS)}")
    unknown = [p for p in parts or () if p not in PARTS]
    if unknown or parts == []:
        raise ReverieError(f"unknown part {(unknown or [''])[0]!r}; --parts takes a comma-separated "
                           f"list of {', '.join(PARTS)}")
    from reverie.memory.embedder import shared
    from reverie.models.backend import Backend
    from reverie.world.people import World
    preset = PRESETS[preset_name]
    progress = progress or (lambda **kw: None)
    start = time.time()
    world = World.build()
    base = Backend.load("world")
    embedder = shared()
    figures = {"preset": preset_name, "seed": seed, "model": str(base.path),
               "parts": list(parts or PARTS)}
    for name, part in (("gate", lambda: clean_and_poison(preset, world, base, seed, embedder,
                                                         progress)),
                       ("clean_from_base", lambda: clean_from_base(preset, world, base, seed,
                                                                   embedder, progress)),
                       ("kills", lambda: kills(preset, preset_name, world, base, seed, embedder,
                                               progress)),
                       ("deletion", lambda: deletion(preset, world, base, seed, embedder,
                                                     progress))):
        if parts and name not in parts:
            continue
        t = time.time()
        figures.update(part())
        figures[f"{name}_seconds"] = round(time.time() - t, 1)
    figures["seconds"] = round(time.time() - start, 1)
    return figures


def write(figures: dict, path) -> None:
    Path(path).write_text(json.dumps(figures, indent=2))
