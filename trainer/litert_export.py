"""LiteRT (TFLite) export of an exported facealign model, with builtin ops only.

The .tflite model is the SavedModel's ``predict_canonical``: ``image`` uint8
[B, S, S, 1] canonical crops in; ``landmarks`` float32 [B, N, 2] in
canonical pixels, ``stage_spread`` [B] and ``landmark_spread`` [B, N] out
(signature ``serving_default``). Decoding a JPEG is no TFLite op and an app
has its own camera frames, so the app crops by facealign/core/crop.py's
definition (grey BT.601, S0 fitted to the face box as crop.BoxFit,
bilinear, black outside, rounded to uint8) and maps the points back with
the same affine; S0 is in the JSON written beside the model.

The SavedModel cannot be converted as it is: the DAN's stage 2 warps with
ImageProjectiveTransformV3, which is no TFLite builtin (only the Flex
delegate, SELECT_TF_OPS, runs it, and LiteRT apps rarely ship that). So
the Keras model is built again from the SavedModel's metadata (model
configuration, S0), its weights copied in by trainer.warm_start.load_weights
(which checks each weight's name and shape), the DAN's ImageTransform
layers switched to crop.sample_bilinear_builtin (the same pixels from
GATHERs and arithmetic), and trainer/export.py's predict_canonical graph
traced on it and converted with builtin ops only. The rebuilt model
computes in float32 where the SavedModel may compute in mixed_bfloat16
(TFLite has no bfloat16 kernels); the weights are the same float32 values.

Quantisation (QUANTIZATIONS):
- "float32": as is.
- "float16": weights stored as float16 (half the file), dequantised at load.
- "int8": int8 weights and activations for the convolutions, dense layers
  and pooling (nearly all the arithmetic), calibrated on real canonical
  crops; everything else (standardisation, transform estimation, warp,
  heatmap, shape updates) stays float32, as it stays float32 under
  mixed_bfloat16 training. Quantising those too (plain full-integer
  quantisation) puts landmark coordinates on a 256-level grid and the
  model falls apart: 74% NME instead of 5.4% on held-out 300-W faces.
- "dynamic": dynamic-range quantisation: int8 weights, float activations,
  no calibration; a quarter of the file.

The same rebuilt model also goes to ONNX (trainer/onnx_export.py, float32).
"""
from __future__ import annotations

import collections
import json
import os
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from facealign.core import canonical, model_format, model_paths
from trainer import export, warm_start
from trainer.dan_layers import ImageTransform

FORMATS = ("tflite", "onnx")        # onnx: trainer/onnx_export.py, float32 only
QUANTIZATIONS = ("float32", "float16", "int8", "dynamic")
DEFAULT_CALIBRATION_FACES = 100
# Quantised to int8 under "int8": the weighted layers and pooling of the conv/dense stacks.
INT8_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D",
                      "AVERAGE_POOL_2D"})


class ExportError(ValueError):
    """A model or request the export cannot handle; the message names it."""


def check_request(format: str, quantize: str) -> None:
    """Raises ExportError for an unknown format or quantisation, before anything is loaded."""
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantisation {quantize!r}; choose from "
                          f"{', '.join(QUANTIZATIONS)}")
    if format == "onnx" and quantize != "float32":
        raise ExportError(f"format onnx is float32 only (got quantisation {quantize!r})")


def read_model(path) -> tuple[str, dict]:
    """(SavedModel folder, its facealign metadata) of a SavedModel or TF Serving base folder."""
    try:
        folder = model_paths.resolve_model_dir(path)
    except FileNotFoundError as exc:
        raise ExportError(str(exc)) from None
    if not model_format.has_metadata(folder):
        raise ExportError(f"{folder}: not a facealign model (no {model_format.EXTRA_DIR}/"
                          f"{model_format.METADATA_FILE})")
    try:
        metadata = model_format.ModelMetadata.read(folder)
    except model_format.ModelFormatError as exc:
        raise ExportError(str(exc)) from None
    if metadata.config is None:
        raise ExportError(f"{folder}: its {model_format.METADATA_FILE} lacks config")
    return folder, metadata.to_dict()


def rebuild_model(path):
    """(Keras inference model with the builtin-op warp, SavedModel folder, metadata)."""
    read_model(path)                          # the clear errors for what is no facealign model
    try:
        _, inference, folder, metadata = warm_start.rebuild(path)
    except warm_start.WarmStartError as exc:
        raise ExportError(str(exc)) from None
    use_builtin_warp(inference)
    return inference, folder, metadata


def use_builtin_warp(model) -> int:
    """Switches every ImageTransform in `model` and its sub-models to builtin ops; how many."""
    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, ImageTransform):
            layer.builtin_ops = True
            count += 1
    return count


def calibration_crops(records, mean_shape, image_size: int,
                      count: int = DEFAULT_CALIBRATION_FACES, seed: int = 0) -> np.ndarray:
    """uint8 [K, S, S, 1]: canonical crops of up to `count` faces (a seeded pick) for calibration.

    records: facealign.core.data FaceRecords (photo, landmarks, detector box); the
    crop is canonical.eval_sample's, the one a deployed model sees.
    """
    records = list(records)
    if not records:
        raise ExportError("int8 calibration needs real faces; none were given")
    frame = canonical.CanonicalFrame(np.asarray(mean_shape, np.float32).reshape(-1, 2),
                                     int(image_size))
    picked = sorted(np.random.default_rng(seed).permutation(len(records))[:count])
    crops = [canonical.eval_sample(records[i].image_path.read_bytes(), records[i].landmarks,
                                   records[i].box, frame).image for i in picked]
    return np.stack(crops)[..., None]


