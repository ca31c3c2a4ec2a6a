"""Exports a trained landmark model as a TF Serving SavedModel.

The crop to the canonical frame, the normalisation (inside the Keras model)
and the mapping back to image pixels all happen in the graph, so a consumer
sends a photo and a face box and gets points on that photo. Signatures:

- ``serving_default``: ``image_bytes`` string [B] (JPEG/PNG/BMP/GIF, any
  size, gray or colour) and ``box`` float32 [B, 4] (x0, y0, x1, y1 pixels) ->
  ``landmarks`` float32 [B, N, 2] (0-based pixels of that image) and
  ``stage_spread`` float32 [B]: the mean distance between the last two
  stages' predictions over the canonical mean shape's box diagonal; a large
  spread means the cascade has not settled (an unreliable result).
- ``serving_tf_example``: serialized raw-face tf.Examples (ExampleGen's
  feature names), same outputs; for InfraValidator and batch inference.
- ``predict_canonical``: canonical uint8 crops [B, S, S, 1] -> canonical
  landmarks; what the Evaluator scores.

Beside the graph, ``assets.extra/`` holds ``facealign_metadata.json`` (the
mean shape, the signatures' interface, versions, whatever the trainer adds)
and ``tf_serving_warmup_requests``: a TFRecord of PredictionLogs with a few
``serving_default`` PredictRequests (real faces when the exporter is given
some, else a synthetic gray image) that TF Serving replays on every load so
the first client request does not pay for the graph's first run.
"""
from __future__ import annotations

import datetime
import json
import os
from typing import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from facealign import examples as names

METADATA_FILE = "facealign_metadata.json"
WARMUP_FILE = "tf_serving_warmup_requests"  # the name TF Serving looks for in assets.extra
MAX_WARMUP_FACES = 8
METADATA_FORMAT = 2  # 2: adds the signatures, versions and warmup count


def _box_fit(mean_shape: np.ndarray):
    """Constants of DAN's bestFitRect of S0 to a box (scale and translation)."""
    low, high = mean_shape.min(axis=0), mean_shape.max(axis=0)
    return (tf.constant(high - low, tf.float32), tf.constant((low + high) / 2, tf.float32))


class _Graph:
    """The tf.functions behind the signatures, closed over one model."""

    def __init__(self, model: keras.Model, mean_shape: np.ndarray, image_size: int):
        self.model = model
        self.size = int(image_size)
        self.num_landmarks = int(len(mean_shape))
        self.s0_extent, self.s0_centre = _box_fit(mean_shape)
        self.spread_scale = float(np.linalg.norm(mean_shape.max(0) - mean_shape.min(0)))

    def fit(self, box):
        """(scale [B], box centre [B, 2]) placing S0 in each box."""
        box = tf.cast(box, tf.float32)
        extent = box[:, 2:] - box[:, :2]
        scale = tf.reduce_mean(extent / self.s0_extent, axis=-1)
        return scale, (box[:, :2] + box[:, 2:]) / 2

    def crop_one(self, args):
        encoded, scale, centre = args
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        gray = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))
        offset = centre - scale * self.s0_centre
        transform = tf.stack([scale, 0.0, offset[0], 0.0, scale, offset[1], 0.0, 0.0])
        crop = tf.raw_ops.ImageProjectiveTransformV3(
            images=gray[None], transforms=transform[None],
            output_shape=tf.constant([self.size, self.size]), fill_value=0.0,
            interpolation="BILINEAR", fill_mode="CONSTANT")[0]
        return tf.cast(tf.clip_by_value(tf.round(crop), 0, 255), tf.uint8)

    def stages(self, images):
        """Each stage's canonical landmarks, first to last."""
        outputs = self.model(images, training=False)
        keys = sorted((k for k in outputs if k.startswith("stage_")), key=lambda k: int(k[6:]))
        return [tf.cast(outputs[k], tf.float32) for k in keys]

    def canonical(self, image):
        stages = self.stages(image)
        return {"landmarks": stages[-1], **self._spread(stages)}

    def _spread(self, stages):
        if len(stages) < 2:
            return {"stage_spread": tf.zeros(tf.shape(stages[-1])[:1])}
        distance = tf.norm(stages[-1] - stages[-2], axis=-1)
        return {"stage_spread": tf.reduce_mean(distance, axis=-1) / self.spread_scale}

    def from_photos(self, image_bytes, box):
        scale, centre = self.fit(box)
        crops = tf.map_fn(self.crop_one, (image_bytes, scale, centre),
                          fn_output_signature=tf.TensorSpec([self.size, self.size, 1], tf.uint8))
        result = self.canonical(crops)
        s0_centre = self.s0_centre
        result["landmarks"] = (scale[:, None, None] * (result["landmarks"] - s0_centre)
                               + centre[:, None, :])
        return result

    def from_examples(self, examples):
        parsed = tf.io.parse_example(examples, {
            names.RAW_IMAGE: tf.io.FixedLenFeature([], tf.string),
            names.RAW_BOX: tf.io.FixedLenFeature([4], tf.float32)})
        return self.from_photos(parsed[names.RAW_IMAGE], parsed[names.RAW_BOX])


