"""AAN layers against numpy references: attention block (eq. 1), cosine embedding (eq. 4)."""
import keras
import numpy as np
import pytest

from trainer.aan_layers import AttentionBlock, BottleneckBlock, CosineEmbedding


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_attention_block_is_one_plus_sigmoid_bn_relu_conv_times_h():
    rng = np.random.default_rng(0)
    features = rng.normal(0, 1, (2, 5, 6, 3)).astype(np.float32)
    block = AttentionBlock(name="att")
    block(features)
    kernel = rng.normal(0, 1, (1, 1, 3, 1)).astype(np.float32)
    gamma, beta = np.float32([1.3]), np.float32([0.2])
    moving_mean, moving_var = np.float32([0.1]), np.float32([2.0])
    block.conv.set_weights([kernel])
    block.bn.set_weights([gamma, beta, moving_mean, moving_var])
    got = np.asarray(block(features, training=False))

    conv = features @ kernel[0, 0]                                   # [2, 5, 6, 1]
    bn = gamma * (conv - moving_mean) / np.sqrt(moving_var + block.bn.epsilon) + beta
    attention = _sigmoid(np.maximum(bn, 0.0))
    np.testing.assert_allclose(got, (1.0 + attention) * features, rtol=1e-5, atol=1e-6)
    assert np.asarray(block.attention_map(features)).shape == (2, 5, 6, 1)

    off = AttentionBlock(enabled=False)
    np.testing.assert_array_equal(np.asarray(off(features)), features)
    assert not off.weights


def test_cosine_embedding_is_cos_wx_plus_b():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (4, 10)).astype(np.float32)
    layer = CosineEmbedding(7)
    layer(x)
    raw, bias = (np.asarray(w) for w in layer.weights)
    kernel = np.asarray(layer.effective_kernel)
    assert raw.shape == kernel.shape == (10, 7) and bias.shape == (7,)
    np.testing.assert_allclose(kernel, raw / np.sqrt(10), rtol=1e-6)
    assert np.all((bias >= 0) & (bias < 2 * np.pi))
    got = layer(x)
    assert got.dtype == "float32"
    np.testing.assert_allclose(np.asarray(got), np.cos(x @ kernel + bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels, projected", [(3, True), (16, False)])
def test_bottleneck_block_shapes_and_shortcut(channels, projected):
    x = np.random.default_rng(2).normal(0, 1, (1, 8, 8, channels)).astype(np.float32)
    block = BottleneckBlock(4)
    y = np.asarray(block(x, training=False))
    assert y.shape == (1, 8, 8, 16) and (y >= 0).all()
    assert (block.projection is not None) == projected
    kernels = [w.shape for w in block.weights if "kernel" in w.path]
    assert (1, 1, channels, 4) in kernels and (3, 3, 4, 4) in kernels and (1, 1, 4, 16) in kernels
