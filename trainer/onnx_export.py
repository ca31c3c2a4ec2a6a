"""ONNX export of an exported facealign model: the LiteRT export's model, through tf2onnx.

The same rebuilt model as trainer/litert_export.py (weights from the
SavedModel, the DAN's warp by crop.sample_bilinear_builtin) and the same
interface: ``image`` uint8 [B, S, S, 1] canonical crops in; ``landmarks``
[B, N, 2], ``stage_spread`` [B], ``landmark_spread`` [B, N] out. The warp
matters here too: tf2onnx has no ImageProjectiveTransformV3 (the SavedModel
graph converts with that node left in, and onnxruntime refuses to load it),
while the builtin warp becomes Floor, Gather and arithmetic. float32 only;
ONNX Runtime's own quantisation tools apply to the file as to any model.
"""
from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf

from trainer import export
from trainer.litert_export import (
    ExportError,
    check_request,
    rebuild_model,
    sidecar,
    write_model_files,
)

OPSET = 17


def convert(model, mean_shape, image_size: int) -> bytes:
    """The serialized ONNX model of `model`'s predict_canonical graph."""
    import tf2onnx

    graph = export.serving_graph(model, mean_shape, image_size)
    proto, _ = tf2onnx.convert.from_function(
        tf.function(graph.canonical), opset=OPSET, input_signature=[
            tf.TensorSpec([None, image_size, image_size, 1], tf.uint8, name="image")])
    return proto.SerializeToString()


def operators(content: bytes) -> dict[str, int]:
    """{ONNX op type: count} of a serialized model's graph."""
    import onnx

    counts = collections.Counter(node.op_type for node in onnx.load_from_string(content).graph.node)
    return dict(sorted(counts.items()))


def check(content: bytes, name: str) -> None:
    """ExportError unless every node is a standard ONNX op (tf2onnx leaves the TF ops it cannot
    convert in the graph, under their TF names, and only warns)."""
    import onnx

    try:
        onnx.checker.check_model(onnx.load_from_string(content))
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{name}: the ONNX graph is not valid: "
                          f"{str(exc).splitlines()[0]}") from None


def export_onnx(model_path, out) -> dict:
    """Writes `out` (.onnx) and `out`.json from the SavedModel at `model_path`; a summary."""
    check_request("onnx", "float32")
    model, folder, metadata = rebuild_model(model_path)
    mean_shape = np.asarray(metadata["mean_shape"], np.float32).reshape(-1, 2)
    content = convert(model, mean_shape, int(metadata["image_size"]))
    check(content, folder)
    info = sidecar(folder, metadata, "onnx", "float32", operators(content))
    info["opset"] = OPSET
    return write_model_files(out, content, info)
