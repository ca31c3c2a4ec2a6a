"""AAN layers against numpy references: the stem and bottleneck unit (numpy convolutions),
the attention block (eq. 1, M in (0, 1)), the intermediate heads' features, the cosine
embedding (eq. 4), and the weight decay every kernel carries."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.aan_layers import (
    AttentionBlock,
    BottleneckBlock,
    ConvStem,
    CosineEmbedding,
    HeadFeatures,
)

EPSILON = 1e-3   # the layers' BatchNormalization epsilon


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _conv_same(x, kernel):
    """numpy 'same' convolution, stride 1: x [B, H, W, C], kernel [k, k, C, F] (k odd)."""
    size = kernel.shape[0]
    pad = size // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    height, width = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],), np.float64)
    for i in range(size):
        for j in range(size):
            out += padded[:, i:i + height, j:j + width, :] @ kernel[i, j]
    return out


def _random_bn(layer, rng):
    """Random inference statistics and affine parameters; returns them for the reference."""
    channels = layer.gamma.shape[0]
    params = [rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.3, channels),
              rng.normal(0, 0.3, channels), rng.uniform(0.5, 2.0, channels)]
    layer.set_weights([p.astype(np.float32) for p in params])
    return params


def _bn(x, params):
    gamma, beta, mean, var = params
    return gamma * (x - mean) / np.sqrt(var + EPSILON) + beta


def _relu(x):
    return np.maximum(x, 0.0)


def _kernels(layer):
    return {w.path.split("/")[-2]: np.asarray(w) for w in layer.weights if "kernel" in w.path}


@pytest.mark.parametrize("size", [3, 7])
def test_stem_is_relu_bn_conv(size):
    rng = np.random.default_rng(size)
    x = rng.normal(0, 1, (2, 9, 10, 1)).astype(np.float32)
    stem = ConvStem(4, size)
    stem(x)
    bn = _random_bn(stem.bn, rng)
    kernel = _kernels(stem)["conv"]
    assert kernel.shape == (size, size, 1, 4) and len(stem.weights) == 5   # no bias
    got = np.asarray(stem(x, training=False))
    np.testing.assert_allclose(got, _relu(_bn(_conv_same(x, kernel), bn)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels, projected", [(3, True), (16, False)])
def test_bottleneck_unit_against_numpy(channels, projected):
    rng = np.random.default_rng(channels)
    x = rng.normal(0, 1, (2, 6, 5, channels)).astype(np.float32)
    block = BottleneckBlock(4)
    block(x)
    assert (block.projection is not None) == projected
    bns = {name: _random_bn(getattr(block, f"{name}_bn"), rng)
           for name in ("reduce", "conv", "expand") + (("projection",) if projected else ())}
    k = _kernels(block)
    assert k["reduce"].shape == (1, 1, channels, 4) and k["conv"].shape == (3, 3, 4, 4)
    assert k["expand"].shape == (1, 1, 4, 16)

    y = _relu(_bn(_conv_same(x, k["reduce"]), bns["reduce"]))
    y = _relu(_bn(_conv_same(y, k["conv"]), bns["conv"]))
    y = _bn(_conv_same(y, k["expand"]), bns["expand"])
    shortcut = _bn(_conv_same(x, k["projection"]), bns["projection"]) if projected else x
    got = np.asarray(block(x, training=False))
    assert got.shape == (2, 6, 5, 16)
    np.testing.assert_allclose(got, _relu(y + shortcut), rtol=1e-4, atol=1e-5)


def _attention_with(features, kernel, bn_params):
    block = AttentionBlock(name="att")
    block(features)
    block.conv.set_weights([kernel])
    block.bn.set_weights([np.float32(p) for p in bn_params])
    return block


def test_attention_block_is_one_plus_sigmoid_bn_conv_times_h():
    rng = np.random.default_rng(0)
    features = rng.normal(0, 1, (2, 5, 6, 3)).astype(np.float32)
    kernel = rng.normal(0, 1, (1, 1, 3, 1)).astype(np.float32)
    bn = [np.float32([1.3]), np.float32([0.2]), np.float32([0.1]), np.float32([2.0])]
    block = _attention_with(features, kernel, bn)
    got = np.asarray(block(features, training=False))

    attention = _sigmoid(_bn(features @ kernel[0, 0], bn))             # [2, 5, 6, 1]
    np.testing.assert_allclose(got, (1.0 + attention) * features, rtol=1e-5, atol=1e-6)
    m = np.asarray(block.attention_map(features, training=False))
    assert m.shape == (2, 5, 6, 1)
    np.testing.assert_allclose(m, attention, rtol=1e-5, atol=1e-6)
    # the whole (0, 1) range of sec. 3.1, not [0.5, 1) as behind a ReLU
    assert (m > 0).all() and (m < 1).all() and (m < 0.5).any() and (m > 0.5).any()


def test_attention_map_has_gradient_where_a_relu_would_be_off():
    rng = np.random.default_rng(1)
    features = rng.normal(0, 1, (1, 4, 4, 3)).astype(np.float32)
    kernel = rng.normal(0, 1, (1, 1, 3, 1)).astype(np.float32)
    # beta = -5: BN's output is negative everywhere, where ReLU(BN) would be 0 with no gradient
    bn = [np.float32([1.0]), np.float32([-5.0]), np.float32([0.0]), np.float32([1.0])]
    block = _attention_with(features, kernel, bn)
    assert (_bn(features @ kernel[0, 0], bn) < 0).all()
    x = tf.constant(features)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        m = block.attention_map(x, training=False)
        total = tf.reduce_sum(m)
    grad_kernel = tape.gradient(total, block.conv.kernel).numpy()
    grad_x = tape.gradient(total, x).numpy()
    assert np.abs(grad_kernel).min() > 0
    assert (np.abs(grad_x).sum(-1) > 0).all()          # at every position
    # d sigmoid(z) / dz = s (1 - s) with z = BN(conv), the reference for the kernel gradient
    z = _bn(features @ kernel[0, 0], bn)
    s = _sigmoid(z)
    expected = (features * (s * (1 - s)) / np.sqrt(1.0 + EPSILON)).sum((0, 1, 2))
    np.testing.assert_allclose(grad_kernel[0, 0, :, 0], expected, rtol=1e-4)
    assert np.asarray(m).max() < 0.5


def _head_reference(features, head, bn):
    batch, side, _, channels = features.shape
    pool = side // head.grid
    pooled = features.reshape(batch, head.grid, pool, head.grid, pool, channels).mean((2, 4))
    reduced = _relu(_bn(_conv_same(pooled, _kernels(head)["reduce"]), bn))
    return reduced.reshape(batch, -1)


def test_head_features_pool_to_the_grid_and_keep_position():
    rng = np.random.default_rng(2)
    features = rng.uniform(0, 1, (2, 12, 12, 5)).astype(np.float32)
    head = HeadFeatures(grid=3, channels=4)
    head(features)
    bn = _random_bn(head.bn, rng)
    got = np.asarray(head(features, training=False))
    assert got.shape == (2, 3 * 3 * 4) == head.compute_output_shape((2, 12, 12, 5))
    np.testing.assert_allclose(got, _head_reference(features, head, bn), rtol=1e-4, atol=1e-5)

    # the same blob in two places: equal global averages (what a GAP head saw), different
    # features, and the difference sits in the cells the blob moved between
    blob = np.zeros((1, 12, 12, 5), np.float32)
    moved = blob.copy()
    blob[0, 0:4, 0:4] = 3.0
    moved[0, 8:12, 8:12] = 3.0
    assert blob.mean((1, 2)) == pytest.approx(moved.mean((1, 2)))
    a = np.asarray(head(blob, training=False)).reshape(3, 3, 4)
    b = np.asarray(head(moved, training=False)).reshape(3, 3, 4)
    changed = np.abs(a - b).sum(-1) > 1e-6
    assert changed[0, 0] or changed[2, 2]
    assert not changed[1, 1]

    with pytest.raises(ValueError, match="multiple of grid=3"):
        HeadFeatures(grid=3, channels=4)(np.zeros((1, 10, 10, 2), np.float32))


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
    assert not layer.losses


def _layers_under_test(regularizer=None):
    reg = {"kernel_regularizer": regularizer}
    return [(ConvStem(4, 7, **reg), (1, 8, 8, 1)), (BottleneckBlock(2, **reg), (1, 4, 4, 3)),
            (AttentionBlock(**reg), (1, 4, 4, 3)), (HeadFeatures(2, 3, **reg), (1, 4, 4, 3)),
            (CosineEmbedding(5, **reg), (1, 12))]


def test_weight_decay_is_l2_on_kernels_only_and_the_cosine_w():
    """(wd / 2) |W|^2 per conv/dense kernel, nothing on BN, biases or the cosine phases."""
    decay = 0.02
    for layer, shape in _layers_under_test(keras.regularizers.L2(decay / 2)):
        layer(np.random.default_rng(0).normal(0, 1, shape).astype(np.float32))
        if isinstance(layer, CosineEmbedding):
            kernels = [np.asarray(layer.effective_kernel)]          # W of eq. 4, not V
        else:
            kernels = list(_kernels(layer).values())
        expected = decay / 2 * sum(np.sum(k.astype(np.float64) ** 2) for k in kernels)
        got = float(sum(np.asarray(loss) for loss in layer.losses))
        assert got == pytest.approx(expected, rel=1e-5), type(layer).__name__


@pytest.mark.parametrize("index", range(5))
def test_layers_round_trip_through_their_config(index):
    layer, shape = _layers_under_test(keras.regularizers.L2(0.003))[index]
    x = np.random.default_rng(index).normal(0, 1, shape).astype(np.float32)
    expected = np.asarray(layer(x, training=False))
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x, training=False)), expected, rtol=1e-6)
    assert float(sum(clone.losses)) == pytest.approx(float(sum(layer.losses)), rel=1e-6)
