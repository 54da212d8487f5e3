"""`reverie world ...`: pretrain the world model, evaluate any model on the world's probes."""

import json
from pathlib import Path

from reverie.errors import ReverieError


def register(sub):
    world = sub.add_parser("world", help="the synthetic world: pretrain and evaluate models on it")
    wsub = world.add_subparsers(dest="world_command", metavar="ACTION", required=True)

    p = wsub.add_parser("pretrain", help="pretrain the world model on the base corpus")
    p.add_argument("--preset", default="world", help="config preset or YAML path (default: world)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set n_examples=20000 (repeatable)")
    p.add_argument("--out", required=True, help="directory to write the model to")
    p.set_defaults(func=_pretrain)

    e = wsub.add_parser("eval", help="run the world's probe suites on a model")
    e.add_argument("--model", default="world", help="world, smollm2 or a model directory")
    e.add_argument("--json", dest="json_path", help="write the figures to this JSON file")
    e.add_argument("--seed", type=int, default=0, help="probe sampling seed (default 0)")
    e.add_argument("--world-seed", type=int, default=0, help="seed of the world (default 0)")
    e.add_argument("--people", type=int, default=100, help="people per suite (default 100)")
    e.set_defaults(func=_eval)


def _pretrain(args):
    from reverie import config
    from reverie.progress import Bar
    from reverie.world.pretrain import PretrainConfig, pretrain
    cfg = config.load(PretrainConfig, args.preset, args.overrides)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ReverieError(f"--out {str(out)!r} is not empty; pass a new directory")
    bar = Bar("pretrain")

    def progress(**kw):
        if "eval" in kw:
            e = kw["eval"]
            bar(message="step {step}: loss {loss} closed_book {closed_book} open_book {open_book} "
                        "abstention {abstention} refusal {refusal}".format(**e))
        else:
            bar(**kw)
    summary = pretrain(cfg, out, progress)
    bar.close()
    print(f"wrote {out} ({summary['n_params']:,} parameters, {summary['train_tokens']:,} tokens "
          f"in {summary['train_seconds'] / 60:.1f} min)")


def _eval(args):
    from reverie.progress import Bar
    from reverie.world.evaluation import FIGURES, world_eval
    from reverie.world.people import WorldConfig
    if args.people < 1:
        raise ReverieError(f"--people must be >= 1, got {args.people}")
    figures = world_eval(args.model, seed=args.seed, world=WorldConfig(seed=args.world_seed),
                         n_people=args.people, progress=Bar("eval"))
    width = max(map(len, FIGURES))
    print(f"model {figures['model']} ({figures['n_params']:,} parameters), seed {args.seed}")
    for k in FIGURES:
        print(f"  {k:<{width}}  {figures[k]:.3f}  (n={figures['n_probes'].get(k, figures['n_probes']['closed_book'])})")
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(figures, indent=2))
        print(f"wrote {args.json_path}")
