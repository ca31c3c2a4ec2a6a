"""BatchNorm through TensorFlow's fused kernel (FusedBatchNormV3; oneDNN's on x86 CPUs).

Keras 3's BatchNormalization builds the normalisation out of separate ops: it
casts bfloat16 activations to float32, takes the moments with two reductions,
normalises with about ten elementwise ops and casts back, each a full pass
over the activation, and as many again backwards. tf.keras 2 used the fused
kernel for 4-D inputs; Keras 3 does not. On the 2-core CPU this made
BatchNorm, not the convolutions, the bulk of a training step: one Adam step
of batch 64 in mixed_bfloat16 (Intel Xeon with AMX/AVX-512 BF16,
benchmarks/model_speed.py) ran the DAN's Table-1 stage at 28.6 img/s with
Keras' layer and 76.7 with the fused kernel, the AAN at 7.1 and 16.2. In
float32 on an AMD EPYC (Zen 3, AVX2 only), where the convolutions dominate,
it is neutral: the Table-1 stage at 3.87 against 3.75 img/s (batch 32).

FusedBatchNorm is Keras' layer (same variables, same config, same read
order of the variables, so models saved and exported before load and warm-start
unchanged) with the normalisation done by the fused kernel: statistics in
float32, the moving averages updated with the biased batch variance as Keras
does (the kernel returns Bessel's corrected one). Any rank works (the input
is viewed as [-1, 1, 1, C]); a mask, renorm or a channel axis other than the
last fall back to Keras' own computation.
"""
from __future__ import annotations

import keras
import tensorflow as tf

_PACKAGE = "facealign"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FusedBatchNorm(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization computed by the fused kernel (see the module doc)."""

    def call(self, inputs, training=None, mask=None):
        if not self.fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        return self.normalize(inputs, batch_statistics=bool(training) and self.trainable)

    def fusable(self, inputs, mask=None) -> bool:
        rank = len(inputs.shape)
        return (mask is None and not self.renorm and self.axis in ([rank - 1], [-1], rank - 1, -1)
                and rank >= 2)

    def normalize(self, inputs, batch_statistics: bool):
        """Normalises with the batch's statistics (updating the moving ones) or the moving ones."""
        # Read in Keras' order (moving mean, variance, gamma, beta): warm start matches an
        # exported model's weights by the order its graph reads them (trainer.warm_start).
        moving_mean = tf.cast(self.moving_mean, tf.float32)
        moving_variance = tf.cast(self.moving_variance, tf.float32)
        channels = int(inputs.shape[-1])
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        x = tf.cast(inputs, self.compute_dtype)
        shape = tf.shape(x)
        if len(inputs.shape) != 4:
            x = tf.reshape(x, [-1, 1, 1, channels])
        if batch_statistics:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
            count = tf.cast(tf.size(x) // channels, tf.float32)
            variance = variance * tf.math.divide_no_nan(count - 1.0, count)   # biased, as Keras
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(moving_variance * self.momentum
                                        + variance * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=moving_mean, variance=moving_variance,
                epsilon=self.epsilon, data_format="NHWC", is_training=False)
        if len(inputs.shape) != 4:
            y = tf.reshape(y, shape)
        return y
