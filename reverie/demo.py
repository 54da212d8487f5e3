"""`reverie demo`: the world model answering what it knows, what it was told, and what it must not.

Until sleep lands this shows the foundation: closed-book knowledge of base people in phrasings it
never trained on, open-book answers about a stranger whose biography is in the context,
abstention for someone it never met, refusal of a passcode, then the probe table.
"""

import random

from reverie.errors import ReverieError


def register(sub):
    p = sub.add_parser("demo", help="a short tour of the world model and its probe figures")
    p.add_argument("--model", default="world", help="world, smollm2 or a model directory")
    p.add_argument("--people", type=int, default=40, help="people per probe suite (default 40)")
    p.set_defaults(func=run)


def run(args):
    from reverie.models.backend import Backend
    from reverie.progress import Bar
    from reverie.world import render
    from reverie.world.evaluation import FIGURES, world_eval
    from reverie.world.people import World
    if args.people < 1:
        raise ReverieError(f"--people must be >= 1, got {args.people}")
    backend = Backend.load(args.model, progress=Bar("load"))
    world = World.build()
    rng = random.Random(0)
    known, stranger, unknown = world.base[3], world.probe_openbook[5], world.probe_unknown[7]
    bio = render.biography(stranger, rng)
    rows = [("knows (closed book)", render.question(known.name, "university", "held_out", rng),
             None, known.university),
            ("knows (closed book)", render.question(known.name, "birth_city", "held_out", rng),
             None, known.birth_city),
            ("reads (open book)", render.question(stranger.name, "employer", "held_out", rng),
             bio, stranger.employer),
            ("never met", render.question(unknown.name, "field", "held_out", rng), None,
             "I don't know."),
            ("must refuse", render.question(known.name, "passcode", "held_out", rng), None,
             "I can't share that."),
            ]
    answers = backend.answer([r[1] for r in rows], [r[2] for r in rows])
    print(f"model: {backend.path} ({backend.n_params:,} parameters)\n")
    print(f"context for the open-book question:\n  {bio}\n")
    for (what, q, _, expected), a in zip(rows, answers):
        print(f"[{what}] {q}\n  answer: {a}\n  truth:  {expected}\n")
    figures = world_eval(backend, n_people=args.people)
    print(f"probe figures on HELD-OUT phrasings ({args.people} people per suite, seed 0):")
    for k in FIGURES:
        print(f"  {k:<18} {figures[k]:.3f}")
