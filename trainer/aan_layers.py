"""AAN building blocks (Attentional Alignment Network, sec. 3.1-3.3).

- ``ConvStem``: conv k x k (stride 1) -> BN -> ReLU on the 1-channel image.
  Not in the paper (issue #14): without it block 1's 1x1 reduction sees one
  channel and is rank 1, and the first 3x3 convolution comes only inside
  block 1. Stride 1 (ResNet's stem has stride 2 and a pooling) because the
  paper's four pooling layers already take 112 to 7, and block 1's attention
  map is the high-resolution one (sec. 3.2, "multi-scale attention").
- ``BottleneckBlock``: the residual bottleneck unit of He et al. 2016
  (ResNet v1, the paper's [6]): 1x1 reduce, 3x3, 1x1 expand (4x the width),
  each conv followed by BN, ReLU after the first two and after the addition;
  the shortcut is a 1x1 projection + BN when the channel count changes, the
  identity otherwise. trainer/aan_model.py stacks several per building block.
- ``AttentionBlock``: M(H) = sigmoid(BN(conv1x1(H))), one map per position,
  and F = (1 + M) * H (eq. 1; the residual form that replaces eq. 2's
  M * H, whose repeated products make the features plunge, sec. 3.1). The
  paper says "1x1 convolutional layer with BN and relu ... normalized by a
  sigmoid layer into the range of [0, 1]"; a ReLU right before the sigmoid
  would put M in [0.5, 1) - 1 + M in [1.5, 2), so a position can be
  weighted at most 2 / 1.5 = 1.33x another - with a zero gradient wherever
  BN's output is negative. We follow the stated range and leave the ReLU
  out: M is in (0, 1), F between H and 2H, a 2x contrast.
- ``HeadFeatures``: what an intermediate head (sec. 3.2) regresses from:
  average pooling to a grid x grid map, 1x1 conv (C -> a few channels) ->
  BN -> ReLU, flatten. Pooling to a grid keeps where features are (global
  average pooling kept only what); the 1x1 reduction keeps the flattened
  vector, and the dense layer after it, small.
- ``CosineEmbedding``: phi = cos(W x + b) (eq. 4), a dense layer with cosine
  activation, always float32 (cos of bfloat16 arguments would be coarse).
  Parametrised as W = V / sqrt(D) (D the input size), V ~ N(0, 1), b uniform
  in [0, 2 pi), as for random Fourier features (eq. 3), then learnt: the
  function is exactly eq. 4, but an Adam step (which moves every weight by
  about lr) on a plain W of D = 50,000 inputs turns Wx by several radians per
  step and the cos features become noise (a tiny AAN did not train); on V it
  moves Wx by ~lr * sqrt(D). ``effective_kernel`` is W, and the
  kernel_regularizer (weight decay, trainer/aan_model.py) is applied to W,
  the paper's parameter, not to V: on V an L2 term is D times larger (sum V^2
  is about D * d) and would dwarf the NME loss.

Every conv/dense kernel takes a ``kernel_regularizer`` (the coupled weight
decay of sec. 4.2); biases and BN parameters are never decayed. Loading a
saved model needs this module imported (it registers the layers).
"""
from __future__ import annotations

import math

import keras
from keras import ops

from trainer.batchnorm import FusedBatchNorm

_PACKAGE = "facealign"
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-3
EXPANSION = 4


def _bn(name, dtype):
    return FusedBatchNorm(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name, dtype=dtype)


def _conv(filters, size, name, layer):
    """A bias-free 'same' conv (BN follows every one) in the layer's dtype policy."""
    return keras.layers.Conv2D(filters, size, use_bias=False, padding="same",
                               kernel_initializer="he_normal",
                               kernel_regularizer=layer.kernel_regularizer, name=name,
                               dtype=layer.dtype_policy)


