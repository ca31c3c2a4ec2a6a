"""`facealign evaluate`: score any exported model on any annotated folder.

The model is called through its `serving_default` signature exactly as a TF
Serving consumer would (encoded image + detector box in, image pixels out),
so the figures describe the deployed artefact, not a training-time shortcut.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np

from facealign import metrics
from facealign.errors import UserError

BATCH = 32


def add_parser(sub) -> None:
    parser = sub.add_parser("evaluate", help="evaluate an exported model on a dataset folder")
    parser.add_argument("--model", required=True, help="SavedModel folder")
    parser.add_argument("--data", required=True, help="dataset root (300-W layout)")
    parser.add_argument("--boxes", action="append", default=[],
                        help="face-detector box CSV (repeatable); faces without one use "
                             "their landmarks' bounding box, reported as such")
    parser.add_argument("--format", default="300w", choices=["300w", "ljson", "coco"])
    parser.add_argument("--annotations", help="annotation JSON for --format coco")
    parser.add_argument("--json", dest="json_out", help="write the figures here")
    parser.add_argument("--plot", help="write the CED curve here (PNG)")
    parser.add_argument("--threshold", type=float, default=0.08)
    parser.set_defaults(handler=run)


def predict_faces(model_dir: str, records) -> np.ndarray:
    import tensorflow as tf

    try:
        model = tf.saved_model.load(model_dir)
        serve = model.signatures["serving_default"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{model_dir}: not a facealign SavedModel ({exc})") from None
    from tqdm import tqdm

    predictions = []
    for start in tqdm(range(0, len(records), BATCH), desc="evaluate", unit="batch"):
        batch = records[start:start + BATCH]
        images = tf.constant([pathlib.Path(r.image_path).read_bytes() for r in batch])
        boxes = tf.constant([list(r.box) for r in batch], tf.float32)
        predictions.append(serve(image_bytes=images, box=boxes)["landmarks"].numpy())
    return np.concatenate(predictions)


def run(args) -> int:
    from facealign.data import read_dataset

    records, report = read_dataset(args.data, format=args.format, boxes=args.boxes,
                                   annotations=args.annotations)
    for line in report.lines():
        print(f"evaluate: {line}")
    if not records:
        raise UserError(f"{args.data}: no usable face to evaluate")
    predicted = predict_faces(args.model, records)
    truth = np.stack([r.landmarks for r in records])
    if predicted.shape != truth.shape:
        raise UserError(f"model predicts {predicted.shape[1]} landmarks, the data has "
                        f"{truth.shape[1]}")
    result = metrics.summary(predicted, truth, args.threshold)
    print(json.dumps(result, indent=2))
    if args.json_out:
        pathlib.Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        normalisation = "inter_ocular" if truth.shape[1] == 68 else "box_diagonal"
        metrics.plot_ced({pathlib.Path(args.data).name: metrics.face_errors(
            predicted, truth, normalisation)}, args.plot, args.threshold)
    return 0
