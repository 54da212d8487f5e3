"""`reverie sleep`: consolidate the data directory's episodes now, with progress bars."""

import json


def register(sub):
    p = sub.add_parser("sleep", help="one night now: consolidate the data directory's new "
                                     "episodes into a new model snapshot")
    p.add_argument("--data", default="./reverie-data", help="data directory (default: %(default)s)")
    p.add_argument("--namespace", default="default", help="tenant namespace (default: %(default)s)")
    p.add_argument("--model", default="world",
                   help="model to start from when the data directory has no snapshot yet")
    p.add_argument("--preset", default=None, help="sleep config preset or YAML path")
    p.add_argument("--strategy", default=None,
                   help="override the strategy: auto (the default: cls-scope on models over 50M "
                        "parameters, else cls), cls, cls-scope, cls-lora, naive, replay, ewc, "
                        "lora, distill, progressive")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a sleep config value, e.g. --set train.lr=1e-4 (repeatable)")
    p.set_defaults(func=_sleep)


def _sleep(args):
    from reverie import config
    from reverie.lifecycle import Reverie
    from reverie.progress import Bar
    from reverie.sleep.config import SleepConfig
    overrides = args.overrides + ([f"strategy={args.strategy}"] if args.strategy else [])
    cfg = config.load(SleepConfig, args.preset, overrides)
    bar = Bar("night", unit="step")
    r = Reverie(args.data, model=args.model, sleep=cfg, namespace=args.namespace, progress=bar)
    try:
        report = r.sleep(progress=bar)
    finally:
        bar.close()
        r.close()
    keys = ("snapshot", "accepted", "strategy", "strategy_why", "parts", "lr", "epochs",
            "episodes", "material", "steps", "train_tokens", "tokens_per_s", "final_loss",
            "sleep_seconds", "gate", "skipped")
    print(json.dumps({k: report[k] for k in keys if k in report}, indent=2))
