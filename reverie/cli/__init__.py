"""The `reverie` command. Thin edges: each subcommand parses, calls one library function, formats.

The top floor: each subcommand module (reverie/cli/<name>.py) registers itself here and calls
the library below it; nothing in the library imports this package.
Errors a user can fix print one line `reverie: ...` and exit with code 2; no traceback.
"""

import argparse
import importlib
import os
import sys

# why: set before torch loads; two CPU-heavy processes otherwise starve each other (DESIGN.md)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # why: no code path may reach a hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

COMMAND_MODULES = ("reverie.cli.world", "reverie.cli.demo", "reverie.cli.memory",
                   "reverie.cli.bench", "reverie.cli.sleep", "reverie.cli.serve",
                   "reverie.cli.snapshots")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own code for usage errors)
        self.exit(2, f"reverie: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reverie", description="Language models that never stop learning.")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: all cores)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    from reverie.errors import ReverieError
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        return args.func(args) or 0
    except ReverieError as e:
        print(f"reverie: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reverie: interrupted", file=sys.stderr)
        return 130
