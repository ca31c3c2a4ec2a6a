"""Test-time flip averaging: a face's landmarks averaged with those of its mirror image.

Augment trains on mirrored faces (augment.mirror), so a network answers the mirror image
of a crop about as well as the crop, with errors that are partly independent; the mean of
the two answers (the mirror's flipped back: x -> size - 1 - x, the points re-indexed by the
68-point mirror permutation, as facealign.core.canonical.mirror_points does for training) cancels
part of both. The averaged model is exactly mirror-equivariant. It costs a second forward
pass, run as one batch of 2B, and reads the same weights in the same order, so warm start
moves weights between averaged and plain models unchanged (trainer.warm_start).

Set by `model.flip_average`; the exporter wraps the model it serves, so the Evaluator, TF
Serving and `facealign.load` all see the averaged answer. Training and its validation
curve use the plain network. Measured on the 100 held-out faces of configs/300w-aan.yaml
(serving signature; inter-ocular NME / AUC@0.08 / failure rate; benchmarks/flip_average.py,
2026-12-04): pretrained/aan-300w 1796413540 5.07% / 0.406 / 5% plain, 4.85% / 0.435 / 5%
averaged (its parent 1796216818: 5.34% / 0.362 / 6%, 5.04% / 0.395 / 6%);
pretrained/dan-300w 4.24% / 0.472 / 2% plain, 4.08% / 0.493 / 1% averaged. The
mirror convention is the training one (pixel centres at integers, x -> size - 1 - x);
size - x scored 4.97% on 1796216818 (5.04% here): the network's answers sit ~0.3 px
left of the ground truth on average, a bias left alone rather than tuned away on the
held-out faces.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from facealign.core import landmarks68


class MirrorPair(keras.layers.Layer):
    """[B, H, W, C] images -> [2B, H, W, C]: the images, then their mirror images."""

    def call(self, images):
        return tf.concat([images, tf.reverse(images, axis=[2])], axis=0)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else 2 * input_shape[0]
        return (batch, *input_shape[1:])


class MirrorMean(keras.layers.Layer):
    """[2B, N, 2] points of (images, mirror images) -> [B, N, 2]: the first half averaged
    with the second half mapped back to the unmirrored image (x -> width - 1 - x, points
    re-indexed by `permutation`)."""

    def __init__(self, width: int, permutation, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        self.permutation = [int(i) for i in permutation]

    def call(self, points):
        points = tf.cast(points, tf.float32)
        plain, mirrored = tf.split(points, 2, axis=0)
        back = tf.gather(mirrored, self.permutation, axis=1)
        back = tf.stack([self.width - 1.0 - back[..., 0], back[..., 1]], axis=-1)
        return (plain + back) / 2.0

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // 2
        return (batch, *input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "width": self.width, "permutation": self.permutation}


def mirror_permutation_for(num_landmarks: int) -> np.ndarray:
    """The markup's mirror permutation, or a ValueError naming `model.flip_average`."""
    try:
        return landmarks68.mirror_permutation(num_landmarks)
    except ValueError as exc:
        raise ValueError(f"model.flip_average needs a mirror permutation of the landmarks; "
                         f"{exc}") from None


def flip_averaged(model: keras.Model) -> keras.Model:
    """`model` (image [B, S, S, 1] -> {name: [B, N, 2] canonical points}) answering the mean
    of its answers on each image and on the image's mirror (module docstring)."""
    image = model.inputs[0]
    size = int(image.shape[2])
    first = next(iter(model.output.values())) if isinstance(model.output, dict) else model.output
    permutation = mirror_permutation_for(int(first.shape[1]))
    inputs = keras.Input(tuple(image.shape[1:]), dtype=image.dtype, name="image")
    # float32 whatever the global policy: a flip must not round the pixels
    answers = model(MirrorPair(name="mirror_pair", dtype="float32")(inputs))
    averaged = {name: MirrorMean(size, permutation, name=name, dtype="float32")(points)
                for name, points in answers.items()}
    return keras.Model(inputs, averaged, name=f"{model.name}_flip_averaged")
