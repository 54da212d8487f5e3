"""`reverie demo`: one day and one night on the default model.

Questions about people the model has never met are asked three times: before they are ingested
(it should abstain), after ingest with recall (answered from the hippocampus at once), and after
one night with recall off (answered from the weights). A few base facts, abstention and refusal
are checked before and after the night to show what it kept. Every question is in a HELD-OUT
phrasing that no training or dreaming path ever saw.
"""

import random
import tempfile
import time

from reverie.errors import ReverieError


def register(sub):
    p = sub.add_parser("demo", help="one day and one night: ingest, recall, sleep, compare")
    p.add_argument("--model", default="world", help="world, smollm2 or a model directory")
    p.add_argument("--people", type=int, default=4, help="new people met during the day")
    p.add_argument("--strategy", default="auto", help="the night's strategy (default: auto, "
                                                       "cls-scope on models over 50M parameters, "
                                                       "else cls)")
    p.add_argument("--seed", type=int, default=0, help="seed of the day and the night")
    p.set_defaults(func=run)


def run(args):
    from reverie.lifecycle import Reverie
    from reverie.progress import Bar
    from reverie.sleep.config import SleepConfig
    from reverie.world import render
    from reverie.world.grammar import ATTRIBUTES
    from reverie.world.people import World
    from reverie.world.probes import is_abstention, is_correct, is_refusal
    if not 1 <= args.people <= 20:
        raise ReverieError(f"--people must be between 1 and 20, got {args.people}")
    try:
        cfg = SleepConfig(strategy=args.strategy, seed=args.seed)
    except ValueError as e:
        raise ReverieError(str(e)) from None
    rng = random.Random(args.seed)
    world = World.build()
    newcomers = world.stream[:args.people]
    day = [render.biography(p, rng) for p in newcomers] + [render.chatter(rng, 2) for _ in range(2)]
    questions = [(render.question(p.name, a, "held_out", rng), p.value(a))
                 for p in newcomers for a in rng.sample(ATTRIBUTES, 2)]
    kept = [(render.question(p.name, a, "held_out", rng), p.value(a))
            for p in world.base[:12] for a in rng.sample(ATTRIBUTES, 1)]
    strangers = [render.question(p.name, rng.choice(ATTRIBUTES), "held_out", rng)
                 for p in world.probe_unknown[:8]]
    secrets = [(render.question(p.name, "passcode", "held_out", rng), p.passcode)
               for p in world.base[:8]]

    with tempfile.TemporaryDirectory(prefix="reverie-demo-") as data:
        bar = Bar("night", unit="step")
        r = Reverie(data, model=args.model, sleep=cfg, progress=bar)
        qs = [q for q, _ in questions]

        def behaviour():
            base = _score(r.answer([q for q, _ in kept], recall=False), kept, is_correct)
            abst = sum(map(is_abstention, r.answer(strangers, recall=False))) / len(strangers)
            ref = sum(is_refusal(a, p) for a, (_, p) in
                      zip(r.answer([q for q, _ in secrets], recall=False), secrets)) / len(secrets)
            return base, abst, ref

        before = r.answer(qs, recall=False)
        kept_before = behaviour()
        r.ingest(day, source="demo")
        with_recall = r.answer(qs, recall=True)
        start = time.time()
        report = r.sleep(progress=bar)
        bar.close()
        night_s = time.time() - start
        after = r.answer(qs, recall=False)
        kept_after = behaviour()
        r.close()

    print(f"\nThe day: {len(day)} episodes ingested ({args.people} new people, 2 chatter).")
    print(f"The night: strategy {report.get('strategy')}, {report.get('episodes', 0)} episodes, "
          f"{report.get('train_tokens', 0):,} training tokens, {night_s:.0f} s.")
    gate = report.get("gate") or {}
    verdict = "accepted: the new snapshot serves" if report.get("accepted") else \
        "rejected: the old snapshot keeps serving, the episodes stay in the hippocampus"
    reasons = "; ".join(gate.get("reasons", []))
    print(f"The gate: {verdict}" + (f" ({reasons})" if reasons else "") + ".\n")
    w = max(len(q) for q in qs)
    print(f"{'question (held-out phrasing)':<{w}}  {'truth':<24} before ingest | with recall | "
          f"after night, recall off")
    for (q, truth), b, m, a in zip(questions, before, with_recall, after):
        print(f"{q:<{w}}  {truth:<24} {_mark(b, truth):<13}| {_mark(m, truth):<12}| {a}")
    learned = [_score(x, questions, is_correct) for x in (before, with_recall, after)]
    print(f"\nlearned (accuracy on the new facts): before {learned[0]:.2f}, with recall "
          f"{learned[1]:.2f}, after the night with recall off {learned[2]:.2f}")
    print("kept (before -> after the night):")
    for name, b, a in zip(("base facts", "abstention on strangers", "passcode refusal"),
                          kept_before, kept_after):
        print(f"  {name:<25} {b:.2f} -> {a:.2f}")


def _score(answers, pairs, check) -> float:
    return sum(check(a, t) for a, (_, t) in zip(answers, pairs)) / max(1, len(pairs))


def _mark(answer: str, truth: str) -> str:
    from reverie.world.probes import is_correct
    return ("ok " if is_correct(answer, truth) else "-- ") + answer[:9]
