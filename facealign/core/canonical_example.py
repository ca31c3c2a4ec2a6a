"""Canonical samples as tf.Examples: the one format Augment writes and the trainer and
evaluator read.

Feature names come from facealign.core.examples. Images travel as raw uint8 bytes
(size * size, row-major) rather than PNG: they are small, and decoding a raw
buffer is free in a tf.data pipeline.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from facealign.core import examples
from facealign.core.canonical import CanonicalSample


@dataclasses.dataclass(frozen=True)
class CanonicalRecord:
    """A decoded canonical tf.Example: the sample plus where it came from."""

    sample: CanonicalSample
    face_id: str
    dataset: str
    subset: str


def _bytes(value) -> tf.train.Feature:
    value = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _floats(values) -> tf.train.Feature:
    return tf.train.Feature(
        float_list=tf.train.FloatList(value=np.asarray(values, np.float32).ravel().tolist()))


def _ints(values) -> tf.train.Feature:
    return tf.train.Feature(
        int64_list=tf.train.Int64List(value=np.asarray(values, np.int64).ravel().tolist()))


def encode_canonical_example(sample: CanonicalSample, face_id, dataset="",
                             subset="") -> tf.train.Example:
    """The tf.Example of one canonical sample (floats are stored as float32)."""
    image = np.asarray(sample.image)
    if image.dtype != np.uint8 or image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"canonical images must be uint8 [size, size], got {image.dtype} "
                         f"{image.shape}")
    if np.shape(sample.landmarks) != np.shape(sample.original_landmarks):
        raise ValueError("landmarks and original_landmarks need the same number of points")
    return tf.train.Example(features=tf.train.Features(feature={
        examples.IMAGE: _bytes(np.ascontiguousarray(image).tobytes()),
        examples.IMAGE_SIZE: _ints([image.shape[0]]),
        examples.LANDMARKS: _floats(sample.landmarks),
        examples.TO_ORIGINAL: _floats(sample.to_original),
        examples.ORIGINAL_LANDMARKS: _floats(sample.original_landmarks),
        examples.BOX: _floats(sample.box),
        examples.FACE_ID: _bytes(face_id),
        examples.DATASET: _bytes(dataset),
        examples.SUBSET: _bytes(subset),
        examples.MIRRORED: _ints([int(bool(sample.mirrored))]),
    }))


def decode_canonical_example(serialized: bytes) -> CanonicalRecord:
    """A serialized canonical tf.Example back as numpy arrays, for tests and tools."""
    feature = tf.train.Example.FromString(serialized).features.feature

    def floats(name):
        return np.asarray(feature[name].float_list.value, dtype=np.float32)

    def text(name):
        return feature[name].bytes_list.value[0].decode("utf-8")

    size = int(feature[examples.IMAGE_SIZE].int64_list.value[0])
    image = np.frombuffer(feature[examples.IMAGE].bytes_list.value[0],
                          dtype=np.uint8).reshape(size, size)
    sample = CanonicalSample(
        image=image.copy(),
        landmarks=floats(examples.LANDMARKS).reshape(-1, 2),
        to_original=floats(examples.TO_ORIGINAL).reshape(2, 3),
        original_landmarks=floats(examples.ORIGINAL_LANDMARKS).reshape(-1, 2),
        box=floats(examples.BOX),
        mirrored=bool(feature[examples.MIRRORED].int64_list.value[0]))
    return CanonicalRecord(sample, text(examples.FACE_ID), text(examples.DATASET),
                           text(examples.SUBSET))


def canonical_feature_spec(num_landmarks: int) -> dict:
    """The tf.io feature spec of a canonical example with a known number of landmarks."""
    n = int(num_landmarks)
    return {
        examples.IMAGE: tf.io.FixedLenFeature([], tf.string),
        examples.IMAGE_SIZE: tf.io.FixedLenFeature([1], tf.int64),
        examples.LANDMARKS: tf.io.FixedLenFeature([2 * n], tf.float32),
        examples.TO_ORIGINAL: tf.io.FixedLenFeature([6], tf.float32),
        examples.ORIGINAL_LANDMARKS: tf.io.FixedLenFeature([2 * n], tf.float32),
        examples.BOX: tf.io.FixedLenFeature([4], tf.float32),
        examples.FACE_ID: tf.io.FixedLenFeature([], tf.string),
        examples.DATASET: tf.io.FixedLenFeature([], tf.string),
        examples.SUBSET: tf.io.FixedLenFeature([], tf.string),
        examples.MIRRORED: tf.io.FixedLenFeature([1], tf.int64),
    }


def _shaped(parsed: dict, batch: list, num_landmarks: int, image_size: int) -> dict:
    """Reshape flat parsed features; `batch` is [] for one example or [-1] for a batch."""
    n, size = int(num_landmarks), int(image_size)
    image = tf.io.decode_raw(parsed[examples.IMAGE], tf.uint8)
    return {
        examples.IMAGE: tf.reshape(image, batch + [size, size, 1]),
        examples.IMAGE_SIZE: tf.reshape(parsed[examples.IMAGE_SIZE], batch),
        examples.LANDMARKS: tf.reshape(parsed[examples.LANDMARKS], batch + [n, 2]),
        examples.TO_ORIGINAL: tf.reshape(parsed[examples.TO_ORIGINAL], batch + [2, 3]),
        examples.ORIGINAL_LANDMARKS: tf.reshape(parsed[examples.ORIGINAL_LANDMARKS],
                                                batch + [n, 2]),
        examples.BOX: parsed[examples.BOX],
        examples.FACE_ID: parsed[examples.FACE_ID],
        examples.DATASET: parsed[examples.DATASET],
        examples.SUBSET: parsed[examples.SUBSET],
        examples.MIRRORED: tf.reshape(parsed[examples.MIRRORED], batch),
    }


def parse_canonical_example(serialized, num_landmarks: int, image_size: int) -> dict:
    """One serialized example -> tensors keyed by the examples.py names.

    image uint8 [size, size, 1], landmarks and original_landmarks float32
    [N, 2], to_original float32 [2, 3], box float32 [4], mirrored int64 [].
    For ``dataset.map`` before batching.
    """
    parsed = tf.io.parse_single_example(serialized, canonical_feature_spec(num_landmarks))
    return _shaped(parsed, [], num_landmarks, image_size)


def parse_canonical_examples(serialized, num_landmarks: int, image_size: int) -> dict:
    """A batch [B] of serialized examples -> the same tensors with a leading B; for ``map``
    after ``batch`` (faster)."""
    parsed = tf.io.parse_example(serialized, canonical_feature_spec(num_landmarks))
    return _shaped(parsed, [-1], num_landmarks, image_size)
