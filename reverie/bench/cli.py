"""`reverie bench memory --episodes N --json FILE [--seed S]`."""

import json

from reverie.bench import json_target, run_bench
from reverie.errors import ReverieError


def _memory(args):
    from reverie.bench.memory import MemoryBenchConfig, run
    run_bench("memory", "episode",
              lambda: MemoryBenchConfig(episodes=args.episodes, seed=args.seed, model=args.model),
              run, args.json,
              ("open_book_accuracy", "recall_at_5", "update_new", "update_stale",
               "recall_p50_ms", "recall_p99_ms", "ingest_per_s", "rss_mb", "salience_auc"))


def register(sub):
    bench = sub.add_parser("bench", help="benchmarks; figures as JSON")
    bsub = bench.add_subparsers(dest="bench_command", metavar="BENCH", parser_class=type(bench))
    bsub.required = True
    p = bsub.add_parser("memory", help="the hippocampus: recall, open-book, updates, latency, "
                                       "salience")
    p.add_argument("--episodes", type=int, default=5000, help="episodes to ingest (default 5000)")
    p.add_argument("--json", required=True, help="where to write the figures")
    p.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    p.add_argument("--model", default="world", help="world, smollm2 or a model directory")
    p.set_defaults(func=_memory)

    p = bsub.add_parser("lifelong", help="days of the world stream, a night after each, every "
                                         "strategy side by side (recall off)")
    p.add_argument("--preset", default="smoke", help="smoke (CI, minutes), quick (every strategy "
                                                     "on the world model) or real (SmolLM2)")
    p.add_argument("--strategies", default=None,
                   help="comma-separated, e.g. frozen,rag,naive,cls (default: the preset's)")
    p.add_argument("--json", required=True, help="where to write the figures")
    p.add_argument("--seed", type=int, default=0, help="stream and night seed (default 0)")
    p.add_argument("--model", default=None, help="override the preset's model")
    p.add_argument("--workers", type=int, default=0,
                   help="strategies run side by side in this many processes, one thread each "
                        "(default: one per core this process may use, at most one per "
                        "strategy; the figures are the same, only the wall time differs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a sleep setting for every strategy, e.g. --set train.lr=3e-4 "
                        "(repeatable; keys as in `reverie sleep --set`)")
    p.set_defaults(func=_lifelong)

    from reverie.bench.serve import add_parser as add_serve  # `reverie bench serve`
    add_serve(bsub)

    from reverie.gate.cli import register_bench
    register_bench(bsub)


def _lifelong(args):
    from reverie.bench.lifelong import run_lifelong
    from reverie.progress import Bar
    out = json_target(args.json)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()] if args.strategies \
        else None
    bar = Bar("bench lifelong")
    try:
        sleep = {}
        for item in args.overrides:
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ReverieError(f"--set {item!r} is not KEY=VALUE; e.g. --set train.lr=3e-4")
            sleep[key.strip()] = value.strip()
        workers = args.workers
        if workers == 0:
            import os
            from reverie.bench.lifelong import PRESETS
            count = len(strategies or getattr(PRESETS.get(args.preset), "strategies", ()))
            cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                     else os.cpu_count() or 1)
            workers = max(1, min(cores, count))
        figures = run_lifelong(args.preset, strategies, seed=args.seed, model=args.model,
                               progress=bar, workers=workers, sleep=sleep)
    finally:
        bar.close()
    out.write_text(json.dumps(figures, indent=2))
    keys = ("acquisition", "acquisition_train", "retention", "update", "stale", "abstention",
            "refusal", "locality", "kl", "fuar", "bwt", "sleep_seconds", "tokens_per_s")
    head = f"{'strategy':<12}" + "".join(f"{k[:10]:>11}" for k in keys)
    print(head)
    for name, row in figures["strategies"].items():
        print(f"{name:<12}" + "".join(f"{row[k]:>11.3f}" if isinstance(row[k], float)
                                      else f"{row[k]:>11}" for k in keys))
    print(f"wrote {out}")
