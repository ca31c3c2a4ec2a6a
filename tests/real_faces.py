"""Real 300-W faces cropped to the canonical frame, for model tests.

Independent of the pipeline's crop code (plain scale + translation around the
landmarks' box), so model tests do not depend on what they could mask.
"""
from __future__ import annotations

import pathlib

import cv2
import numpy as np
import tensorflow as tf

from facealign.core import examples
from facealign.core.data.pts import read_pts


def canonical_face(pts_path: pathlib.Path, size: int = 112,
                   rng: np.random.Generator | None = None):
    """(uint8 [size, size] crop, float32 [N, 2] landmarks): the face spans half the frame,
    randomly rescaled by up to 10% and shifted by a few pixels when `rng` is given."""
    image = cv2.imread(str(pts_path.with_suffix(".jpg")), cv2.IMREAD_GRAYSCALE)
    points = read_pts(pts_path)
    low, high = points.min(0), points.max(0)
    scale = 0.5 * size / float((high - low).max())
    shift = (size - 1) / 2.0 - scale * (low + high) / 2.0
    if rng is not None:
        scale *= rng.uniform(0.9, 1.1)
        shift = (size - 1) / 2.0 - scale * (low + high) / 2.0 + rng.normal(0, 4, 2)
    matrix = np.array([[scale, 0, shift[0]], [0, scale, shift[1]]], np.float32)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crop, (points * scale + shift).astype(np.float32)


def write_tfrecord(path, images, shapes) -> str:
    """Canonical samples (uint8 images, landmarks) as the GZIP TFRecord the trainers read."""
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for image, shape in zip(images, shapes):
            feature = {
                examples.IMAGE: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[image.astype(np.uint8).tobytes()])),
                examples.IMAGE_SIZE: tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[image.shape[0]])),
                examples.LANDMARKS: tf.train.Feature(
                    float_list=tf.train.FloatList(value=shape.ravel().tolist())),
                examples.FACE_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
            }
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())
    return str(path)
