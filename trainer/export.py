"""Exports a trained landmark model as a TF Serving SavedModel.

The crop to the canonical frame, the normalisation (inside the Keras model)
and the mapping back to image pixels all happen in the graph, so a consumer
sends a photo and a face box and gets points on that photo. Signatures:

- ``serving_default``: ``image_bytes`` string [B] (JPEG/PNG/BMP/GIF, any
  size, gray or colour) and ``box`` float32 [B, 4] (x0, y0, x1, y1 pixels) ->
  ``landmarks`` float32 [B, N, 2] (0-based pixels of that image) and
  ``stage_spread`` float32 [B]: the mean distance between the last two
  stages' predictions over the canonical mean shape's box diagonal; a large
  spread means the cascade has not settled (an unreliable result); and
  ``landmark_spread`` float32 [B, N], that distance per landmark (its mean
  is stage_spread; zeros for a one-stage model such as the AAN).
  Boxes that cannot hold a face (not finite, inverted, empty, under
  MIN_BOX_PIXELS, off the image, over MAX_BOX_TO_IMAGE times its size),
  bytes that are no image and non-finite answers fail in the graph with
  INVALID_ARGUMENT "instance I: box [...] <reason>" (TF Serving answers it).
- ``serving_tf_example``: serialized raw-face tf.Examples (ExampleGen's
  feature names), same outputs; for InfraValidator and batch inference.
- ``predict_canonical``: canonical uint8 crops [B, S, S, 1] -> canonical
  landmarks (the model without the crop; warm start reads weights through it).
The Evaluator scores ``serving_tf_example`` on the held-out raw faces: the
path a TF Serving client calls.

Beside the graph, ``assets.extra/`` holds the metadata record (the mean
shape, the signatures' interface, versions, whatever the trainer adds) and
the warmup file: a TFRecord of PredictionLogs with a few
``serving_default`` PredictRequests (real faces when the exporter is given
some, else a synthetic gray image) that TF Serving replays on every load so
the first client request does not pay for the graph's first run. Their
names and formats: facealign/core/model_format.py.
"""
from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from facealign.core import crop, model_format
from facealign.core import examples as names
from facealign.core.model_format import PREDICT_CANONICAL, SERVING_DEFAULT, TF_EXAMPLE

MAX_WARMUP_FACES = 8


# --- what the graph refuses: INVALID_ARGUMENT naming the instance, under TF Serving too -------

# The bounds a box must keep (facealign/core/crop.py, where the numpy twin of these checks is too)
MIN_BOX_PIXELS, MAX_BOX_TO_IMAGE = crop.MIN_BOX_PIXELS, crop.MAX_BOX_TO_IMAGE
# The first bytes of each format tf.io.decode_image reads (JPEG, PNG, GIF, BMP, WebP, JPEG XL):
# other bytes are refused, naming their instance, before the decoder (whose errors cannot).
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"RIFF", b"\xff\x0a",
                b"\x00\x00\x00\x0cJXL ")


def _refuse(ok, message):
    """An Assert op: fails with message() (a scalar string, only built then) unless `ok`."""
    text = tf.cond(ok, lambda: tf.constant(""), message)
    return tf.debugging.Assert(ok, [text], summarize=1)


def _instance_box(index, box):
    return tf.strings.format("instance {}: box {}", (index, box), summarize=-1)


def assert_boxes(image_bytes, box):
    """Refuses the first instance whose box [B, 4] cannot hold a face: not finite, inverted,
    empty, or under MIN_BOX_PIXELS wide or high (and no instance, or inputs of different
    lengths)."""
    width, height = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    refused = tf.stack([  # [B, reason], the reasons in the order reported
        ~tf.reduce_all(tf.math.is_finite(box), axis=1),
        box[:, 2] < box[:, 0],
        box[:, 3] < box[:, 1],
        tf.equal(width, 0.0) | tf.equal(height, 0.0),
        (width < MIN_BOX_PIXELS) | (height < MIN_BOX_PIXELS)], axis=1)

    def message():
        index = tf.where(tf.reduce_any(refused, axis=1))[0, 0]
        reasons = tf.stack([
            "is not finite", "is inverted (x1 < x0)", "is inverted (y1 < y0)",
            "is empty (x1 = x0 or y1 = y0)",
            tf.strings.format("is too small ({} x {} px; the least is {} x {})",
                              (width[index], height[index], MIN_BOX_PIXELS, MIN_BOX_PIXELS))])
        reason = tf.gather(reasons, tf.where(refused[index])[0, 0])
        return tf.strings.join([_instance_box(index, box[index]), reason], " ")

    same_length = tf.debugging.assert_equal(
        tf.shape(image_bytes)[0], tf.shape(box)[0],
        message="image_bytes and box must hold one entry per instance")
    some = _refuse(tf.size(image_bytes) > 0, lambda: tf.constant("the request holds no instance"))
    with tf.control_dependencies([same_length, some]):
        return _refuse(~tf.reduce_any(refused), message)


