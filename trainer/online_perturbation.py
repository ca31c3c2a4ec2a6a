"""Fresh random perturbations every epoch, warped inside the Trainer's input pipeline.

Augment crops each training face `copies` times, once: every epoch then sees the
same samples again. With `trainer.online_perturbation` set, every training batch
is warped once more by a new random similarity about the canonical frame's centre
(turn, scale, shift, as Augment draws them: normal around no change), so no two
epochs see the same pixels. The landmarks go through the same transform. Held-out
batches are never touched. The draws come from `tf.data.Dataset.random`, which
draws again each time the dataset is iterated, so a reread dataset gets new draws
too.
"""
from __future__ import annotations

import math

import tensorflow as tf

from facealign.core import crop, geometry

MIN_SCALE = 0.5   # a draw below is clipped: the face must stay in the frame


def random_similarities(seeds, batch: int, image_size: int, settings) -> tf.Tensor:
    """[batch, 2, 3] similarities about the frame centre, drawn from the stateless seeds [2]."""
    angle_seed, scale_seed, shift_seed = tf.unstack(
        tf.random.experimental.stateless_split(seeds, 3))
    angle = tf.random.stateless_normal([batch], angle_seed,
                                       stddev=math.radians(settings.rotation_sigma_deg))
    scale = tf.maximum(1.0 + tf.random.stateless_normal([batch], scale_seed,
                                                        stddev=settings.scale_sigma), MIN_SCALE)
    shift = tf.random.stateless_normal([batch, 2], shift_seed, stddev=settings.translation_px)
    centre = (image_size - 1) / 2.0
    cos, sin = scale * tf.cos(angle), scale * tf.sin(angle)
    # p' = s R (p - c) + c + t
    tx = centre - (cos * centre - sin * centre) + shift[:, 0]
    ty = centre - (sin * centre + cos * centre) + shift[:, 1]
    return tf.stack([tf.stack([cos, -sin, tx], axis=-1),
                     tf.stack([sin, cos, ty], axis=-1)], axis=1)


def perturb(images, landmarks, transforms):
    """Images [B, S, S, C] and landmarks [B, N, 2] moved by transforms [B, 2, 3] (black fill)."""
    size = tf.shape(images)[1:3]
    warped = crop.sample_bilinear(images, geometry.invert_transform_tf(transforms), size)
    return tf.ensure_shape(warped, images.shape), geometry.apply_transform_tf(transforms,
                                                                              landmarks)


def perturbed(dataset: tf.data.Dataset, image_size: int, settings,
              seed: int | None = None) -> tf.data.Dataset:
    """A batched (images, landmarks) dataset with every batch freshly perturbed."""
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def move(batch, seeds):
        images, landmarks = batch
        transforms = random_similarities(seeds, tf.shape(images)[0], image_size, settings)
        return perturb(images, landmarks, transforms)

    return tf.data.Dataset.zip((dataset, draws)).map(move, num_parallel_calls=tf.data.AUTOTUNE)
