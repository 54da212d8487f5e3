"""`reverie memory ingest|recall|stats|prune|forget` and `reverie ask`: parse, call, format."""

import json

from reverie.cli import memory_commands as commands


def _common(p, model=True, namespace="default"):
    p.add_argument("--data", default="./reverie-data", help="data directory (default: %(default)s)")
    p.add_argument("--namespace", default=namespace,
                   help="tenant namespace (default: %(default)s)")
    if model:
        p.add_argument("--model", default="world",
                       help="model for surprise / answers: world, smollm2, a directory, or none")


def _print(obj):
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _ingest(args):
    from reverie.progress import Bar
    bar = Bar("ingest", unit="episode")
    try:
        out = commands.ingest(args.source, args.data, args.namespace, args.model,
                              args.batch_size, progress=bar)
    finally:
        bar.close()
    ids = out.pop("ids")
    out["first_id"], out["last_id"] = (ids[0], ids[-1]) if ids else (None, None)
    _print(out)


def _recall(args):
    for r in commands.recall(args.query, args.data, args.namespace, args.k):
        print(f"[{r['id']}] (priority {r['priority']}) {r['text']}")


def _ask(args):
    out = commands.ask(args.question, args.data, args.namespace, args.model, args.recall)
    print(out["answer"])
    if args.verbose:
        _print({"episodes": out["episodes"], "context": out["context"]})


def register(sub):
    memory = sub.add_parser("memory", help="the episodic memory: ingest, recall, stats, prune, "
                                           "forget")
    msub = memory.add_subparsers(dest="memory_command", metavar="ACTION",
                                 parser_class=type(memory))
    msub.required = True

    p = msub.add_parser("ingest", help="store episodes: text lines or JSONL ({\"text\": ...})")
    p.add_argument("source", metavar="FILE|-", help="input file, or - for stdin")
    p.add_argument("--batch-size", type=int, default=256, help="episodes per commit")
    _common(p)
    p.set_defaults(func=_ingest)

    p = msub.add_parser("recall", help="the episodes recall returns for a query, best first")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=None, help="how many (default: config recall_k)")
    _common(p, model=False)
    p.set_defaults(func=_recall)

    p = msub.add_parser("stats", help="counts by status, priority, index sizes")
    _common(p, model=False, namespace=None)
    p.set_defaults(func=lambda a: _print(commands.stats(a.data, a.namespace)))

    p = msub.add_parser("prune", help="release consolidated episodes past their grace; evict "
                                      "released ones that faded or exceed the capacity (never "
                                      "one the weights do not hold)")
    _common(p, model=False)
    p.add_argument("--preset", default=None,
                   help="serve config preset or YAML path whose memory: section holds the "
                        "settings, as `reverie serve --preset` runs this data directory "
                        "(default: the built-in memory settings, which `reverie sleep` uses)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a memory setting, e.g. --set capacity=50000 or --set "
                        "release_after_days=14 (repeatable)")
    p.set_defaults(func=lambda a: _print(commands.prune(a.data, a.namespace, a.preset,
                                                        a.overrides)))

    p = msub.add_parser("forget", help="delete one episode from the store and every index, and "
                                       "from the weights if a night consolidated it; reports "
                                       "the path taken and the probe")
    p.add_argument("id")
    _common(p, model=True)
    p.set_defaults(func=lambda a: _print(commands.forget(a.id, a.data, a.namespace, a.model)))

    p = sub.add_parser("ask", help="answer a question with the active model, recall on")
    p.add_argument("question")
    p.add_argument("--recall", action="store_true", default=True, help="recall episodes (default)")
    p.add_argument("--no-recall", dest="recall", action="store_false", help="answer closed-book")
    p.add_argument("-v", "--verbose", action="store_true", help="also print the context used")
    _common(p)
    p.set_defaults(func=_ask)
