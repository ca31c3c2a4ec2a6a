"""The Deep Alignment Network (Kowalski et al., 2017): Table-1 stages joined by connection layers.

Stage 1 sees the standardised canonical image and outputs S1 = S0 + dS1.
Stage t > 1 sees three channels - the image warped by T_t (T_t takes S_{t-1}
onto S0), the heatmap of T_t(S_{t-1}) and a feature image from stage t-1's
fc1 - and outputs S_t = T_t^-1(T_t(S_{t-1}) + dS_t) (eq. 2). With
model.dan.input_batchnorm those three channels go through a BatchNorm first,
as in the official code (`batch_norm(ConcatLayer(...))`; the paper is silent).

The model takes the canonical grayscale image [B, size, size, 1] with 0-255
values (a float32 input; Keras converts uint8 arrays, and the layer casts
whatever arrives) and returns a dict of float32 [B, N, 2] canonical-frame
shapes: "stage_1" ... "stage_T" (every stage's estimate, for sequential
training and for the spread between stages as a confidence) and
"landmarks" (= the last stage's). Layer names of stage t start with
"s{t}_", which is how sequential training finds what to freeze.

Loading a saved model needs this module imported (it registers the custom
layers). Mixed precision (precision="mixed_bfloat16") is set per layer, not
through the global policy: the conv/dense stacks compute in bfloat16, while the
geometry (connection layers), the fc2 output layer and the shape updates
stay float32.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from facealign.core.config import DanConfig
from trainer.batchnorm import FusedBatchNorm
from trainer.dan_layers import (
    FeatureImage,
    ImageTransform,
    LandmarkHeatmap,
    LandmarkTransform,
    TransformEstimation,
)

_PACKAGE = "facealign"
PRECISIONS = ("float32", "mixed_bfloat16")
# Lasagne's BatchNormLayer defaults (alpha=0.1, epsilon=1e-4), as in the official code.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-4
_TABLE1_WIDTHS = (1, 2, 4, 8)   # conv blocks 1-4: 64, 128, 256, 512 filters at base 64


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ImageStandardization(keras.layers.Layer):
    """(image - mean image) / std image, with the training set's per-pixel statistics.

    The statistics are non-trainable weights, so they travel with the saved
    model and serving needs no preprocessing. std is floored at `min_std`
    grey levels: canonical crops have constant (zero-fill) pixels whose std
    is 0.
    """

    def __init__(self, pixel_mean=None, pixel_std=None, image_size: int | None = None,
                 min_std: float = 1.0, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self._initial_mean = None if pixel_mean is None else np.asarray(pixel_mean, np.float32)
        self._initial_std = None if pixel_std is None else np.asarray(pixel_std, np.float32)
        if image_size is None:
            if self._initial_mean is None:
                raise ValueError("give pixel_mean or image_size")
            image_size = self._initial_mean.shape[0]
        self.image_size = int(image_size)
        self.min_std = float(min_std)
        for what, value in (("pixel_mean", self._initial_mean), ("pixel_std", self._initial_std)):
            if value is not None and value.shape != (self.image_size, self.image_size):
                raise ValueError(f"{what} must be [{self.image_size}, {self.image_size}], "
                                 f"got {list(value.shape)}")

    def build(self, input_shape):
        size = (self.image_size, self.image_size)
        self.pixel_mean = self.add_weight(name="pixel_mean", shape=size,
                                          initializer="zeros", trainable=False)
        self.pixel_std = self.add_weight(name="pixel_std", shape=size,
                                         initializer="ones", trainable=False)
        if self._initial_mean is not None:
            self.pixel_mean.assign(self._initial_mean)
        if self._initial_std is not None:
            self.pixel_std.assign(np.maximum(self._initial_std, self.min_std))

    def call(self, images):
        images = ops.cast(images, "float32")
        return (images - self.pixel_mean[..., None]) / self.pixel_std[..., None]

    def get_config(self):
        config = super().get_config()
        config.update(image_size=self.image_size, min_std=self.min_std)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InitialShape(keras.layers.Layer):
    """S0, the canonical mean shape, repeated for every image of the batch: [B, N, 2]."""

    def __init__(self, mean_shape, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)

    def call(self, images):
        batch = ops.shape(images)[0]
        return ops.tile(ops.convert_to_tensor(self.mean_shape)[None], (batch, 1, 1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.mean_shape.shape

    def get_config(self):
        config = super().get_config()
        config["mean_shape"] = self.mean_shape.tolist()
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ShapeUpdate(keras.layers.Layer):
    """shape + dS: inputs [shape [B, N, 2], fc2 output [B, 2N] as x0, y0, x1, ...]."""

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, inputs):
        shapes, delta = inputs
        shapes = ops.cast(shapes, "float32")
        return shapes + ops.reshape(ops.cast(delta, "float32"), ops.shape(shapes))

    def compute_output_shape(self, input_shape):
        return input_shape[0]


FROZEN_MODES = ("inference", "training")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StageDropout(keras.layers.Dropout):
    """Dropout that turns itself off when its stage is frozen, unless told otherwise.

    Frozen in "inference" mode (the default) a stage is fully deterministic,
    so the next stage trains on the estimates the earlier stage will give at
    inference time. In "training" mode (the official code's: its earlier
    stages run with deterministic=False) dropout stays on.
    """

    frozen_mode = "inference"   # set per layer by set_frozen_mode; not saved

    def call(self, inputs, training=False):
        active = self.trainable or self.frozen_mode == "training"
        return super().call(inputs, training=bool(training) and active)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StageBatchNorm(FusedBatchNorm):
    """BatchNorm that can keep normalising with batch statistics while its stage is frozen.

    Keras' frozen BatchNorm always uses its moving statistics. In "training"
    mode (the official code's, where Lasagne's batch_norm of an earlier stage
    runs with deterministic=False while a later stage trains) a frozen layer
    normalises with the batch's statistics and updates its moving ones, while
    gamma and beta stay fixed: they are not trainable. Computed by the fused
    kernel (trainer.batchnorm).
    """

    frozen_mode = "inference"

    def call(self, inputs, training=None, mask=None):
        if training and not self.trainable and self.frozen_mode == "training":
            return self.normalize(inputs, batch_statistics=True)
        return super().call(inputs, training=training, mask=mask)


def build_stage_network(input_channels: int, num_landmarks: int, image_size: int = 112,
                        fc_units: int = 256, dropout: float = 0.5, base_filters: int = 64,
                        precision: str = "float32", name: str = "stage") -> keras.Model:
    """The feed-forward part of one stage, Table 1; returns [fc1 [B, fc_units], dS [B, 2N]].

    conv 3x3 pairs of base, 2*base, 4*base, 8*base filters, each pair
    followed by 2x2 max pooling; dropout; fc1; fc2. BatchNorm + ReLU after
    every conv and fc1 (not after pooling or fc2). base_filters=64 is
    Table 1; smaller values only make quick tests and experiments cheaper.
    fc2 is float32 under mixed precision: it outputs pixel offsets.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    layers = keras.layers
    policy = precision
    images = keras.Input((image_size, image_size, input_channels), name=f"{name}_input")
    x = images
    for block, multiplier in enumerate(_TABLE1_WIDTHS, start=1):
        for part in "ab":
            conv = f"conv{block}{part}"
            x = layers.Conv2D(base_filters * multiplier, 3, padding="same", use_bias=False,
                              name=conv, dtype=policy)(x)
            x = StageBatchNorm(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
                               name=f"{conv}_bn", dtype=policy)(x)
            x = layers.ReLU(name=f"{conv}_relu", dtype=policy)(x)
        x = layers.MaxPooling2D(2, name=f"pool{block}", dtype=policy)(x)
    x = layers.Flatten(name="flatten", dtype=policy)(x)
    x = StageDropout(dropout, name="dropout", dtype=policy)(x)
    x = layers.Dense(fc_units, use_bias=False, name="fc1", dtype=policy)(x)
    x = StageBatchNorm(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name="fc1_bn",
                       dtype=policy)(x)
    fc1 = layers.ReLU(name="fc1_relu", dtype=policy)(x)
    delta = layers.Dense(2 * num_landmarks, name="fc2", dtype="float32")(fc1)
    return keras.Model(images, [fc1, delta], name=name)


