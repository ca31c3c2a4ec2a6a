"""`facealign serve`: a local model server speaking TF Serving's REST API.

Serves the newest numeric version under --model-base-path (the Pusher's
push destination) at http://HOST:PORT/v1/models/NAME and switches to newer
versions as they appear, without a restart. See serving/server.py for the
API and its limits (serving/versions.py for versions, serving/rest.py for the
JSON); production uses TF Serving itself (same URLs and JSON).
--enable_batching and --batching_parameters_file are TF Serving's flags, with its
file format and defaults (serving/batching.py).
"""
from __future__ import annotations

import argparse
import logging
import pathlib

from facealign.core import model_format
from facealign.core.errors import UserError

_TRUE, _FALSE = ("true", "1", "yes", "t"), ("false", "0", "no", "f")


def _flag(text: str) -> bool:
    """TF Serving's boolean flag values: --enable_batching, --enable_batching=true|false."""
    if text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


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
    parser.add_argument("--enable_batching", nargs="?", const=True, default=False, type=_flag,
                        metavar="true|false",
                        help="batch concurrent predict requests as TF Serving does (its flag; "
                             "parameters from --batching_parameters_file, else TF Serving's "
                             "defaults)")
    parser.add_argument("--batching_parameters_file", metavar="FILE",
                        help="TF Serving's batching parameters text file "
                             "(max_batch_size { value: 32 } ...); the Pusher writes one to "
                             f"VERSION/{model_format.EXTRA_DIR}/{model_format.BATCHING_FILE}")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from facealign.core import model_paths
    from serving import server

    base = pathlib.Path(args.model_base_path)
    if not base.is_dir():
        raise UserError(f"--model-base-path {base}: no such folder")
    if model_paths.is_saved_model(base):
        raise UserError(f"--model-base-path {base} is a SavedModel itself; pass the folder "
                        f"that holds its numeric version folders (e.g. {base.parent}, with "
                        f"{base} named by a version number)")
    for name, value in (("--port", args.port), ("--max-concurrency", args.max_concurrency)):
        if value < (0 if name == "--port" else 1) or (name == "--port" and value > 65535):
            raise UserError(f"{name} {value}: out of range")
    if args.poll_seconds <= 0 or args.queue_timeout <= 0 or args.max_body_mb <= 0:
        raise UserError("--poll-seconds, --queue-timeout and --max-body-mb must be positive")
    batching = _batching(args)
    name = args.model_name or base.resolve().name
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not model_paths.numeric_versions(base):
        print(f"serve: no version folder (a number holding saved_model.pb) in {base} yet; "
              f"waiting for one", flush=True)
    local = server.LocalServer(base, name, args.host, args.port, args.poll_seconds,
                               int(args.max_body_mb * 2**20), args.max_concurrency,
                               args.queue_timeout, access_log=True, batching=batching)

    def ready(srv):
        current = srv.repository.current
        print(f"serve: model {name!r} version {current.version if current else '(none yet)'} "
              f"at {srv.model_url} (Ctrl-C stops)", flush=True)
        if batching is not None:
            print(f"serve: batching {batching}", flush=True)

    try:
        local.serve_forever(on_ready=ready)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") \
            from None
    print("serve: stopped", flush=True)
    return 0


def _batching(args):
    """The BatchingParameters of --enable_batching (None without it)."""
    file = args.batching_parameters_file
    if not args.enable_batching:
        if file:
            raise UserError("--batching_parameters_file needs --enable_batching")
        return None
    if not file:
        return model_format.BatchingParameters()
    try:
        return model_format.read_batching_parameters(file)
    except model_format.BatchingParametersError as exc:
        raise UserError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--batching_parameters_file {file}: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
