"""facealign.core.geometry's TensorFlow twins against its numpy functions (the references)."""
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from facealign.core import geometry


def random_similarities(rng, count):
    return np.stack([geometry.similarity(rng.uniform(0.2, 5.0), rng.uniform(-np.pi, np.pi),
                                         rng.uniform(-300, 300, 2)) for _ in range(count)])


def random_affines(rng, count):
    """General invertible affines: skew, anisotropic scale and reflections included."""
    affines = []
    while len(affines) < count:
        candidate = np.concatenate([rng.normal(0, 2, (2, 2)), rng.uniform(-300, 300, (2, 1))],
                                   axis=1)
        if abs(np.linalg.det(candidate[:, :2])) > 0.1:
            affines.append(candidate)
    return np.stack(affines)


@pytest.mark.parametrize("kind", [random_similarities, random_affines])
def test_invert_transform_tf_matches_numpy(kind):
    rng = np.random.default_rng(0)
    transforms = kind(rng, 16)
    inverses = geometry.invert_transform_tf(tf.constant(transforms, tf.float32)).numpy()
    assert inverses.dtype == np.float32 and inverses.shape == (16, 2, 3)
    for transform, inverse in zip(transforms, inverses):
        np.testing.assert_allclose(inverse, geometry.invert_transform(transform), rtol=1e-4,
                                   atol=1e-3)


@pytest.mark.parametrize("kind", [random_similarities, random_affines])
def test_apply_transform_tf_matches_numpy_and_round_trips(kind):
    rng = np.random.default_rng(1)
    transforms = kind(rng, 8)
    points = rng.uniform(0, 200, (8, 68, 2))
    mapped = geometry.apply_transform_tf(transforms, points).numpy()
    expected = np.stack([geometry.apply_transform(t, p) for t, p in zip(transforms, points)])
    np.testing.assert_allclose(mapped, expected, rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(geometry.apply_transform(transforms, points), expected, atol=1e-9)
    back = geometry.apply_transform_tf(geometry.invert_transform_tf(transforms), mapped).numpy()
    np.testing.assert_allclose(back, points, atol=2e-2)


def test_batched_numpy_apply_refuses_other_than_2x3():
    with pytest.raises(ValueError, match=r"\[\.\.\., 2, 3\]"):
        geometry.apply_transform(np.eye(3), np.zeros((5, 2)))


def test_estimate_similarity_tf_matches_numpy():
    rng = np.random.default_rng(2)
    target = rng.uniform(20, 90, (68, 2))
    exact = [geometry.apply_transform(t, target) for t in random_similarities(rng, 4)]
    noisy = [rng.uniform(10, 100, (68, 2)) for _ in range(4)]       # pure least squares
    sources = np.stack(exact + noisy)
    estimated = geometry.estimate_similarity_tf(sources.astype(np.float32), target).numpy()
    for source, transform in zip(sources, estimated):
        reference = geometry.estimate_similarity(source, target)
        np.testing.assert_allclose(transform, reference, rtol=1e-4, atol=1e-3)
    # one target per face gives the same as a shared one
    per_face = geometry.estimate_similarity_tf(sources, np.broadcast_to(target, sources.shape))
    np.testing.assert_allclose(per_face.numpy(), estimated, rtol=1e-5, atol=1e-4)


def test_estimate_similarity_tf_of_a_collapsed_shape_is_finite():
    target = np.random.default_rng(3).uniform(20, 90, (68, 2))
    transform = geometry.estimate_similarity_tf(np.full((1, 68, 2), 7.0), target).numpy()
    assert np.all(np.isfinite(transform))
    np.testing.assert_allclose(transform[0, :, :2], 0.0)
    np.testing.assert_allclose(transform[0, :, 2], target.mean(axis=0), rtol=1e-5)


def test_numpy_modules_do_not_import_tensorflow():
    code = ("import sys; import facealign.core.geometry, facealign.core.metrics, "
            "facealign.core.landmarks68; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
