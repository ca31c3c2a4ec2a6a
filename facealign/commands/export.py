"""`facealign export`: an exported model for another runtime: LiteRT (TFLite) or ONNX.

--model is a SavedModel folder or a TF Serving base folder (its newest
version). The model written takes canonical crops (uint8 [B, S, S, 1]) and
returns canonical landmarks (TFLite: builtin ops only); OUT.json beside it
holds S0 and the interface. The work is trainer/litert_export.py's and
trainer/onnx_export.py's.
"""
from __future__ import annotations

from facealign.core.errors import UserError


def add_parser(sub) -> None:
    parser = sub.add_parser("export", help="convert an exported model to LiteRT (TFLite) or ONNX")
    parser.add_argument("--model", required=True,
                        help="SavedModel folder or TF Serving base folder (newest version)")
    parser.add_argument("--format", required=True, help="tflite (LiteRT) or onnx")
    parser.add_argument("--out", required=True, help="the .tflite or .onnx file to write "
                                                     "(and OUT.json beside it)")
    parser.add_argument("--quantize", default="float32",
                        help="float32 (default), float16 (float16 weights), int8 (int8 "
                             "convolutions and dense layers, calibrated on "
                             "--calibration-data) or dynamic (int8 weights, float activations); "
                             "onnx: float32 only")
    parser.add_argument("--calibration-data", metavar="ROOT",
                        help="real annotated faces to calibrate int8 on (training faces)")
    parser.add_argument("--calibration-format", default="300w", help="300w, ljson or coco")
    parser.add_argument("--annotations", metavar="JSON", help="the COCO keypoint JSON "
                                                              "(--calibration-format coco)")
    parser.add_argument("--boxes", action="append", default=[], metavar="CSV",
                        help="face-box CSV for --calibration-data (repeatable)")
    parser.add_argument("--calibration-faces", type=int, default=None, metavar="N",
                        help="how many of those faces to calibrate on (default 100)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from facealign.core import model_paths
    from facealign.core.data import read_dataset
    from trainer import litert_export

    try:
        litert_export.check_request(args.format, args.quantize)
    except litert_export.ExportError as exc:
        raise UserError(str(exc)) from None
    if args.calibration_data and args.quantize != "int8":
        raise UserError(f"--calibration-data is only for --quantize int8 "
                        f"(got --quantize {args.quantize})")
    faces = (litert_export.DEFAULT_CALIBRATION_FACES if args.calibration_faces is None
             else args.calibration_faces)
    if faces < 1:
        raise UserError(f"--calibration-faces {faces}: must be at least 1")
    records = None
    if args.quantize == "int8":
        if not args.calibration_data:
            raise UserError("--quantize int8 needs --calibration-data ROOT (real training "
                            "faces to calibrate on)")
        records, _ = read_dataset(args.calibration_data, format=args.calibration_format,
                                  boxes=args.boxes, annotations=args.annotations)
        print(f"export: calibration faces from {args.calibration_data}: "
              f"{len(records)} read, {min(faces, len(records))} used")
    try:
        if args.format == "onnx":
            from trainer import onnx_export

            result = onnx_export.export_onnx(args.model, args.out)
        else:
            result = litert_export.export_tflite(args.model, args.out, args.quantize, records,
                                                 faces)
    except litert_export.ExportError as exc:
        raise UserError(str(exc)) from None
    ops = result["operators"]
    print(f"export: wrote {result['out']} ({result['bytes'] / 1e6:.1f} MB, {args.quantize}; "
          f"{sum(ops.values())} ops of {len(ops)} kinds: {', '.join(ops)}) and "
          f"{result['out']}{model_paths.SIDECAR_SUFFIX}")
    return 0
