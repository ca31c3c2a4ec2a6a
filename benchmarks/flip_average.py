"""Test-time flip averaging (model.flip_average, trainer/flip_average.py): NME with and without.

Each model is exported again twice with this checkout's exporter, plain and flip-averaged
(trainer.warm_start.export_again), and both are scored as the Evaluator scores (the serving
signature, inter-ocular NME, AUC@0.08, failure rate) on the held-out faces of a pipeline run
of --config (LandmarkExampleGen's eval split: run the pipeline first). Prints a table and
JSON with the CPU model and cpu_share (process CPU time / (wall x cores)); the seconds are
the 100-face scoring, decoding and cropping included.

  python benchmarks/flip_average.py --config configs/300w-aan.yaml \\
      --model pretrained/aan-300w --model pretrained/dan-300w
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facealign.core import config as config_lib  # noqa: E402
from pipeline.publish import held_out_examples, measure  # noqa: E402
from trainer import precision as precision_choice  # noqa: E402
from trainer import warm_start  # noqa: E402

HEADLINE = ("nme_inter_ocular", "auc_0.08", "failure_rate_0.08")


def score(model: str, files: list[str], threshold: float, flip: bool, scratch: str) -> dict:
    """The model exported again with or without flip averaging, scored on the faces."""
    out = warm_start.export_again(model, os.path.join(scratch, "flip" if flip else "plain"),
                                  flip_average=flip)
    started = time.perf_counter()
    found = measure(pathlib.Path(out), files, threshold)["all"]
    return {**{key: round(float(found[key]), 4) for key in HEADLINE},
            "faces": int(found["count"]), "seconds": round(time.perf_counter() - started, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the pipeline whose held-out faces score")
    parser.add_argument("--model", action="append", required=True,
                        help="SavedModel or TF Serving base folder (repeatable)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    try:
        cfg = config_lib.load(args.config)
    except config_lib.ConfigError as exc:
        parser.error(str(exc))
    files = held_out_examples(pathlib.Path(cfg.resolve(cfg.pipeline.root)))
    threshold = cfg.evaluator.failure_threshold
    wall, cpu = time.perf_counter(), time.process_time()
    rows = {}
    for model in args.model:
        with tempfile.TemporaryDirectory() as scratch:
            try:
                rows[model] = {"plain": score(model, files, threshold, False, scratch),
                               "flip_averaged": score(model, files, threshold, True, scratch)}
            except (FileNotFoundError, warm_start.WarmStartError) as exc:
                parser.error(f"--model {model}: {exc}")
    wall = time.perf_counter() - wall
    result = {"machine": {"cpu": precision_choice.cpu_model(), "cores": os.cpu_count()},
              "faces": len(files), "models": rows,
              "cpu_share": round((time.process_time() - cpu) / (wall * os.cpu_count()), 2)}
    print(f"{'model':<28} {'variant':<14} {'NME IO %':>9} {'AUC@0.08':>9} {'fail %':>7} "
          f"{'s/100 faces':>11}")
    for model, variants in rows.items():
        for variant, row in variants.items():
            print(f"{model:<28} {variant:<14} {row['nme_inter_ocular']:>9.2f} "
                  f"{row['auc_0.08']:>9.3f} {row['failure_rate_0.08']:>7.1f} "
                  f"{row['seconds']:>11.1f}")
    print(f"machine: {result['machine']['cpu']}, cpu_share {result['cpu_share']}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
