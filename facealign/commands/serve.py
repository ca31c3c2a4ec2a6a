"""`facealign serve`: a local model server speaking TF Serving's REST API.

Serves the newest numeric version under --model-base-path (the Pusher's
push destination) at http://HOST:PORT/v1/models/NAME and switches to newer
versions as they appear, without a restart. See serving/server.py for the
API and its limits; production uses TF Serving itself (same URLs and JSON).
"""
from __future__ import annotations

import logging
import pathlib

from facealign.errors import UserError


def add_parser(sub) -> None:
    parser = sub.add_parser("serve", help="serve exported models over TF Serving's REST API")
    parser.add_argument("--model-base-path", required=True,
                        help="folder of numeric version folders (e.g. serving_models/NAME)")
    parser.add_argument("--model-name", help="the NAME in /v1/models/NAME "
                                             "(default: the base path's folder name)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8501, help="HTTP port (default 8501)")
    parser.add_argument("--poll-seconds", type=float, default=2.0,
                        help="how often to look for a new version (default 2)")
    parser.add_argument("--max-concurrency", type=int, default=4,
                        help="inference requests run at once; others queue (default 4)")
    parser.add_argument("--queue-timeout", type=float, default=30.0,
                        help="seconds a request may wait for a slot before a 503 (default 30)")
    parser.add_argument("--max-body-mb", type=float, default=10.0,
                        help="largest request body in MB; larger ones get 413 (default 10)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    base = pathlib.Path(args.model_base_path)
    if not base.is_dir():
        raise UserError(f"--model-base-path {base}: no such folder")
    if (base / "saved_model.pb").is_file():
        raise UserError(f"--model-base-path {base} is a SavedModel itself; pass the folder "
                        f"that holds its numeric version folders (e.g. {base.parent}, with "
                        f"{base} named by a version number)")
    for name, value in (("--port", args.port), ("--max-concurrency", args.max_concurrency)):
        if value < (0 if name == "--port" else 1) or (name == "--port" and value > 65535):
            raise UserError(f"{name} {value}: out of range")
    if args.poll_seconds <= 0 or args.queue_timeout <= 0 or args.max_body_mb <= 0:
        raise UserError("--poll-seconds, --queue-timeout and --max-body-mb must be positive")
    name = args.model_name or base.resolve().name
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from serving import server

    if not server.numeric_versions(base):
        print(f"serve: no version folder (a number holding saved_model.pb) in {base} yet; "
              f"waiting for one", flush=True)
    local = server.LocalServer(base, name, args.host, args.port, args.poll_seconds,
                               int(args.max_body_mb * 2**20), args.max_concurrency,
                               args.queue_timeout, access_log=True)

    def ready(srv):
        current = srv.repository.current
        print(f"serve: model {name!r} version {current.version if current else '(none yet)'} "
              f"at {srv.model_url} (Ctrl-C stops)", flush=True)

    try:
        local.serve_forever(on_ready=ready)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") \
            from None
    print("serve: stopped", flush=True)
    return 0
