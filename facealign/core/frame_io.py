"""The canonical-frame artifact: S0 and the training pixel statistics.

The Trainer and the exported model need the same S0 and normalisation the
crops were made with; they travel as one small folder (an .npz and a JSON
copy for people), on the Trainer's `transform_graph` channel.
"""
from __future__ import annotations

import io
import json
import os

import numpy as np
import tensorflow as tf

from facealign.core.data.report import DataError

FRAME_FILE = "canonical_frame.npz"
FRAME_JSON = "canonical_frame.json"


def write_frame(uri: str, mean_shape, pixel_mean, pixel_std, image_size: int,
                train_faces: int, train_samples: int) -> None:
    tf.io.gfile.makedirs(uri)
    buffer = io.BytesIO()
    np.savez(buffer, mean_shape=np.asarray(mean_shape, np.float32),
             pixel_mean=np.asarray(pixel_mean, np.float32),
             pixel_std=np.asarray(pixel_std, np.float32), image_size=np.int64(image_size))
    with tf.io.gfile.GFile(os.path.join(uri, FRAME_FILE), "wb") as handle:
        handle.write(buffer.getvalue())
    with tf.io.gfile.GFile(os.path.join(uri, FRAME_JSON), "w") as handle:
        json.dump({"image_size": int(image_size), "num_landmarks": int(len(mean_shape)),
                   "train_faces": int(train_faces), "train_samples": int(train_samples),
                   "mean_shape": np.round(np.asarray(mean_shape), 3).tolist()}, handle)


def read_frame(uri: str) -> dict:
    """{"mean_shape" [N,2], "pixel_mean" [S,S], "pixel_std" [S,S], "image_size"}."""
    with tf.io.gfile.GFile(os.path.join(uri, FRAME_FILE), "rb") as handle:
        data = np.load(io.BytesIO(handle.read()))
        return {key: data[key] for key in data.files} | {"image_size": int(data["image_size"])}


def read_pinned_mean_shape(path: str, image_size: int):
    """augment.mean_shape's S0 [N, 2], or None while the file does not exist yet."""
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as handle:
            pinned = json.load(handle)
        size, shape = pinned.get("image_size"), np.asarray(pinned["mean_shape"], np.float32)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(path, f"augment.mean_shape: not a pinned S0 (JSON with image_size and "
                              f"mean_shape [[x, y], ...]): {exc}") from None
    if size != image_size:
        raise DataError(path, f"augment.mean_shape pins S0 for {size} px crops, "
                              f"augment.image_size is {image_size}")
    if shape.ndim != 2 or shape.shape[1] != 2:
        raise DataError(path, f"augment.mean_shape: mean_shape has shape {shape.shape}, "
                              "not [N, 2]")
    return shape


def pin_mean_shape(path: str, mean_shape, image_size: int, computed_by: str) -> None:
    """Writes augment.mean_shape's file once; an existing one is never replaced."""
    if tf.io.gfile.exists(path):
        return
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    with tf.io.gfile.GFile(path + ".tmp", "w") as handle:
        json.dump({"image_size": int(image_size), "computed_by": computed_by,
                   "mean_shape": np.asarray(mean_shape, np.float64).tolist()}, handle)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=False)
