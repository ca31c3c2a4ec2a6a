"""Similarity transforms and Procrustes means against numpy references."""
import numpy as np
import pytest

from facealign.core import geometry


def random_similarity(rng, scale_range=(0.2, 5.0)):
    return geometry.similarity(rng.uniform(*scale_range), rng.uniform(-np.pi, np.pi),
                               rng.uniform(-300, 300, 2))


def random_shape(rng, n=68):
    return rng.uniform(0, 200, size=(n, 2))


def lstsq_similarity(source, target):
    """Reference: least squares in (a, b, tx, ty) solved by np.linalg.lstsq."""
    n = len(source)
    design = np.zeros((2 * n, 4))
    design[0::2] = np.c_[source[:, 0], -source[:, 1], np.ones(n), np.zeros(n)]
    design[1::2] = np.c_[source[:, 1], source[:, 0], np.zeros(n), np.ones(n)]
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, target.reshape(-1), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def test_estimate_recovers_a_random_similarity_exactly():
    rng = np.random.default_rng(0)
    for _ in range(50):
        shape = random_shape(rng, rng.integers(3, 100))
        true = random_similarity(rng)
        estimated = geometry.estimate_similarity(shape, geometry.apply_transform(true, shape))
        np.testing.assert_allclose(estimated, true, rtol=1e-9, atol=1e-9)


def test_estimate_is_the_least_squares_similarity_with_noise():
    rng = np.random.default_rng(1)
    for _ in range(20):
        source = random_shape(rng)
        target = (geometry.apply_transform(random_similarity(rng), source)
                  + rng.normal(0, 5, source.shape))
        np.testing.assert_allclose(geometry.estimate_similarity(source, target),
                                   lstsq_similarity(source, target), rtol=1e-8, atol=1e-8)


def test_estimate_never_reflects():
    rng = np.random.default_rng(2)
    shape = random_shape(rng)
    mirrored = shape * [-1, 1]
    transform = geometry.estimate_similarity(shape, mirrored)
    assert np.linalg.det(transform[:, :2]) > 0
    np.testing.assert_allclose(transform[0, 0], transform[1, 1])
    np.testing.assert_allclose(transform[0, 1], -transform[1, 0])


def test_estimate_refuses_degenerate_and_mismatched_shapes():
    with pytest.raises(ValueError, match="degenerate"):
        geometry.estimate_similarity(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="same points"):
        geometry.estimate_similarity(np.zeros((5, 2)), np.zeros((6, 2)))


def test_inverse_and_compose():
    rng = np.random.default_rng(3)
    points = random_shape(rng)
    for _ in range(20):
        first, second = random_similarity(rng), random_similarity(rng)
        back = geometry.apply_transform(geometry.invert_transform(first),
                                        geometry.apply_transform(first, points))
        np.testing.assert_allclose(back, points, atol=1e-9)
        np.testing.assert_allclose(geometry.compose(geometry.invert_transform(first), first),
                                   [[1, 0, 0], [0, 1, 0]], atol=1e-12)
        np.testing.assert_allclose(
            geometry.apply_transform(geometry.compose(second, first), points),
            geometry.apply_transform(second, geometry.apply_transform(first, points)),
            atol=1e-8)


def test_apply_matches_matrix_product_and_keeps_float32():
    rng = np.random.default_rng(4)
    transform = rng.normal(size=(2, 3))
    points = random_shape(rng).astype(np.float32)
    mapped = geometry.apply_transform(transform, points)
    assert mapped.dtype == np.float32
    homogeneous = np.c_[points.astype(np.float64), np.ones(len(points))]
    np.testing.assert_allclose(mapped, homogeneous @ transform.T, rtol=1e-5, atol=1e-3)


