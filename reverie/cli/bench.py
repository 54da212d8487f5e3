"""`reverie bench memory|lifelong|serve|gate`: parse, run one benchmark, write its figures."""

import json
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

    _register_serve(bsub)
    _register_gate(bsub)


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


def _register_serve(bsub):
    p = bsub.add_parser("serve", help="the service under load (16 clients, 60 s) while a night "
                                      "runs and swaps; tenant isolation")
    p.add_argument("--json", required=True, help="where to write the figures")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    p.add_argument("--seconds", type=float, default=60.0, help="shortest load (default 60)")
    p.add_argument("--epochs", type=float, default=1.0, help="the night's epochs (default 1)")
    p.add_argument("--people", type=int, default=4, help="people tenant A is taught (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--model", default="world", help="base model (default world)")
    p.add_argument("--no-gate", dest="gate", action="store_false",
                   help="accept the night without the gate (measures the swap whatever it judges)")
    p.set_defaults(func=_serve)


def _serve(args):
    from reverie.bench.serve import ServeBenchConfig, run
    run_bench("serve", "s",
              lambda: ServeBenchConfig(clients=args.clients, seconds=args.seconds,
                                       epochs=args.epochs, people=args.people, seed=args.seed,
                                       model=args.model, gate=args.gate),
              run, args.json,
              ("requests", "failed_requests", "tokens_per_s", "p50_ms", "p99_ms", "idle",
               "night", "night_job", "stale_after_swap", "leaks", "isolation"))


def _register_gate(bsub):
    p = bsub.add_parser("gate", help="the gate: poisoned and clean nights, SIGKILLs during "
                                     "nights and commits, deletion from the weights")
    p.add_argument("--preset", default="full", help="full (acceptance counts, about 40 min) or "
                                                    "quick (a few of each, minutes)")
    p.add_argument("--quick", dest="preset", action="store_const", const="quick",
                   help="same as --preset quick")
    p.add_argument("--json", required=True, help="where to write the figures")
    p.add_argument("--seed", type=int, default=0, help="seed of people, nights and kills")
    p.add_argument("--parts", default=None,
                   help="comma-separated parts to run (default: all): gate, clean_from_base, "
                        "kills, deletion")
    p.set_defaults(func=_bench_gate)


def _bench_gate(args):
    from reverie.bench.gate import run_gate_bench, write
    from reverie.progress import Bar
    out = json_target(args.json)
    bar = Bar("bench gate")
    try:
        parts = [x.strip() for x in args.parts.split(",") if x.strip()] if args.parts else None
        figures = run_gate_bench(args.preset, seed=args.seed, progress=bar, parts=parts)
    finally:
        bar.close()
    write(figures, out)
    keys = ("clean_accepted", "clean_nights", "clean_accepted_from_base", "poison_rejected",
            "poison_nights", "corrections_accepted", "correction_nights", "kill_trials", "kill_failures", "deleted_closed_book_before",
            "deleted_closed_book", "deleted_abstention", "retention_after_delete", "delete_path",
            "delete_seconds", "seconds")
    print(json.dumps({k: figures.get(k) for k in keys}, indent=2, default=str))