def _builtin_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {value: name for name, value in vars(schema.BuiltinOperator).items()
            if not name.startswith("_")}


def operators(flatbuffer: bytes) -> dict[str, int]:
    """{operator name: count} of a .tflite model; custom (and Flex) ops as "CUSTOM:<name>"."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = _builtin_names()
    kinds = []
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        kinds.append(f"CUSTOM:{code.CustomCode().decode()}"
                     if builtin == schema.BuiltinOperator.CUSTOM else names[builtin])
    counts = collections.Counter()
    for graph_index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(graph_index)
        for op_index in range(graph.OperatorsLength()):
            counts[kinds[graph.Operators(op_index).OpcodeIndex()]] += 1
    return dict(sorted(counts.items()))


def convert(model, mean_shape, image_size: int, quantize: str = "float32",
            calibration: np.ndarray | None = None) -> bytes:
    """The .tflite flatbuffer of `model`'s predict_canonical graph, builtin ops only.

    calibration: uint8 [K, S, S, 1] real canonical crops, needed for "int8".
    """
    check_request("tflite", quantize)
    if quantize == "int8" and (calibration is None or len(calibration) == 0):
        raise ExportError("int8 quantisation needs calibration crops of real faces")
    graph = export.serving_graph(model, mean_shape, image_size)
    function = tf.function(graph.canonical).get_concrete_function(
        tf.TensorSpec([None, image_size, image_size, 1], tf.uint8, name="image"))
    # The tf.Variables the graph reads, in a plain module (as export._ServingModule keeps
    # them): given the Keras model instead, the converter writes variable handles and no
    # weights (a 0.2 MB file); given nothing, it writes no signature.
    weights = tf.Module()
    weights.store = [variable.value for variable in model.variables]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], weights)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]   # no Flex
    if quantize == "float32":
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize != "int8":
        return converter.convert()
    crops = np.asarray(calibration, np.uint8)
    converter.representative_dataset = lambda: ([crop[None]] for crop in crops)
    # Selective quantisation: every op type but INT8_OPS stays float (the public way to
    # deny ops quantisation is the quantisation debugger's options).
    keep_float = sorted(set(_builtin_names().values()) - INT8_OPS)
    with warnings.catch_warnings():   # the debugger's own use of tf.lite.Interpreter
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                denylisted_ops=keep_float))
    return debugger.get_nondebug_quantized_model()


def sidecar(folder: str, metadata: dict, format: str, quantize: str, ops: dict,
            calibration_faces: int = 0) -> dict:
    """What an app needs beside the model file: the interface, S0 for the crop, the provenance."""
    size = int(metadata["image_size"])
    count = int(metadata.get("num_landmarks") or len(metadata["mean_shape"]))
    return {
        "format": format, "quantize": quantize, "source_model": folder,
        "model": metadata.get("model"), "stages": metadata.get("stages"),
        "image_size": size, "num_landmarks": count,
        "inputs": {"image": {"dtype": "uint8", "shape": [-1, size, size, 1]}},
        "outputs": {"landmarks": {"dtype": "float32", "shape": [-1, count, 2]},
                    "stage_spread": {"dtype": "float32", "shape": [-1]},
                    "landmark_spread": {"dtype": "float32", "shape": [-1, count]}},
        "crop": ("facealign/core/crop.py: grey = BT.601 of RGB (unrounded); S0 fitted to the box "
                 "(scale = mean of box width / S0 width and box height / S0 height, box "
                 "centre onto S0's box centre); bilinear, 0 outside, rounded to uint8; "
                 "landmarks map back by the same scale and centres"),
        "mean_shape": metadata["mean_shape"],
        "calibration_faces": calibration_faces,
        "operators": ops,
    }


def write_model_files(out, content: bytes, info: dict) -> dict:
    """Writes the model file `out` and `out`.json (info); returns info plus "out" and "bytes"."""
    out = os.fspath(out)
    _write_atomically(out, content)
    sidecar_text = json.dumps(info, indent=1) + "\n"
    _write_atomically(out + model_paths.SIDECAR_SUFFIX, sidecar_text.encode())
    return {"out": out, "bytes": len(content), **info}


def export_tflite(model_path, out, quantize: str = "float32", calibration_records=None,
                  calibration_faces: int = DEFAULT_CALIBRATION_FACES) -> dict:
    """Writes `out` (.tflite) and `out`.json from the SavedModel at `model_path`.

    calibration_records: facealign.core.data FaceRecords of real training faces,
    needed for "int8" (a seeded pick of calibration_faces of them is used).
    Returns the sidecar's contents plus "out" and "bytes".
    """
    check_request("tflite", quantize)
    if quantize == "int8" and not calibration_records:
        raise ExportError("int8 quantisation needs real faces to calibrate on "
                          "(--calibration-data)")
    model, folder, metadata = rebuild_model(model_path)
    mean_shape = np.asarray(metadata["mean_shape"], np.float32).reshape(-1, 2)
    size = int(metadata["image_size"])
    calibration = None
    if quantize == "int8":
        calibration = calibration_crops(calibration_records, mean_shape, size,
                                        calibration_faces)
    flatbuffer = convert(model, mean_shape, size, quantize, calibration)
    info = sidecar(folder, metadata, "tflite", quantize, operators(flatbuffer),
                   0 if calibration is None else len(calibration))
    info["signature"] = model_format.SERVING_DEFAULT
    return write_model_files(out, flatbuffer, info)


def _write_atomically(path: str, content: bytes) -> None:
    """No half-written file under the final name."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=folder, prefix=".export-")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
