"""AAN building blocks (Attentional Alignment Network, sec. 3.1-3.3).

- ``BottleneckBlock``: the residual bottleneck block of He et al. 2016 (ResNet
  v1): 1x1 reduce, 3x3, 1x1 expand (4x the width), each conv followed by BN,
  ReLU after the first two and after the addition; the shortcut is a 1x1
  projection + BN when the channel count changes, the identity otherwise.
- ``AttentionBlock``: M(x) = sigmoid(ReLU(BN(conv1x1(H)))), one map per
  position; output F = (1 + M) * H (eq. 1/3). Taken literally from the
  paper, the ReLU before the sigmoid puts M in [0.5, 1): the paper says
  "1x1 convolutional layer with BN and relu activation ... normalized by a
  sigmoid layer", and we keep that order. ``enabled=False`` returns H (the
  no-attention ablation) and creates no weights.
- ``CosineEmbedding``: phi = cos(W x + b) (eq. 4), a dense layer with cosine
  activation, always float32 (cos of bfloat16 arguments would be coarse).
  Parametrised as W = V / sqrt(D) (D the input size), V ~ N(0, 1), b uniform
  in [0, 2 pi), as for random Fourier features (eq. 3), then learnt: the
  function is exactly eq. 4, but an Adam step (which moves every weight by
  about lr) on a plain W of D = 50,000 inputs turns Wx by several radians per
  step and the cos features become noise (a tiny AAN did not train); on V it
  moves Wx by ~lr * sqrt(D). ``effective_kernel`` is W.

Loading a saved model needs this module imported (it registers the layers).
"""
from __future__ import annotations

import math

import keras
from keras import ops

_PACKAGE = "facealign"
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-3
EXPANSION = 4


def _bn(name, dtype):
    return keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
                                           name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BottleneckBlock(keras.layers.Layer):
    """ResNet bottleneck: [B, H, W, C] -> [B, H, W, EXPANSION * width]."""

    def __init__(self, width: int, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        conv = dict(use_bias=False, padding="same", dtype=self.dtype_policy,
                    kernel_initializer="he_normal")
        self.reduce = keras.layers.Conv2D(self.width, 1, name="reduce", **conv)
        self.reduce_bn = _bn("reduce_bn", self.dtype_policy)
        self.conv = keras.layers.Conv2D(self.width, 3, name="conv", **conv)
        self.conv_bn = _bn("conv_bn", self.dtype_policy)
        self.expand = keras.layers.Conv2D(EXPANSION * self.width, 1, name="expand", **conv)
        self.expand_bn = _bn("expand_bn", self.dtype_policy)
        self.projection = None
        self.projection_bn = None
        self._conv_kwargs = conv

    @property
    def filters(self) -> int:
        return EXPANSION * self.width

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.reduce.build(shape)
        self.reduce_bn.build(shape[:-1] + (self.width,))
        self.conv.build(shape[:-1] + (self.width,))
        self.conv_bn.build(shape[:-1] + (self.width,))
        self.expand.build(shape[:-1] + (self.width,))
        self.expand_bn.build(shape[:-1] + (self.filters,))
        if shape[-1] != self.filters:
            self.projection = keras.layers.Conv2D(self.filters, 1, name="projection",
                                                  **self._conv_kwargs)
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
class AttentionBlock(keras.layers.Layer):
    """F(H) = (1 + M(H)) * H, M = sigmoid(ReLU(BN(1x1 conv(H)))) [B, h, w, 1] (eq. 1)."""

    def __init__(self, enabled: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.enabled = bool(enabled)
        if self.enabled:
            self.conv = keras.layers.Conv2D(1, 1, use_bias=False, name="conv",
                                            dtype=self.dtype_policy)
            self.bn = _bn("bn", self.dtype_policy)

    def build(self, input_shape):
        if self.enabled:
            self.conv.build(tuple(input_shape))
            self.bn.build(tuple(input_shape[:-1]) + (1,))

    def attention_map(self, features, training=None):
        """M(H) in [0.5, 1): [B, h, w, 1]."""
        return ops.sigmoid(ops.relu(self.bn(self.conv(features), training=training)))

    def call(self, features, training=None):
        if not self.enabled:
            return features
        return (1.0 + self.attention_map(features, training=training)) * features

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["enabled"] = self.enabled
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CosineEmbedding(keras.layers.Layer):
    """phi = cos(x W + b), [B, D] -> [B, units] (eq. 4), computed in float32."""

    def __init__(self, units: int, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.fan_in = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(self.fan_in, self.units),
                                      initializer=keras.initializers.RandomNormal(0.0, 1.0))
        self.bias = self.add_weight(
            name="bias", shape=(self.units,),
            initializer=keras.initializers.RandomUniform(0.0, 2.0 * math.pi))

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
