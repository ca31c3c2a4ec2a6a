"""One process of tests/test_distributed_training.py's training cluster (TF_CONFIG set by the test).

Creates the strategy first (a multi-worker strategy must exist before TensorFlow runs
anything), then trains and exports with trainer.run.train_and_export, the Trainer's own
entry point, on the data prepared under --data, into --out (the model, the resume backups).
The model train_model hands back is saved to --weights, so the test can compare the
workers' weights.

    python tests/distributed_worker.py --data DIR --out DIR --weights OUT.npz [--set k=v ...]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from facealign.core import config
from trainer import distribution

REPO = pathlib.Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--weights", type=pathlib.Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cfg = config.load(REPO / "pipeline.yaml", args.overrides)
    distribution.strategy(cfg.trainer.distribution)

    from pipeline.prepare import prepared_data
    from trainer import run, training

    train_files, eval_files, frame = prepared_data(cfg, args.data)
    timing = {}

    def train_and_save_weights(*positional, **keywords):
        started = time.monotonic()
        result = training.train_model(*positional, **keywords)
        timing["seconds"], timing["steps"] = time.monotonic() - started, sum(result.steps)
        np.savez(args.weights, *result.model.get_weights())
        return result

    run.train_model = train_and_save_weights   # the real training; its weights saved on the way
    summary = run.train_and_export(cfg, train_files, eval_files, frame, str(args.out / "model"),
                                   backup_dir=str(args.out / "resume"), verbose=2)
    print("worker summary: " + json.dumps({
        "chief": distribution.is_chief(), "steps": timing["steps"],
        "training_seconds": round(timing["seconds"], 1),
        "validation_nme_inter_pupil_per_stage": summary["validation_nme_inter_pupil_per_stage"]}),
        flush=True)
    distribution.end_process(0)   # as `facealign train` does: TensorFlow can hang at exit
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
