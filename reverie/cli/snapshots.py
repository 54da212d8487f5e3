"""`reverie snapshots list|show ID|activate ID|diff A B|gc|export ID`, `reverie forget ID...`:
parse, call one library function, format."""

import json


def _print(obj):
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _list(args):
    from reverie import snapshots
    active = snapshots.active_id(args.data)
    rows = snapshots.list_snapshots(args.data)
    if not rows:
        print(f"no snapshots in {args.data!r} yet (a night that passes the gate makes one)")
        return
    print(f"{'':2}{'id':<18}{'parent':<18}{'strategy':<10}{'episodes':>9}  created")
    for m in rows:
        mark = "* " if m["id"] == active else "  "
        print(f"{mark}{m['id']:<18}{str(m.get('parent')):<18}{m.get('strategy', ''):<10}"
              f"{len(m.get('episodes', [])):>9}  {_when(m['created_at'])}")


def _when(t: float) -> str:
    import time
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def _show(args):
    from reverie import snapshots
    m = snapshots.read_manifest(args.data, args.id)
    night = m.get("night") or {}
    if not args.texts:   # why: episode texts can be private; shown only on request
        m = dict(m, night=dict(night, episodes=[e["id"] for e in night.get("episodes", [])]))
    _print(m)


def _activate(args):
    from reverie.lifecycle import Reverie
    r = Reverie(args.data, model=args.model)
    try:
        _print(r.activate(args.id))
    finally:
        r.close()


def _diff(args):
    from reverie import snapshots
    out = snapshots.diff(args.data, args.a, args.b)
    print(f"{'probe':<14}{args.a:>18}{args.b:>18}")
    for k, (x, y) in out["figures"].items():
        print(f"{k:<14}{str(x):>18}{str(y):>18}")
    print(f"episodes only in {args.a}: {out['episodes_only_in_a']}")
    print(f"episodes only in {args.b}: {out['episodes_only_in_b']}")


def _gc(args):
    from reverie import snapshots
    _print({"removed": snapshots.gc(args.data, keep_recent=args.keep)})


def _export(args):
    from reverie import snapshots
    _print(snapshots.export(args.data, args.id, args.out, merged=args.merged))


def _forget(args):
    from reverie.lifecycle import Reverie
    r = Reverie(args.data, model=args.model, namespace=args.namespace)
    try:
        _print(r.forget(args.ids))
    finally:
        r.close()


def _data(p):
    p.add_argument("--data", default="./reverie-data", help="data directory (default: %(default)s)")


def register(sub):
    snaps = sub.add_parser("snapshots", help="the models nights produced: list, show, activate "
                                             "(rollback), diff, gc, export")
    ssub = snaps.add_subparsers(dest="snapshots_command", metavar="ACTION",
                                parser_class=type(snaps))
    ssub.required = True
    p = ssub.add_parser("list", help="every snapshot, oldest first; * marks the active one")
    _data(p)
    p.set_defaults(func=_list)
    p = ssub.add_parser("show", help="one snapshot's manifest")
    p.add_argument("id")
    p.add_argument("--texts", action="store_true", help="include the night's episode texts")
    _data(p)
    p.set_defaults(func=_show)
    p = ssub.add_parser("activate", help="serve this snapshot (rollback); episodes only later "
                                         "snapshots consolidated become new again")
    p.add_argument("id")
    p.add_argument("--model", default="world", help="the base model of the data directory")
    _data(p)
    p.set_defaults(func=_activate)
    p = ssub.add_parser("diff", help="probe figures side by side and the episodes that differ")
    p.add_argument("a")
    p.add_argument("b")
    _data(p)
    p.set_defaults(func=_diff)
    p = ssub.add_parser("gc", help="remove snapshots outside the active lineage, keeping the "
                                   "newest few")
    p.add_argument("--keep", type=int, default=3, help="off-lineage snapshots kept (default 3)")
    _data(p)
    p.set_defaults(func=_gc)
    p = ssub.add_parser(
        "export", help="write a snapshot as a plain HF folder that transformers alone loads",
        description="Write snapshot ID as a plain HF folder (config, safetensors, tokenizer, "
                    "generation config, a copy of its manifest) that "
                    "transformers.AutoModelForCausalLM.from_pretrained loads; adapters are "
                    "merged in. The folder is written beside --out and renamed into place; an "
                    "existing non-empty --out is refused. A scoped snapshot (manifest loader "
                    "'reverie') applies each night's change only to text about that night's "
                    "subjects, which plain transformers cannot express: it is refused unless "
                    "--merged, which exports the weights with every change applied everywhere "
                    "and records in the manifest scope_dropped and the locality it measured "
                    "(the share of 16 neutral prompts whose 16-token greedy continuation the "
                    "merged model writes as the scoped one does).")
    p.add_argument("id")
    p.add_argument("--out", required=True, help="a new (or empty) directory")
    p.add_argument("--merged", action="store_true",
                   help="for a scoped snapshot: export the weights with every night's change "
                        "applied everywhere (not the gated model; locality is recorded)")
    _data(p)
    p.set_defaults(func=_export)

    p = sub.add_parser("forget", help="forget episodes from memory and from the weights "
                                      "(exact rebuild where the lineage allows); reports the "
                                      "path and a closed-book probe")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("--namespace", default="default", help="tenant namespace (default: %(default)s)")
    p.add_argument("--model", default="world", help="the base model of the data directory")
    _data(p)
    p.set_defaults(func=_forget)
