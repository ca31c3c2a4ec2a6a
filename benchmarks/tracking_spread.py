"""How well stage_spread tells a tracked face from a lost one: calibrates `track --max-spread`.

`facealign track` re-detects when the last two DAN stages disagree by more
than --max-spread (the mean distance between their predictions over the
canonical mean shape's box diagonal). This script measures that spread on
held-out faces (the ExampleGen eval split of a pipeline run: photos,
detector boxes, ground truth) in three situations:
- "on_face": the detector box, what a good track looks like;
- "drift_25": the box moved by a quarter of its width (a track that lags);
- "lost": the box moved by a whole width to the side, off the face.
It prints one JSON object: spread percentiles per situation, the inter-ocular
NME of the on-face predictions and how often faces fail (NME > 0.08) above and
below each threshold, and for each candidate threshold the share of on-face
frames flagged (false alarms) and of lost frames caught.

  python benchmarks/tracking_spread.py --model pretrained/dan-300w/<version> \
      --examples '../runs/300w/LandmarkExampleGen/examples/*/Split-eval/*'
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import tensorflow as tf

from facealign.core import examples as names
from facealign.core import metrics, model_format

THRESHOLDS = (0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.15)
SHIFTS = {"on_face": 0.0, "drift_25": 0.25, "lost": 1.0}


def read_faces(pattern: str):
    """(serialized raw examples, boxes [F, 4], ground truth [F, N, 2]) of the eval split."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise SystemExit(f"no files match {pattern}")
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    boxes, truth = [], []
    for record in records:
        feature = tf.train.Example.FromString(record).features.feature
        boxes.append(np.array(feature[names.RAW_BOX].float_list.value, np.float32))
        truth.append(np.array(feature[names.RAW_LANDMARKS].float_list.value,
                              np.float32).reshape(-1, 2))
    return records, np.stack(boxes), np.stack(truth)


def with_box(record: bytes, box) -> bytes:
    example = tf.train.Example.FromString(record)
    example.features.feature[names.RAW_BOX].float_list.value[:] = [float(v) for v in box]
    return example.SerializeToString()


def run(model_dir: str, pattern: str, batch: int = 16) -> dict:
    signature = tf.saved_model.load(model_dir).signatures[model_format.TF_EXAMPLE]
    records, boxes, truth = read_faces(pattern)
    spreads, on_face_points = {}, None
    for name, shift in SHIFTS.items():
        moved = boxes.copy()
        moved[:, [0, 2]] += shift * (boxes[:, 2] - boxes[:, 0])[:, None]
        serialized = [with_box(r, b) for r, b in zip(records, moved)]
        values, points = [], []
        for start in range(0, len(serialized), batch):
            out = signature(examples=tf.constant(serialized[start:start + batch]))
            values.append(out["stage_spread"].numpy())
            points.append(out["landmarks"].numpy())
        spreads[name] = np.concatenate(values)
        if name == "on_face":
            on_face_points = np.concatenate(points)
    errors = metrics.face_errors(on_face_points, truth, "inter_ocular")
    result = {"model": model_dir, "faces": len(records),
              "nme_inter_ocular_on_face": round(float(100 * errors.mean()), 2),
              "spread": {name: {f"p{q}": round(float(np.percentile(v, q)), 4)
                                for q in (5, 25, 50, 75, 95)}
                         for name, v in spreads.items()},
              "thresholds": {}}
    for threshold in THRESHOLDS:
        flagged = spreads["on_face"] > threshold
        result["thresholds"][f"{threshold:g}"] = {
            "on_face_flagged": round(float(flagged.mean()), 3),
            "drift_25_flagged": round(float((spreads["drift_25"] > threshold).mean()), 3),
            "lost_caught": round(float((spreads["lost"] > threshold).mean()), 3),
            "failure_rate_of_flagged": (round(float((errors[flagged] > 0.08).mean()), 3)
                                        if flagged.any() else None),
            "failure_rate_of_kept": (round(float((errors[~flagged] > 0.08).mean()), 3)
                                     if (~flagged).any() else None)}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="SavedModel version folder")
    parser.add_argument("--examples", required=True,
                        help="glob of the raw eval-split TFRecords (ExampleGen output)")
    args = parser.parse_args()
    print(json.dumps(run(args.model, args.examples), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
