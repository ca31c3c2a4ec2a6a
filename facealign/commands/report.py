"""`facealign report`: one self-contained HTML page of what the pipeline did.

Every run with its executions (ran, cached, failed) and their times, the data
accepted and rejected, the models with their lineage and validation curve,
the Evaluator's figures and blessings, the pushed versions and the one being
served, and the sweeps, read from ML Metadata and the artifacts
(pipeline/run_history.py) and rendered by pipeline/run_report.py.
"""
from __future__ import annotations

import time

from facealign.commands.config import add_config_arguments
from facealign.core import config
from facealign.core.errors import UserError


def add_parser(sub) -> None:
    parser = sub.add_parser("report", help="an HTML report of the pipeline's runs, data, "
                                           "models, evaluations and pushed versions")
    add_config_arguments(parser)
    parser.add_argument("--out", default="report.html", help="the HTML file to write")
    parser.set_defaults(handler=run)


def run(args) -> int:
    started = time.monotonic()          # the imports of TensorFlow and TFX included
    cfg = config.load(args.config, args.overrides)
    from pipeline import run_report, runners

    try:
        path = run_report.write_report(cfg, args.out)
    except runners.MetadataStoreError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:              # --out not writable
        raise UserError(str(exc)) from None
    print(f"facealign report: wrote {path} in {time.monotonic() - started:.1f} s")
    return 0
