"""How long `facealign report` takes to build its page for a pipeline root.

Times pipeline/run_report.build_report (ML Metadata read, artifacts read,
curves drawn, page rendered) on --config with --set overrides: the first
build (the imports of TensorFlow, TFX and matplotlib included, as the
command pays them) and the fastest of --repeats builds after it. cpu_share
(process CPU time / (wall time x cores), over the timed builds) says how much
of the machine the run got: take figures with nothing else running. Prints
one JSON object with the run count and the page's size.

  python benchmarks/report_speed.py --config pipeline.yaml --set pipeline.root=ROOT \
      --set serving.base_dir=SERVING
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "pipeline.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a value, e.g. pipeline.root=ROOT")
    parser.add_argument("--repeats", type=int, default=3, help="builds after the first")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from facealign.core import config
    from trainer.precision import cpu_model

    cfg = config.load(args.config, args.overrides)
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    from pipeline import run_report

    page = run_report.build_report(cfg)
    first = time.perf_counter() - wall_start
    repeats = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run_report.build_report(cfg)
        repeats.append(time.perf_counter() - start)
    wall = time.perf_counter() - wall_start
    result = {
        "root": str(cfg.resolve(cfg.pipeline.root)),
        "runs": page.count('<details class="run"'),
        "page_kb": round(len(page.encode()) / 1e3, 1),
        "first_build_seconds": round(first, 2),
        "build_seconds": round(min(repeats), 2) if repeats else None,
        "cpu": cpu_model(), "cpus": os.cpu_count(),
        "cpu_share": round((time.process_time() - cpu_start) / (wall * os.cpu_count()), 2)}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
