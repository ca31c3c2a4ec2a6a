"""tf.data input for DAN training: canonical-sample TFRecords -> (image, landmarks) batches.

Reads GZIP TFRecords of the canonical tf.Examples written by Augment (feature
names in facealign.core.examples); only the image and its landmarks are parsed.
Yields float32 images [B, size, size, 1] (0-255 values) and float32 shapes
[B, N, 2].
"""
from __future__ import annotations

from collections.abc import Iterable

import tensorflow as tf

from facealign.core import examples
from trainer import distribution, online_perturbation

AUTOTUNE = tf.data.AUTOTUNE


def expand_files(files: str | Iterable[str]) -> list[str]:
    """Paths or glob patterns (one or many) -> sorted list of existing files."""
    patterns = [files] if isinstance(files, (str, bytes)) or hasattr(files, "__fspath__") \
        else list(files)
    found = sorted({path for pattern in patterns for path in tf.io.gfile.glob(str(pattern))})
    if not found:
        raise FileNotFoundError(f"no TFRecord files match {patterns}")
    return found


def make_parse_fn(num_landmarks: int, image_size: int = 112):
    features = {
        examples.IMAGE: tf.io.FixedLenFeature([], tf.string),
        examples.LANDMARKS: tf.io.FixedLenFeature([2 * num_landmarks], tf.float32),
    }

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, features)
        image = tf.io.decode_raw(parsed[examples.IMAGE], tf.uint8)
        image = tf.cast(tf.reshape(image, [image_size, image_size, 1]), tf.float32)
        landmarks = tf.reshape(parsed[examples.LANDMARKS], [num_landmarks, 2])
        return image, landmarks

    return parse


def make_dataset(files: str | Iterable[str], num_landmarks: int, image_size: int = 112,
                 batch_size: int = 64, training: bool = False, shuffle_buffer: int = 4096,
                 repeat: bool = False, seed: int | None = None,
                 workers: int = 1) -> tf.data.Dataset:
    """The input pipeline: parallel parsing, shuffling for training, batching, prefetch.

    repeat=True makes the dataset endless (for a fixed steps_per_epoch).
    workers > 1 (a multi-worker strategy): every worker reads the files in
    the same seeded order and keeps its share of each batch (auto-shard
    policy DATA: the few files cannot be shared out by file).
    """
    paths = expand_files(files)
    dataset = tf.data.Dataset.from_tensor_slices(paths)
    if training:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=min(len(paths), 4), num_parallel_calls=AUTOTUNE,
        deterministic=not training or workers > 1)
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.map(make_parse_fn(num_landmarks, image_size), num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch_size)
    if workers > 1:
        options = tf.data.Options()
        policy = tf.data.experimental.AutoShardPolicy.DATA
        options.experimental_distribute.auto_shard_policy = policy
        dataset = dataset.with_options(options)
    return dataset.prefetch(AUTOTUNE)


def training_datasets(train_files, eval_files, num_landmarks: int, image_size: int,
                      trainer_cfg, seed: int | None = None):
    """(train, eval or None) datasets, batched and shuffled as trainer_cfg says, the training
    batches freshly perturbed when trainer_cfg.online_perturbation is set.

    The training set repeats when steps_per_epoch is set, so an "epoch" is
    that many steps; otherwise an epoch is one pass over the files.
    """
    data = dict(num_landmarks=num_landmarks, image_size=image_size,
                batch_size=trainer_cfg.batch_size,   # global: split over the replicas
                workers=distribution.num_workers())
    train = make_dataset(train_files, training=True, shuffle_buffer=trainer_cfg.shuffle_buffer,
                         repeat=trainer_cfg.steps_per_epoch is not None, seed=seed, **data)
    if trainer_cfg.online_perturbation is not None:
        train = online_perturbation.perturbed(train, image_size, trainer_cfg.online_perturbation,
                                              seed).prefetch(AUTOTUNE)
    evaluation = make_dataset(eval_files, **data) if eval_files else None
    return train, evaluation
