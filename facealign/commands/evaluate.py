"""`facealign evaluate`: score any exported model on any annotated folder.

The faces are encoded as the raw tf.Examples LandmarkExampleGen writes (photo
bytes + detector box) and scored by the Evaluator's own code
(components/landmark_evaluator/evaluation.py) through the model's
`serving_tf_example` signature, exactly as a TF Serving consumer would call
it, so the figures describe the deployed artefact and match what the
pipeline's Evaluator blesses on the same faces. A .tflite or .onnx export
is scored the same way through serving/canonical_model.py (the crop in
numpy, the file's network, the points mapped back).
"""
from __future__ import annotations

import json
import pathlib

from facealign.core.errors import UserError


def add_parser(sub) -> None:
    parser = sub.add_parser("evaluate", help="evaluate an exported model on a dataset folder")
    parser.add_argument("--model", required=True,
                        help="SavedModel folder, TF Serving base folder, or a .tflite / .onnx "
                             "export (with its .json sidecar)")
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


def run(args) -> int:
    from tqdm import tqdm

    from components.landmark_evaluator import evaluation
    from facealign.core import metrics
    from facealign.core.data import read_dataset
    from facealign.core.raw_example import record_to_example
    from serving.errors import ModelError
    from serving.model import scored_model

    records, report = read_dataset(args.data, format=args.format, boxes=args.boxes,
                                   annotations=args.annotations)
    for line in report.lines():
        print(f"evaluate: {line}")
    if not records:
        raise UserError(f"{args.data}: no usable face to evaluate")
    try:
        predictions = evaluation.predict(
            scored_model(args.model), (record_to_example(r) for r in records),
            progress=lambda batches: tqdm(batches, desc="evaluate", unit="batch",
                                          total=-(-len(records) // evaluation.BATCH_SIZE)))
    except (evaluation.EvaluationError, ModelError) as exc:
        raise UserError(str(exc)) from None
    result = evaluation.score(predictions, args.threshold)["all"]
    print(json.dumps(result, indent=2))
    if args.json_out:
        pathlib.Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        metrics.plot_ced({pathlib.Path(args.data).name: evaluation.headline_errors(predictions)},
                         args.plot, args.threshold)
    return 0