def stage_prefix(stage: int) -> str:
    """Name prefix of every layer that belongs to (is trained with) the given stage."""
    return f"s{stage}_"


def stage_output_name(stage: int) -> str:
    return f"stage_{stage}"


def build_dan_model(mean_shape, pixel_mean, pixel_std, config: DanConfig | None = None,
                    precision: str = "float32", name: str = "dan") -> keras.Model:
    """Builds the config.stages-stage DAN.

    mean_shape: S0, the canonical mean shape [N, 2] (any N). pixel_mean,
    pixel_std: per-pixel statistics of the training images [size, size].
    precision: "float32" or "mixed_bfloat16".
    """
    config = config or DanConfig()
    mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)
    num_landmarks = mean_shape.shape[0]
    image_size = np.asarray(pixel_mean).shape[0]

    def stage_network(stage, channels):
        return build_stage_network(
            channels, num_landmarks, image_size, fc_units=config.fc_units,
            dropout=config.dropout, base_filters=config.base_filters,
            precision=precision, name=f"{stage_prefix(stage)}network")

    image = keras.Input((image_size, image_size, 1), name="image")
    standardized = ImageStandardization(pixel_mean, pixel_std, name="standardize")(image)
    initial = InitialShape(mean_shape, name="initial_shape")(image)
    fc1, delta = stage_network(1, 1)(standardized)
    shape = ShapeUpdate(name=f"{stage_prefix(1)}landmarks")([initial, delta])
    outputs = {stage_output_name(1): shape}
    for stage in range(2, config.stages + 1):
        p = stage_prefix(stage)
        transform, inverse = TransformEstimation(mean_shape, name=f"{p}transform")(shape)
        warped = ImageTransform(name=f"{p}warped_image")([standardized, transform])
        aligned = LandmarkTransform(name=f"{p}aligned_shape")([shape, transform])
        heatmap = LandmarkHeatmap(image_size, config.heatmap_radius, name=f"{p}heatmap")(aligned)
        feature = FeatureImage(image_size, name=f"{p}feature_image", dtype=precision)(fc1)
        stage_input = keras.layers.Concatenate(name=f"{p}input", dtype=precision)(
            [warped, heatmap, feature])
        if config.input_batchnorm:   # the official code's batch_norm(ConcatLayer(...))
            stage_input = StageBatchNorm(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
                                         name=f"{p}input_bn", dtype=precision)(stage_input)
        fc1, delta = stage_network(stage, 3)(stage_input)
        aligned_estimate = ShapeUpdate(name=f"{p}aligned_estimate")([aligned, delta])
        shape = LandmarkTransform(name=f"{p}landmarks")([aligned_estimate, inverse])
        outputs[stage_output_name(stage)] = shape
    outputs["landmarks"] = keras.layers.Identity(name="landmarks", dtype="float32")(shape)
    return keras.Model(image, outputs, name=name)


