"""How `landmark_spread` relates to the actual error of each landmark, on held-out faces.

landmark_spread (the serving signatures' per-point confidence) is how far a
landmark moved between the DAN's last two stages, over the face size (S0's
box diagonal). This script scores it against the truth: for every landmark
of every held-out face, its spread and its actual error (distance to the
annotation over the inter-ocular distance). It runs the model's serving
signature on the pipeline's held-out raw faces (LandmarkExampleGen's eval
split: photos and detector boxes). A model exported before landmark_spread
existed is exported again by this checkout's exporter first (its weights
unchanged). Prints JSON (Spearman correlation, error per spread decile,
how well the spread finds the worst landmarks) and writes a PNG.

  python benchmarks/landmark_spread_vs_error.py --model pretrained/dan-300w \\
      --root runs/300w --png docs/landmark_spread.png
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np


def spreads_and_errors(model_dir: str, files: list[str]):
    """(landmark_spread [F, N], error [F, N] over the inter-ocular distance, face count)."""
    import tensorflow as tf

    from components.landmark_evaluator import evaluation
    from facealign.core import landmarks68, model_format
    from facealign.core.raw_example import parse_example

    model = tf.saved_model.load(model_dir)
    signature = model.signatures[model_format.TF_EXAMPLE]
    records = list(evaluation.read_examples(files))
    spread, error = [], []
    for start in range(0, len(records), 32):
        batch = records[start:start + 32]
        out = signature(examples=tf.constant(batch))
        truth = np.stack([parse_example(r)["landmarks"] for r in batch])
        distance = np.linalg.norm(out["landmarks"].numpy() - truth, axis=-1)
        error.append(distance / landmarks68.inter_ocular_distance(truth)[:, None])
        spread.append(out["landmark_spread"].numpy())
    return np.concatenate(spread), np.concatenate(error), len(records)


def with_landmark_spread(path: str, scratch: str) -> str:
    """The model's folder, or the model exported again by this exporter if it lacks the output."""
    import tensorflow as tf

    from facealign.core import model_format, model_paths
    from trainer import warm_start

    folder = model_paths.resolve_model_dir(path)
    if "landmark_spread" in tf.saved_model.load(folder).signatures[
            model_format.SERVING_DEFAULT].structured_outputs:
        return folder
    return warm_start.export_again(folder, os.path.join(scratch, "model"))

def rank(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a DAN SavedModel or base folder")
    parser.add_argument("--root", required=True, help="the pipeline root of its 300-W run")
    parser.add_argument("--png", default="landmark_spread.png")
    args = parser.parse_args(argv)
    splits = sorted(pathlib.Path(args.root).glob("LandmarkExampleGen/examples/*/Split-eval"),
                    key=lambda p: int(p.parent.name))
    if not splits:
        raise SystemExit(f"{args.root}: no LandmarkExampleGen eval split (run the pipeline)")
    files = sorted(str(p) for p in splits[-1].glob("*"))
    with tempfile.TemporaryDirectory() as scratch:
        spread, error, faces = spreads_and_errors(with_landmark_spread(args.model, scratch),
                                                  files)
    spread, error = spread.ravel(), error.ravel()
    spearman = float(np.corrcoef(rank(spread), rank(error))[0, 1])
    edges = np.quantile(spread, np.linspace(0, 1, 11))
    decile = np.clip(np.searchsorted(edges, spread, side="right") - 1, 0, 9)
    per_decile = [{"spread_from": round(float(edges[d]), 4),
                   "spread_to": round(float(edges[d + 1]), 4),
                   "mean_error": round(float(error[decile == d].mean()), 4),
                   "share_over_0.08": round(float((error[decile == d] > 0.08).mean()), 3)}
                  for d in range(10)]
    worst = error > np.quantile(error, 0.9)
    flagged = spread > np.quantile(spread, 0.9)
    result = {"model": args.model, "faces": faces, "landmarks": int(len(error)),
              "spearman": round(spearman, 3), "deciles": per_decile,
              "worst_tenth_found_by_top_tenth_spread": round(float((worst & flagged).sum()
                                                                   / worst.sum()), 3)}

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.scatter(100 * spread, 100 * error, s=2, alpha=0.25)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("landmark_spread (% of S0's box diagonal)")
    left.set_ylabel("actual error (% of the inter-ocular distance)")
    left.set_title(f"{len(error):,} landmarks of {faces} held-out faces; Spearman {spearman:.2f}")
    centres = [100 * (row["spread_from"] + row["spread_to"]) / 2 for row in per_decile]
    right.plot(range(1, 11), [100 * row["mean_error"] for row in per_decile], "o-",
               label="mean actual error")
    right.plot(range(1, 11), [100 * row["share_over_0.08"] for row in per_decile], "s--",
               label="% of landmarks with error > 8%")
    right.set_xticks(range(1, 11), [f"{c:.2f}" for c in centres], rotation=45)
    right.set_xlabel("landmark_spread decile (its centre, %)")
    right.set_ylabel("%")
    right.set_title("error by landmark_spread decile")
    right.legend()
    fig.tight_layout()
    pathlib.Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=90)
    plt.close(fig)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
