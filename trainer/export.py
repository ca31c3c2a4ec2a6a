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
"""
from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf

from facealign import examples as names

METADATA_FILE = "facealign_metadata.json"


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


def export_saved_model(model: keras.Model, mean_shape, path: str, metadata: dict | None = None,
                       image_size: int | None = None) -> str:
    """Writes the SavedModel (with the three signatures) and its metadata file."""
    mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)
    size = int(image_size or model.inputs[0].shape[1])
    graph = _Graph(model, mean_shape, size)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", graph.from_photos, input_signature=[
            tf.TensorSpec([None], tf.string, name="image_bytes"),
            tf.TensorSpec([None, 4], tf.float32, name="box")])
    archive.add_endpoint(
        "serving_tf_example", graph.from_examples,
        input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    archive.add_endpoint(
        "predict_canonical", graph.canonical,
        input_signature=[tf.TensorSpec([None, size, size, 1], tf.uint8, name="image")])
    archive.write_out(path, verbose=False)
    info = {"num_landmarks": int(len(mean_shape)), "image_size": size,
            "mean_shape": mean_shape.round(4).tolist(), **(metadata or {})}
    extra = os.path.join(path, "assets.extra")
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, METADATA_FILE), "w") as handle:
        json.dump(info, handle, indent=1)
    return path


def read_metadata(path: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(path, "assets.extra", METADATA_FILE)) as handle:
        return json.load(handle)
