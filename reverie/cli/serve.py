"""`reverie serve`: the OpenAI-compatible service over a data directory."""

import sys


def register(sub):
    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP service with memory, background "
                                     "sleep and hot swap")
    p.add_argument("--preset", default="serve", help="serve config preset or YAML path "
                                                     "(default: %(default)s)")
    p.add_argument("--model", default=None, help="base model: world, smollm2 or a directory")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8000; 0: free)")
    p.add_argument("--data", default=None, help="service data directory")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set sleep.train.epochs=4 (repeatable)")
    p.set_defaults(func=_serve)


def _serve(args):
    import torch

    from reverie import config
    from reverie.serve.config import ServeConfig, load_keys
    from reverie.serve.server import bind, serve_forever
    from reverie.serve.service import Service
    flags = {"model": args.model, "host": args.host, "port": args.port, "data": args.data}
    overrides = args.overrides + [f"{k}={v}" for k, v in flags.items() if v is not None]
    cfg = config.load(ServeConfig, args.preset, overrides)
    keys, admin = load_keys(cfg)
    sock = bind(cfg.host, cfg.port)          # why: a taken port fails before the model loads
    if not args.threads:
        torch.set_num_threads(cfg.serving_threads())
    try:
        service = Service(cfg, keys, admin)
    except BaseException:
        sock.close()
        raise
    mode = "open (no API key)" if service.auth.open else f"{len(set(keys.values()))} tenant(s)"

    def ready(port):
        print(f"reverie serve: http://{cfg.host}:{port}/v1  model {cfg.served_name}  {mode}  "
              f"data {cfg.data}", file=sys.stderr, flush=True)

    serve_forever(service, sock, on_ready=ready)
