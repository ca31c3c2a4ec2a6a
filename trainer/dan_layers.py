"""Connection layers of the Deep Alignment Network (Kowalski et al., 2017, sec. 3.2-3.4).

Between two DAN stages these layers turn the previous estimate S_{t-1} into
the next stage's input: a similarity transform T_t that takes S_{t-1} onto
the canonical shape S0, the image and the shape warped by T_t, a landmark
heatmap of T_t(S_{t-1}) and a feature image from the previous stage's fc1.

Transforms are batched 2x3 affine matrices, float32 [B, 2, 3], acting on
(x, y) points as ``p' = M[:, :2] @ p + M[:, 2]``; pixel centres are at
integer coordinates (0-based), the convention of
``tf.raw_ops.ImageProjectiveTransformV3`` and ``cv2.warpAffine``.

Geometry (transform estimation, warps, heatmap distances) always runs in
float32, whatever the model's mixed-precision policy: in bfloat16 a landmark
coordinate near 100 px would be off by up to half a pixel. Estimating,
applying and inverting transforms are facealign.core.geometry's ``*_tf``
functions, the twins of the numpy ones the data pipeline uses.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from facealign.core import crop, geometry

_PACKAGE = "facealign"


def _float32_layer_kwargs(kwargs: dict) -> dict:
    """Geometry layers ignore the global/mixed policy: they compute in float32."""
    kwargs["dtype"] = "float32"
    return kwargs


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TransformEstimation(keras.layers.Layer):
    """Least-squares similarity T with T(S) ~ S0, and its inverse (sec. 3.2).

    Similarities (rotation, uniform scale, translation; no skew, no
    reflection) keep the face undistorted. Parameterising the linear part as
    [[a, -b], [b, a]] makes the least-squares fit linear in (a, b), so it has
    a closed form (the one of the official implementation, and of
    facealign.core.geometry.estimate_similarity): a = sum(s.d) / |s|^2,
    b = sum(s_x d_y - s_y d_x) / |s|^2 for centred source s and destination
    d; its determinant a^2 + b^2 >= 0 rules out reflections.

    Input: shapes [B, N, 2]. Output: (T, T^-1), each [B, 2, 3] float32.
    """

    def __init__(self, canonical_shape, **kwargs):
        super().__init__(**_float32_layer_kwargs(kwargs))
        self.canonical_shape = np.asarray(canonical_shape, np.float32).reshape(-1, 2)

    def call(self, shapes):
        transform = geometry.estimate_similarity_tf(shapes, self.canonical_shape)
        return transform, geometry.invert_transform_tf(transform)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2, 3), (input_shape[0], 2, 3)

    def get_config(self):
        config = super().get_config()
        config["canonical_shape"] = self.canonical_shape.tolist()
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LandmarkTransform(keras.layers.Layer):
    """Applies a batch of affine transforms to shapes: inputs [shapes [B,N,2], T [B,2,3]].

    One layer for T and T^-1: which one is applied is the caller's choice of
    transform input (TransformEstimation returns both).
    """

    def __init__(self, **kwargs):
        super().__init__(**_float32_layer_kwargs(kwargs))

    def call(self, inputs):
        shapes, transform = inputs
        return geometry.apply_transform_tf(transform, shapes)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def _spatial_size(images):
    """[H, W], static when known so the warped image keeps a static shape."""
    static = images.shape[1:3]
    if static.is_fully_defined():
        return tf.constant(static.as_list(), tf.int32)
    return tf.shape(images)[1:3]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ImageTransform(keras.layers.Layer):
    """Warps images with T (bilinear, fill 0): inputs [images [B,H,W,C], T [B,2,3]].

    T is the same transform that is applied to the landmarks, so the content
    at input pixel p lands at output pixel T(p). ImageProjectiveTransformV3
    wants the opposite direction (output pixel -> input sample position), so
    the layer hands it T^-1. Applied to the standardised image, the fill
    value 0 is the mean pixel of the training set. The whole batch is warped
    by one op, no Python loop.

    builtin_ops: warp with crop.sample_bilinear_builtin (TFLite builtin ops,
    same pixels) instead; the LiteRT export (trainer/litert_export.py) turns
    it on in the model it converts. Off by default, and then absent from the
    config, so saved models and their configs are as before.
    """

    def __init__(self, builtin_ops: bool = False, **kwargs):
        super().__init__(**_float32_layer_kwargs(kwargs))
        self.builtin_ops = bool(builtin_ops)

    def call(self, inputs):
        images, transform = inputs
        images = tf.cast(images, tf.float32)
        sample = crop.sample_bilinear_builtin if self.builtin_ops else crop.sample_bilinear
        return sample(images, geometry.invert_transform_tf(transform), _spatial_size(images))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        if self.builtin_ops:
            config["builtin_ops"] = True
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LandmarkHeatmap(keras.layers.Layer):
    """Eq. 3: H(x, y) = 1 / (1 + min_i |(x, y) - s_i|), zero beyond `radius` of every s_i.

    Input: shapes [B, N, 2] in pixel coordinates. Output: [B, H, W, 1] float32.

    The squared distance separates into dy^2 + dx^2, so per landmark only the
    row and column terms are computed ([B, N, H] and [B, N, W]); the [H, W]
    sum is formed and reduced by a running minimum over chunks of landmarks,
    which bounds the temporary to B*H*W*chunk floats instead of B*H*W*N. The
    square root and the radius cut run once per pixel, after the minimum.
    Within the radius the result is the same as the official implementation's
    max over per-landmark patches (it used 16x16 squares; the paper and this
    layer use discs of radius 16).
    """

    def __init__(self, image_size: int = 112, radius: float = 16.0,
                 landmarks_per_chunk: int = 17, **kwargs):
        super().__init__(**_float32_layer_kwargs(kwargs))
        self.image_size = int(image_size)
        self.radius = float(radius)
        self.landmarks_per_chunk = int(landmarks_per_chunk)

    def call(self, shapes):
        shapes = ops.cast(shapes, "float32")
        grid = ops.arange(self.image_size, dtype="float32")
        dx2 = ops.square(grid[None, None, :] - shapes[:, :, 0:1])    # [B, N, W]
        dy2 = ops.square(grid[None, None, :] - shapes[:, :, 1:2])    # [B, N, H]
        num_landmarks = shapes.shape[1]
        if num_landmarks is None:   # unknown N: one chunk
            chunks = [(0, None)]
        else:
            step = max(1, self.landmarks_per_chunk)
            chunks = [(i, i + step) for i in range(0, num_landmarks, step)]
        min_d2 = None
        for start, stop in chunks:
            d2 = dy2[:, start:stop, :, None] + dx2[:, start:stop, None, :]   # [B, n, H, W]
            chunk_min = ops.min(d2, axis=1)
            min_d2 = chunk_min if min_d2 is None else ops.minimum(min_d2, chunk_min)
        # max() keeps sqrt's gradient finite when a pixel centre sits on a landmark.
        distance = ops.sqrt(ops.maximum(min_d2, 1e-12))
        heatmap = ops.where(distance <= self.radius, 1.0 / (1.0 + distance), 0.0)
        return heatmap[..., None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.image_size, self.image_size, 1)

    def get_config(self):
        config = super().get_config()
        config.update(image_size=self.image_size, radius=self.radius,
                      landmarks_per_chunk=self.landmarks_per_chunk)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FeatureImage(keras.layers.Layer):
    """Sec. 3.4: Dense(size/2 squared, ReLU) of the previous fc1, as a size x size image.

    The dense layer's 3136 units form a 56x56 image, upscaled by 2 with
    nearest neighbour (pixel repetition, as Lasagne's Upscale2DLayer in the
    official code): the paper found 56x56 as good as 112x112 with a quarter
    of the parameters. Input: [B, F]. Output: [B, size, size, 1].
    """

    def __init__(self, image_size: int = 112, **kwargs):
        super().__init__(**kwargs)
        if image_size % 2:
            raise ValueError(f"image_size must be even, got {image_size}")
        self.image_size = int(image_size)
        self.low_resolution = self.image_size // 2
        self.dense = keras.layers.Dense(
            self.low_resolution ** 2, activation="relu", name="dense",
            dtype=self.dtype_policy)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, features):
        low = ops.reshape(self.dense(features),
                          (-1, self.low_resolution, self.low_resolution, 1))
        return ops.repeat(ops.repeat(low, 2, axis=1), 2, axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.image_size, self.image_size, 1)

    def get_config(self):
        config = super().get_config()
        config["image_size"] = self.image_size
        return config