def assert_image_bytes(index, encoded):
    """Refuses empty bytes and bytes of no image format tf.io.decode_image knows."""
    known = tf.reduce_any(tf.stack([tf.equal(tf.strings.substr(encoded, 0, len(magic)), magic)
                                    for magic in _IMAGE_MAGIC]))

    def message():
        reason = tf.where(tf.strings.length(encoded) > 0,
                          "is not an image (JPEG, PNG, GIF, BMP or WebP expected)", "is empty")
        return tf.strings.join([tf.strings.format("instance {}: image_bytes", index), reason],
                               " ")

    return _refuse(known, message)


def assert_box_on_image(index, box, image_shape):
    """Refuses a box [4] that misses the decoded image [H, W, C] or is over MAX_BOX_TO_IMAGE
    times its longer side (a face that large leaves no image in the crop)."""
    height, width = tf.cast(image_shape[0], tf.float32), tf.cast(image_shape[1], tf.float32)
    overlaps = (box[0] < width) & (box[2] > 0.0) & (box[1] < height) & (box[3] > 0.0)
    extent = tf.maximum(box[2] - box[0], box[3] - box[1])
    fits = extent <= MAX_BOX_TO_IMAGE * tf.maximum(width, height)

    def message():
        image = tf.strings.format("{} x {} image", (image_shape[1], image_shape[0]))
        too_large = tf.strings.join([
            "is too large for the ", image, tf.strings.format(
                " ({} px; the most is {} times its longer side)", (extent, MAX_BOX_TO_IMAGE))])
        reason = tf.where(overlaps, too_large, tf.strings.join(["does not overlap the ", image]))
        return tf.strings.join([_instance_box(index, box), reason], " ")

    return _refuse(overlaps & fits, message)


def assert_finite_outputs(result: dict) -> dict:
    """The outputs, after refusing the first instance whose landmarks or spreads are not
    finite: no answer carries NaN or infinity."""
    finite = (tf.reduce_all(tf.math.is_finite(result["landmarks"]), axis=[1, 2])
              & tf.math.is_finite(result["stage_spread"])
              & tf.reduce_all(tf.math.is_finite(result["landmark_spread"]), axis=1))

    def message():
        return tf.strings.format("instance {}: the predicted landmarks are not finite (NaN or "
                                 "infinity)", tf.where(~finite)[0, 0])

    with tf.control_dependencies([_refuse(tf.reduce_all(finite), message)]):
        return {name: tf.identity(value) for name, value in result.items()}


class _Graph:
    """The tf.functions behind the signatures, closed over one model."""

    def __init__(self, model: keras.Model, mean_shape: np.ndarray, image_size: int):
        self.model = model
        self.size = int(image_size)
        self.num_landmarks = int(len(mean_shape))
        self.box_fit = crop.BoxFit(mean_shape)
        self.spread_scale = float(np.linalg.norm(mean_shape.max(0) - mean_shape.min(0)))

    def fit(self, box):
        """(scale [B], box centre [B, 2]) placing S0 in each box [B, 4] (crop.BoxFit)."""
        return self.box_fit.scale_and_centre(box)

    def crop_one(self, args):
        """One canonical crop (unchecked) of (encoded image, scale, centre) from `fit`."""
        encoded, scale, centre = args
        return self._warp(crop.decode_gray(encoded), scale, centre)

    def _warp(self, gray, scale, centre):
        """By facealign.core.crop, the crop Augment trained on."""
        to_original = self.box_fit.to_original(scale[None], centre[None])
        return crop.warp(gray, to_original, self.size)[0]

    def _checked_crop(self, args):
        """crop_one after refusing undecodable bytes and boxes that miss or dwarf the image."""
        index, encoded, box, scale, centre = args
        with tf.control_dependencies([assert_image_bytes(index, encoded)]):
            gray = crop.decode_gray(encoded)
        with tf.control_dependencies([assert_box_on_image(index, box, tf.shape(gray))]):
            gray = tf.identity(gray)
        return self._warp(gray, scale, centre)

    def stages(self, images):
        """Each stage's canonical landmarks, first to last."""
        outputs = self.model(images, training=False)
        keys = sorted((k for k in outputs if k.startswith("stage_")), key=lambda k: int(k[6:]))
        return [tf.cast(outputs[k], tf.float32) for k in keys]

    def canonical(self, image):
        """Canonical landmarks and spreads of crops [B, S, S, 1]; no checks (no string or
        assert ops: LiteRT's converter and warm start trace this)."""
        stages = self.stages(image)
        return {"landmarks": stages[-1], **self._spread(stages)}

    def checked_canonical(self, image):
        """predict_canonical: `canonical`, refusing answers that are not finite."""
        return assert_finite_outputs(self.canonical(image))

    def _spread(self, stages):
        """stage_spread [B] and landmark_spread [B, N]: how far the last two stages' points lie
        apart over S0's box diagonal (zeros for one stage); the first is the second's mean."""
        if len(stages) < 2:
            return {"stage_spread": tf.zeros(tf.shape(stages[-1])[:1]),
                    "landmark_spread": tf.zeros_like(stages[-1][..., 0])}
        distance = tf.norm(stages[-1] - stages[-2], axis=-1)
        return {"stage_spread": tf.reduce_mean(distance, axis=-1) / self.spread_scale,
                "landmark_spread": distance / self.spread_scale}

    def from_photos(self, image_bytes, box):
        with tf.control_dependencies([assert_boxes(image_bytes, box)]):
            box = tf.identity(box)
        scale, centre = self.fit(box)
        index = tf.range(tf.shape(box, out_type=tf.int64)[0])
        crops = tf.map_fn(self._checked_crop, (index, image_bytes, box, scale, centre),
                          fn_output_signature=tf.TensorSpec([self.size, self.size, 1], tf.uint8))
        result = self.canonical(crops)
        result["landmarks"] = self.box_fit.points_to_original(result["landmarks"], scale, centre)
        return assert_finite_outputs(result)

    def from_examples(self, examples):
        parsed = tf.io.parse_example(examples, {
            names.RAW_IMAGE: tf.io.FixedLenFeature([], tf.string),
            names.RAW_BOX: tf.io.FixedLenFeature([4], tf.float32)})
        return self.from_photos(parsed[names.RAW_IMAGE], parsed[names.RAW_BOX])