class _Regularized(keras.layers.Layer):
    """A layer whose kernels share one (serialized) kernel_regularizer."""

    def __init__(self, kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def get_config(self):
        config = super().get_config()
        config["kernel_regularizer"] = keras.regularizers.serialize(self.kernel_regularizer)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConvStem(_Regularized):
    """relu(BN(conv k x k(x))), stride 1: [B, H, W, C] -> [B, H, W, filters]."""

    def __init__(self, filters: int, kernel_size: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.conv = _conv(self.filters, self.kernel_size, "conv", self)
        self.bn = _bn("bn", self.dtype_policy)

    def build(self, input_shape):
        self.conv.build(tuple(input_shape))
        self.bn.build(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, x, training=None):
        return ops.relu(self.bn(self.conv(x), training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BottleneckBlock(_Regularized):
    """ResNet bottleneck unit: [B, H, W, C] -> [B, H, W, EXPANSION * width]."""

    def __init__(self, width: int, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        self.reduce = _conv(self.width, 1, "reduce", self)
        self.reduce_bn = _bn("reduce_bn", self.dtype_policy)
        self.conv = _conv(self.width, 3, "conv", self)
        self.conv_bn = _bn("conv_bn", self.dtype_policy)
        self.expand = _conv(EXPANSION * self.width, 1, "expand", self)
        self.expand_bn = _bn("expand_bn", self.dtype_policy)
        self.projection = None
        self.projection_bn = None

    @property
    def filters(self) -> int:
        return EXPANSION * self.width

    def build(self, input_shape):
        shape = tuple(input_shape)
        inner = shape[:-1] + (self.width,)
        self.reduce.build(shape)
        self.reduce_bn.build(inner)
        self.conv.build(inner)
        self.conv_bn.build(inner)
        self.expand.build(inner)
        self.expand_bn.build(shape[:-1] + (self.filters,))
        if shape[-1] != self.filters:
            self.projection = _conv(self.filters, 1, "projection", self)
            self.projection_bn = _bn("projection_bn", self.dtype_policy)
            self.projection.build(shape)
            self.projection_bn.build(shape[:-1] + (self.filters,))

    def call(self, x, training=None):
        y = ops.relu(self.reduce_bn(self.reduce(x), training=training))
        y = ops.relu(self.conv_bn(self.conv(y), training=training))
        y = self.expand_bn(self.expand(y), training=training)
        shortcut = x
        if self.projection is not None:
            shortcut = self.projection_bn(self.projection(x), training=training)
        return ops.relu(y + shortcut)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config["width"] = self.width
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AttentionBlock(_Regularized):
    """F(H) = (1 + M(H)) * H, M = sigmoid(BN(1x1 conv(H))) in (0, 1), [B, h, w, 1] (eq. 1)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(1, 1, use_bias=False, name="conv",
                                        kernel_regularizer=self.kernel_regularizer,
                                        dtype=self.dtype_policy)
        self.bn = _bn("bn", self.dtype_policy)

    def build(self, input_shape):
        self.conv.build(tuple(input_shape))
        self.bn.build(tuple(input_shape[:-1]) + (1,))

    def attention_map(self, features, training=None):
        """M(H) in (0, 1): [B, h, w, 1]."""
        return ops.sigmoid(self.bn(self.conv(features), training=training))

    def call(self, features, training=None):
        return (1.0 + self.attention_map(features, training=training)) * features

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class HeadFeatures(_Regularized):
    """flatten(relu(BN(conv1x1(avg_pool(F))))): [B, h, w, C] -> [B, grid * grid * channels].

    The pool is h / grid wide (h must be a multiple of grid), so every head
    sees the same grid as the final output's 7x7 features, however fine
    its block's map is.
    """

    def __init__(self, grid: int, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.grid = int(grid)
        self.channels = int(channels)
        self.reduce = _conv(self.channels, 1, "reduce", self)
        self.bn = _bn("bn", self.dtype_policy)
        self.pool = None

    def build(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        if height != width or height % self.grid:
            raise ValueError(f"HeadFeatures needs a square map whose side is a multiple of "
                             f"grid={self.grid}, got {height}x{width}")
        self.pool_size = height // self.grid
        pooled = (input_shape[0], self.grid, self.grid, input_shape[-1])
        self.reduce.build(pooled)
        self.bn.build(pooled[:-1] + (self.channels,))

    def call(self, features, training=None):
        pooled = ops.average_pool(features, self.pool_size, strides=self.pool_size,
                                  padding="valid")
        reduced = ops.relu(self.bn(self.reduce(pooled), training=training))
        return ops.reshape(reduced, (-1, self.grid * self.grid * self.channels))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.grid * self.grid * self.channels)

    def get_config(self):
        config = super().get_config()
        config.update(grid=self.grid, channels=self.channels)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CosineEmbedding(_Regularized):
    """phi = cos(x W + b), [B, D] -> [B, units] (eq. 4), computed in float32."""

    def __init__(self, units: int, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.fan_in = int(input_shape[-1])
        penalty = None if self.kernel_regularizer is None else self._kernel_penalty
        self.kernel = self.add_weight(name="kernel", shape=(self.fan_in, self.units),
                                      initializer=keras.initializers.RandomNormal(0.0, 1.0),
                                      regularizer=penalty)
        self.bias = self.add_weight(
            name="bias", shape=(self.units,),
            initializer=keras.initializers.RandomUniform(0.0, 2.0 * math.pi))

    def _kernel_penalty(self, raw_kernel):
        """kernel_regularizer(W) for the stored V = W * sqrt(D)."""
        return self.kernel_regularizer(raw_kernel / math.sqrt(self.fan_in))

    @property
    def effective_kernel(self):
        """W of eq. 4: [D, units]."""
        return self.kernel / math.sqrt(self.fan_in)

    def call(self, x):
        x = ops.cast(x, "float32")
        return ops.cos(ops.matmul(x, self.effective_kernel) + self.bias)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        return config
