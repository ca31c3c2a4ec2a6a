"""FusedBatchNorm (trainer/batchnorm.py): Keras' BatchNormalization, computed by the fused kernel.

Checked against numpy and against keras.layers.BatchNormalization itself:
outputs, moving-statistics updates, gradients, mixed bfloat16, ranks other
than 4, and the order in which a traced graph reads the variables (what
warm start matches exported weights by).
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.batchnorm import FusedBatchNorm

EPSILON = 1e-3
MOMENTUM = 0.9


def _pair(shape, dtype="float32", seed=0):
    """A FusedBatchNorm and a Keras BatchNormalization with the same random weights."""
    rng = np.random.default_rng(seed)
    fused = FusedBatchNorm(momentum=MOMENTUM, epsilon=EPSILON, dtype=dtype)
    plain = keras.layers.BatchNormalization(momentum=MOMENTUM, epsilon=EPSILON, dtype=dtype)
    fused.build(shape)
    plain.build(shape)
    channels = shape[-1]
    weights = [rng.uniform(0.5, 2.0, channels), rng.normal(0, 1, channels),
               rng.normal(0, 1, channels), rng.uniform(0.5, 3.0, channels)]
    for layer in (fused, plain):   # gamma, beta, moving_mean, moving_variance
        layer.set_weights([w.astype(np.float32) for w in weights])
    return fused, plain, weights


def _inputs(shape, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.normal(2.0, 3.0, shape)).astype(np.float32)


@pytest.mark.parametrize("shape", [(8, 6, 5, 4), (16, 7), (4, 3, 5)])
def test_training_mode_matches_numpy_and_updates_the_moving_statistics(shape):
    fused, _, (gamma, beta, mean0, var0) = _pair(shape)
    x = _inputs(shape)
    y = fused(x, training=True).numpy()
    axes = tuple(range(len(shape) - 1))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + EPSILON) * gamma + beta,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean.numpy(), MOMENTUM * mean0 + 0.1 * mean,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused.moving_variance.numpy(), MOMENTUM * var0 + 0.1 * var,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(8, 6, 5, 4), (16, 7)])
def test_inference_mode_uses_the_moving_statistics(shape):
    fused, plain, (gamma, beta, mean, var) = _pair(shape)
    x = _inputs(shape)
    expected = (x - mean) / np.sqrt(var + EPSILON) * gamma + beta
    np.testing.assert_allclose(fused(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(plain(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(fused.moving_mean.numpy(), mean.astype(np.float32))


def test_frozen_layer_uses_the_moving_statistics_even_in_training():
    fused, _, (gamma, beta, mean, var) = _pair((4, 3, 3, 2))
    fused.trainable = False
    x = _inputs((4, 3, 3, 2))
    np.testing.assert_allclose(fused(x, training=True).numpy(),
                               (x - mean) / np.sqrt(var + EPSILON) * gamma + beta,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(fused.moving_variance.numpy(), var.astype(np.float32))


def test_gradients_equal_keras_batchnorm():
    shape = (8, 6, 6, 3)
    fused, plain, _ = _pair(shape)
    x = tf.constant(_inputs(shape))
    upstream = tf.constant(_inputs(shape, seed=2))
    grads = []
    for layer in (fused, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * upstream)
        grads.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-3, atol=1e-3)


def test_mixed_bfloat16_computes_in_bfloat16_with_float32_statistics():
    shape = (16, 8, 8, 4)
    fused, plain, _ = _pair(shape, dtype="mixed_bfloat16")
    x = _inputs(shape)
    ours, theirs = fused(x, training=True), plain(x, training=True)
    assert ours.dtype == tf.bfloat16
    assert fused.moving_mean.dtype == "float32"
    np.testing.assert_allclose(tf.cast(ours, tf.float32).numpy(),
                               tf.cast(theirs, tf.float32).numpy(), atol=0.05)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), atol=1e-2)


def test_a_traced_graph_reads_the_variables_in_keras_order():
    shape = (2, 4, 4, 3)
    for layer in _pair(shape)[:2]:
        traced = tf.function(lambda x, layer=layer: layer(x, training=False)).get_concrete_function(
            tf.TensorSpec(shape, tf.float32))
        by_handle = {id(v.value.handle): v.name for v in layer.variables}
        order = [by_handle[id(h)] for h in traced.captured_inputs if id(h) in by_handle]
        assert order == ["moving_mean", "moving_variance", "gamma", "beta"], order


def test_saves_and_loads_as_itself(tmp_path):
    inputs = keras.Input((5, 5, 3))
    model = keras.Model(inputs, FusedBatchNorm(name="bn")(inputs))
    path = str(tmp_path / "bn.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("bn"), FusedBatchNorm)