def serving_graph(model: keras.Model, mean_shape, image_size: int) -> _Graph:
    """The graph behind the signatures, for tracing them without saving."""
    return _Graph(model, np.asarray(mean_shape, np.float32).reshape(-1, 2), int(image_size))


class _ServingModule(tf.Module):
    """What tf.saved_model.save writes: the signatures and each weight once.

    Keras' ExportArchive checkpoints every weight twice (as the Keras variable
    and as the tf.Variable inside it), doubling the SavedModel's size; this
    module tracks only the tf.Variables the graph reads.
    """

    def __init__(self, model: keras.Model, graph: _Graph):
        super().__init__(name="facealign_serving")
        self.weights_store = [variable.value for variable in model.variables]
        self.serving_default = tf.function(graph.from_photos, input_signature=[
            tf.TensorSpec([None], tf.string, name="image_bytes"),
            tf.TensorSpec([None, 4], tf.float32, name="box")])
        self.serving_tf_example = tf.function(graph.from_examples, input_signature=[
            tf.TensorSpec([None], tf.string, name="examples")])
        self.predict_canonical = tf.function(graph.checked_canonical, input_signature=[
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
    requests = warmup_requests(warmup_faces)
    stages = sum(1 for key in model.output if key.startswith("stage_")) \
        if isinstance(model.output, dict) else None
    record = model_format.ModelMetadata.from_dict({   # checked before anything is written
        "num_landmarks": int(len(mean_shape)), "image_size": size,
        "metadata_format": model_format.METADATA_FORMAT, "stages": stages,
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "tensorflow_version": tf.__version__, "keras_version": keras.__version__,
        "signatures": _signature_summary(size, len(mean_shape)),
        "box_format": "x0, y0, x1, y1: 0-based pixels of the image, the face detector's box",
        "warmup_requests": len(requests),
        "mean_shape": mean_shape.round(4).tolist(), **(metadata or {})}, f"{path}: metadata")
    graph = _Graph(model, mean_shape, size)
    module = _ServingModule(model, graph)
    tf.saved_model.save(module, path, signatures={
        SERVING_DEFAULT: module.serving_default,
        TF_EXAMPLE: module.serving_tf_example,
        PREDICT_CANONICAL: module.predict_canonical})
    model_format.write_warmup_requests(path, requests)
    record.write(path)
    return path


def _signature_summary(size: int, num_landmarks: int) -> dict:
    """The signatures' inputs and outputs, dtype and shape (-1: any), for humans and clients."""
    outputs = {"landmarks": {"dtype": "float32", "shape": [-1, num_landmarks, 2]},
               "stage_spread": {"dtype": "float32", "shape": [-1]},
               "landmark_spread": {"dtype": "float32", "shape": [-1, num_landmarks]}}
    return {
        SERVING_DEFAULT: {"inputs": {"image_bytes": {"dtype": "string", "shape": [-1]},
                                     "box": {"dtype": "float32", "shape": [-1, 4]}},
                          "outputs": outputs},
        TF_EXAMPLE: {"inputs": {"examples": {"dtype": "string", "shape": [-1]}},
                     "outputs": outputs},
        PREDICT_CANONICAL: {"inputs": {"image": {"dtype": "uint8",
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
    for _image, box in faces:
        if len(box) != 4:
            raise ValueError(f"a warmup box needs 4 numbers (x0, y0, x1, y1), got {box}")
    faces = faces or [_synthetic_face()]
    batches = [[face] for face in faces] + ([faces] if len(faces) > 1 else [])
    requests = []
    for batch in batches:
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = SERVING_DEFAULT
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(
            [image for image, _ in batch], dtype=tf.string, shape=[len(batch)]))
        request.inputs["box"].CopyFrom(tf.make_tensor_proto(
            np.array([box for _, box in batch], np.float32), dtype=tf.float32))
        requests.append(request)
    return requests