def test_similarity_about_fixes_its_centre_and_reads_back():
    transform = geometry.similarity_about([10.0, 20.0], 1.5, 0.3)
    np.testing.assert_allclose(geometry.apply_transform(transform, [10.0, 20.0]), [10.0, 20.0],
                               atol=1e-12)
    scale, angle = geometry.scale_and_angle(transform)
    assert np.isclose(scale, 1.5) and np.isclose(angle, 0.3)


def test_procrustes_mean_of_similar_copies_is_the_shape():
    rng = np.random.default_rng(5)
    shape = random_shape(rng)
    copies = np.stack([geometry.apply_transform(random_similarity(rng), shape) for _ in range(30)])
    mean = geometry.procrustes_mean(copies)
    np.testing.assert_allclose(mean.mean(axis=0), 0, atol=1e-12)
    assert np.isclose(np.linalg.norm(mean), 1.0)
    np.testing.assert_allclose(geometry.fit_shape_to_shape(shape, mean), mean, atol=1e-9)


def test_procrustes_mean_is_a_fixed_point_and_upright():
    """Aligning noisy copies to the mean and averaging gives the mean back; its rotation follows
    the inputs'."""
    rng = np.random.default_rng(6)
    shape = random_shape(rng)
    copies = np.stack([geometry.apply_transform(
        geometry.similarity(rng.uniform(0.5, 2), rng.normal(0, 0.2), rng.uniform(-50, 50, 2)),
        shape + rng.normal(0, 4, shape.shape)) for _ in range(40)])
    mean = geometry.procrustes_mean(copies)
    again = geometry.normalize_shape(np.mean([geometry.fit_shape_to_shape(c, mean) for c in copies],
                                             axis=0))
    np.testing.assert_allclose(again, mean, atol=1e-8)
    _, angle = geometry.scale_and_angle(geometry.estimate_similarity(shape, mean))
    assert abs(angle) < 0.1


def test_box_fit_is_bestfitrect():
    rng = np.random.default_rng(7)
    shape = random_shape(rng)
    np.testing.assert_allclose(geometry.fit_shape_to_box(shape, geometry.bounding_box(shape)),
                               shape, atol=1e-9)
    box = np.array([100.0, 50.0, 300.0, 350.0])  # 200 wide, 300 high
    fitted = geometry.fit_shape_to_box(shape, box)
    x0, y0, x1, y1 = geometry.bounding_box(shape)
    expected_scale = (200 / (x1 - x0) + 300 / (y1 - y0)) / 2
    fx0, fy0, fx1, fy1 = geometry.bounding_box(fitted)
    np.testing.assert_allclose([fx1 - fx0, fy1 - fy0],
                               expected_scale * np.array([x1 - x0, y1 - y0]))
    np.testing.assert_allclose([(fx0 + fx1) / 2, (fy0 + fy1) / 2], [200.0, 200.0])
    _, angle = geometry.scale_and_angle(geometry.box_fit_transform(shape, box))
    assert angle == 0


def test_canonical_mean_shape_spans_the_middle_of_the_frame():
    rng = np.random.default_rng(8)
    shape = random_shape(rng) * [1.0, 0.7] - 500  # wider than high, anywhere
    placed = geometry.canonical_mean_shape(shape, image_size=112, face_fraction=0.5)
    assert placed.dtype == np.float32
    x0, y0, x1, y1 = geometry.bounding_box(placed)
    np.testing.assert_allclose(x1 - x0, 56, atol=1e-4)
    np.testing.assert_allclose([(x0 + x1) / 2, (y0 + y1) / 2], [55.5, 55.5], atol=1e-4)
    np.testing.assert_allclose(x0, 111 - x1, atol=1e-4)  # equal borders left and right
    # a similarity
    np.testing.assert_allclose(geometry.fit_shape_to_shape(shape, placed), placed, atol=1e-3)


def test_fit_shape_to_shape():
    rng = np.random.default_rng(9)
    shape = random_shape(rng)
    target = geometry.apply_transform(random_similarity(rng), shape)
    np.testing.assert_allclose(geometry.fit_shape_to_shape(shape, target), target, atol=1e-8)