class _ServingModule(tf.Module):
    """What tf.saved_model.save writes: the signatures and each weight once.

    Keras' ExportArchive checkpoints every weight twice (as the Keras variable
    and as the tf.Variable inside it), doubling the SavedModel's size; this
    module tracks only the tf.Variables the graph reads.
    """

    def __init__(self, model: keras.Model, graph: "_Graph"):
        super().__init__(name="facealign_serving")
        self.weights_store = [variable.value for variable in model.variables]
        self.serving_default = tf.function(graph.from_photos, input_signature=[
            tf.TensorSpec([None], tf.string, name="image_bytes"),
            tf.TensorSpec([None, 4], tf.float32, name="box")])
        self.serving_tf_example = tf.function(graph.from_examples, input_signature=[
            tf.TensorSpec([None], tf.string, name="examples")])
        self.predict_canonical = tf.function(graph.canonical, input_signature=[
            tf.TensorSpec([None, graph.size, graph.size, 1], tf.uint8, name="image")])


def export_saved_model(model: keras.Model, mean_shape, path: str, metadata: dict | None = None,
                       image_size: int | None = None,
                       warmup_faces: Iterable[tuple[bytes, Sequence[float]]] | None = None) -> str:
    """Writes the SavedModel (with the three signatures), its metadata and warmup files.

    warmup_faces: (encoded image bytes, box x0, y0, x1, y1) of a few real faces
    for the warmup requests (the first MAX_WARMUP_FACES are used); without
    them a synthetic gray image stands in.
    """
    mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)
    size = int(image_size or model.inputs[0].shape[1])
    graph = _Graph(model, mean_shape, size)
    module = _ServingModule(model, graph)
    tf.saved_model.save(module, path, signatures={
        "serving_default": module.serving_default,
        "serving_tf_example": module.serving_tf_example,
        "predict_canonical": module.predict_canonical})
    extra = os.path.join(path, "assets.extra")
    tf.io.gfile.makedirs(extra)
    warmup_count = write_warmup_requests(path, warmup_faces)
    stages = sum(1 for key in model.output if key.startswith("stage_")) \
        if isinstance(model.output, dict) else None
    info = {"num_landmarks": int(len(mean_shape)), "image_size": size,
            "metadata_format": METADATA_FORMAT, "stages": stages,
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "tensorflow_version": tf.__version__, "keras_version": keras.__version__,
            "signatures": _signature_summary(size, len(mean_shape)),
            "box_format": "x0, y0, x1, y1: 0-based pixels of the image, the face detector's box",
            "warmup_requests": warmup_count,
            "mean_shape": mean_shape.round(4).tolist(), **(metadata or {})}
    with tf.io.gfile.GFile(os.path.join(extra, METADATA_FILE), "w") as handle:
        json.dump(info, handle, indent=1)
    return path


def _signature_summary(size: int, num_landmarks: int) -> dict:
    """The signatures' inputs and outputs, dtype and shape (-1: any), for humans and clients."""
    outputs = {"landmarks": {"dtype": "float32", "shape": [-1, num_landmarks, 2]},
               "stage_spread": {"dtype": "float32", "shape": [-1]}}
    return {
        "serving_default": {"inputs": {"image_bytes": {"dtype": "string", "shape": [-1]},
                                       "box": {"dtype": "float32", "shape": [-1, 4]}},
                            "outputs": outputs},
        "serving_tf_example": {"inputs": {"examples": {"dtype": "string", "shape": [-1]}},
                               "outputs": outputs},
        "predict_canonical": {"inputs": {"image": {"dtype": "uint8",
                                                   "shape": [-1, size, size, 1]}},
                              "outputs": outputs}}


def _synthetic_face() -> tuple[bytes, list[float]]:
    """A mid-gray 160x160 JPEG and a box in its middle: warmup when no real face is given."""
    image = tf.fill([160, 160, 1], tf.constant(128, tf.uint8))
    return tf.io.encode_jpeg(image, quality=90).numpy(), [40.0, 40.0, 120.0, 120.0]


def warmup_requests(faces: Iterable[tuple[bytes, Sequence[float]]] | None = None) -> list:
    """serving_default PredictRequests: one per face, and all of them as one batch."""
    from tensorflow_serving.apis import predict_pb2

    faces = [(bytes(image), [float(v) for v in box])
             for image, box in list(faces or [])[:MAX_WARMUP_FACES]]
    for image, box in faces:
        if len(box) != 4:
            raise ValueError(f"a warmup box needs 4 numbers (x0, y0, x1, y1), got {box}")
    faces = faces or [_synthetic_face()]
    batches = [[face] for face in faces] + ([faces] if len(faces) > 1 else [])
    requests = []
    for batch in batches:
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = "serving_default"
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(
            [image for image, _ in batch], dtype=tf.string, shape=[len(batch)]))
        request.inputs["box"].CopyFrom(tf.make_tensor_proto(
            np.array([box for _, box in batch], np.float32), dtype=tf.float32))
        requests.append(request)
    return requests


def write_warmup_requests(path: str, faces=None) -> int:
    """Writes assets.extra/tf_serving_warmup_requests; returns how many requests it holds."""
    from tensorflow_serving.apis import prediction_log_pb2

    requests = warmup_requests(faces)
    with tf.io.TFRecordWriter(os.path.join(path, "assets.extra", WARMUP_FILE)) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(requests)


def read_warmup_requests(path: str) -> list:
    """The PredictRequests of a SavedModel's warmup file ([] when it has none)."""
    from tensorflow_serving.apis import prediction_log_pb2

    file = os.path.join(path, "assets.extra", WARMUP_FILE)
    if not tf.io.gfile.exists(file):
        return []
    requests = []
    for record in tf.data.TFRecordDataset(file):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        requests.append(log.predict_log.request)
    return requests


def read_metadata(path: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(path, "assets.extra", METADATA_FILE)) as handle:
        return json.load(handle)