def num_stages(model: keras.Model) -> int:
    return sum(1 for key in model.output if key.startswith("stage_"))


def stage_model(model: keras.Model, stage: int) -> keras.Model:
    """The sub-model image -> S_stage, sharing the DAN's layers (for training one stage)."""
    landmarks = model.get_layer(f"{stage_prefix(stage)}landmarks").output
    return keras.Model(model.inputs, landmarks, name=f"{model.name}_{stage_output_name(stage)}")


def set_stage_trainable(model: keras.Model, stage: int, trainable: bool) -> None:
    """(Un)freezes every layer of one stage: its Table-1 network and its feature-image layer."""
    for layer in model.layers:
        if layer.name.startswith(stage_prefix(stage)):
            layer.trainable = trainable


def set_frozen_mode(model: keras.Model, stage: int, mode: str) -> None:
    """How one stage's dropout and BatchNorm behave while it is frozen and a later stage
    trains: "inference" (deterministic) or "training" (dropout on, batch statistics)."""
    if mode not in FROZEN_MODES:
        raise ValueError(f"frozen mode must be one of {FROZEN_MODES}, got {mode!r}")
    for layer in model.layers:
        if layer.name.startswith(stage_prefix(stage)):
            for sublayer in [layer, *getattr(layer, "layers", [])]:
                if isinstance(sublayer, (StageDropout, StageBatchNorm)):
                    sublayer.frozen_mode = mode
