"""DAN connection layers against NumPy/SciPy references, on a real 300-W face."""
import pathlib

import keras
import numpy as np
import pytest
import real_faces
from scipy import ndimage

from facealign.core import geometry
from trainer.dan_layers import (
    FeatureImage,
    ImageTransform,
    LandmarkHeatmap,
    LandmarkTransform,
    TransformEstimation,
)

SIZE = 112


def canonical_face(pts_path: pathlib.Path, size: int = SIZE):
    crop, points = real_faces.canonical_face(pts_path, size)
    return crop.astype(np.float32), points


@pytest.fixture(scope="module")
def face(shared_data):
    pts = sorted((shared_data / "300w" / "afw").glob("*.pts"))[0]
    return canonical_face(pts)


def similarity(angle_deg, scale, tx, ty) -> np.ndarray:
    return geometry.similarity(scale, np.radians(angle_deg), (tx, ty))


apply = geometry.apply_transform      # the numpy references: facealign.core.geometry
invert = geometry.invert_transform


# --- TransformEstimation / LandmarkTransform -----------------------------------------

def test_transform_estimation_recovers_a_random_similarity():
    rng = np.random.default_rng(1)
    canonical = rng.uniform(20, 90, (68, 2)).astype(np.float32)
    truths = [similarity(rng.uniform(-60, 60), rng.uniform(0.5, 2.0), *rng.uniform(-30, 30, 2))
              for _ in range(4)]
    # S_{t-1} = truth^-1(S0): the estimated T must be the truth itself.
    shapes = np.stack([apply(invert(m), canonical) for m in truths]).astype(np.float32)
    transform, inverse = TransformEstimation(canonical)(shapes)
    np.testing.assert_allclose(transform, np.stack(truths), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(inverse, np.stack([invert(m) for m in truths]), rtol=1e-4, atol=1e-3)

    aligned = LandmarkTransform()([shapes, transform])
    np.testing.assert_allclose(aligned, np.broadcast_to(canonical, shapes.shape), atol=1e-3)
    back = LandmarkTransform()([aligned, inverse])
    np.testing.assert_allclose(back, shapes, atol=1e-3)


def test_transform_estimation_is_the_least_squares_similarity():
    rng = np.random.default_rng(2)
    canonical = rng.uniform(20, 90, (68, 2))
    shapes = rng.uniform(10, 100, (3, 68, 2))  # not similar to S0 at all: pure least squares
    transform, inverse = TransformEstimation(canonical)(shapes.astype(np.float32))
    for shape, estimated in zip(shapes, np.asarray(transform)):
        # unknowns a, b, tx, ty of [[a, -b, tx], [b, a, ty]]
        x, y = shape[:, 0], shape[:, 1]
        ones, zeros = np.ones_like(x), np.zeros_like(x)
        design = np.concatenate([np.stack([x, -y, ones, zeros], 1),
                                 np.stack([y, x, zeros, ones], 1)])
        target = np.concatenate([canonical[:, 0], canonical[:, 1]])
        a, b, tx, ty = np.linalg.lstsq(design, target, rcond=None)[0]
        np.testing.assert_allclose(estimated, [[a, -b, tx], [b, a, ty]], rtol=1e-4, atol=1e-3)
    identity = np.einsum("bij,bjk->bik", np.asarray(transform)[:, :, :2],
                         np.asarray(inverse)[:, :, :2])
    np.testing.assert_allclose(identity, np.broadcast_to(np.eye(2), identity.shape), atol=1e-5)


def test_transform_estimation_never_reflects():
    rng = np.random.default_rng(3)
    canonical = rng.uniform(20, 90, (68, 2)).astype(np.float32)
    mirrored = canonical * np.array([-1.0, 1.0], np.float32) + np.array([112.0, 0], np.float32)
    transform, _ = TransformEstimation(canonical)(mirrored[None])
    linear = np.asarray(transform)[0, :, :2]
    assert np.linalg.det(linear) >= 0
    assert (linear[0, 0] == pytest.approx(linear[1, 1])
            and linear[0, 1] == pytest.approx(-linear[1, 0]))


# --- ImageTransform ------------------------------------------------------------------

def test_image_transform_quarter_turn_moves_landmark_pixels_exactly(face):
    image, landmarks = face
    # (x, y) -> (SIZE - 1 - y, x): a pixel-exact rotation by 90 degrees.
    quarter_turn = np.array([[0, -1, SIZE - 1], [1, 0, 0]], np.float32)
    warped = np.asarray(ImageTransform()([image[None, ..., None], quarter_turn[None]]))[0, ..., 0]
    source = np.round(landmarks).astype(int)
    target = np.round(apply(quarter_turn, source)).astype(int)
    np.testing.assert_array_equal(warped[target[:, 1], target[:, 0]],
                                  image[source[:, 1], source[:, 0]])
    np.testing.assert_array_equal(warped, np.rot90(image, k=-1))


def test_image_transform_moves_blobs_where_t_says(face):
    _, landmarks = face
    # bright 3x3 blobs on a few well separated landmarks, nowhere else
    picks = [8, 30, 36, 45, 48, 54]
    centres = np.round(landmarks[picks]).astype(int)
    image = np.zeros((SIZE, SIZE), np.float32)
    for x, y in centres:
        image[y - 1:y + 2, x - 1:x + 2] = 255.0
    matrix = similarity(25.0, 1.15, -12.0, 20.0)
    matrix[:, 2] += (SIZE - 1) / 2 - apply(matrix, np.full(2, (SIZE - 1) / 2))  # about the centre
    warped = np.asarray(ImageTransform()([image[None, ..., None],
                                          matrix[None].astype(np.float32)]))[0, ..., 0]
    ys, xs = np.mgrid[:SIZE, :SIZE]
    for expected in apply(matrix, centres.astype(np.float64)):
        window = (np.abs(xs - expected[0]) <= 4) & (np.abs(ys - expected[1]) <= 4)
        weights = warped * window
        centroid = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
        np.testing.assert_allclose(centroid, expected, atol=0.25)
        assert warped[int(round(expected[1])), int(round(expected[0]))] > 150
    # mass is conserved up to the scale change (nothing else moved or was lost)
    assert warped.sum() == pytest.approx(image.sum() * 1.15 ** 2, rel=0.05)


def test_image_transform_matches_scipy_bilinear_reference(face):
    image, _ = face
    rng = np.random.default_rng(4)
    matrices = np.stack([similarity(rng.uniform(-30, 30), rng.uniform(0.8, 1.3),
                                    *rng.uniform(-10, 10, 2)) for _ in range(3)])
    batch = np.stack([image, image[::-1], image.T])[..., None]
    warped = np.asarray(ImageTransform()([batch, matrices.astype(np.float32)]))[..., 0]
    ys, xs = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    grid = np.stack([xs.ravel(), ys.ravel()], 1)
    for source, matrix, result in zip(batch[..., 0], matrices, warped):
        sample = apply(invert(matrix), grid)       # output pixel -> input position
        reference = ndimage.map_coordinates(source.astype(np.float64),
                                            [sample[:, 1], sample[:, 0]], order=1)
        interior = np.all((sample >= 0.5) & (sample <= SIZE - 1.5), axis=1)
        assert interior.mean() > 0.5
        np.testing.assert_allclose(result.ravel()[interior], reference[interior], atol=0.02)
        outside = np.any((sample < -1.0) | (sample > SIZE), axis=1)
        assert np.all(result.ravel()[outside] == 0.0)


# --- LandmarkHeatmap -----------------------------------------------------------------

def brute_force_heatmap(shapes, size, radius):
    ys, xs = np.mgrid[:size, :size].astype(np.float64)
    out = np.zeros((len(shapes), size, size, 1))
    for b, shape in enumerate(shapes):
        distances = np.stack([np.hypot(xs - x, ys - y) for x, y in shape])
        nearest = distances.min(0)
        out[b, ..., 0] = np.where(nearest <= radius, 1.0 / (1.0 + nearest), 0.0)
    return out


@pytest.mark.parametrize("num_landmarks, radius", [(68, 16.0), (5, 7.5)])
def test_heatmap_equals_eq3_with_radius_cut(face, num_landmarks, radius):
    rng = np.random.default_rng(num_landmarks)
    shapes = rng.uniform(-10, SIZE + 10, (3, num_landmarks, 2))
    if num_landmarks == 68:
        shapes[0] = face[1]
    shapes[1, 0] = (40.0, 50.0)   # a landmark exactly on a pixel centre
    layer = LandmarkHeatmap(SIZE, radius)
    heatmap = np.asarray(layer(shapes.astype(np.float32)))
    assert heatmap.shape == (3, SIZE, SIZE, 1) and heatmap.dtype == np.float32
    np.testing.assert_allclose(heatmap, brute_force_heatmap(shapes, SIZE, radius), atol=1e-5)
    assert heatmap[1, 50, 40, 0] == pytest.approx(1.0, abs=1e-5)


def test_heatmap_config_round_trip():
    layer = LandmarkHeatmap(64, 9.0, landmarks_per_chunk=5)
    clone = LandmarkHeatmap.from_config(layer.get_config())
    assert (clone.image_size, clone.radius, clone.landmarks_per_chunk) == (64, 9.0, 5)


# --- FeatureImage --------------------------------------------------------------------

def test_feature_image_is_dense_relu_upscaled_by_repetition():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(2, 256)).astype(np.float32)
    layer = FeatureImage(SIZE)
    image = np.asarray(layer(features))
    assert image.shape == (2, SIZE, SIZE, 1)
    kernel, bias = (np.asarray(w) for w in layer.dense.weights)
    assert kernel.shape == (256, 56 * 56)
    low = np.maximum(features @ kernel + bias, 0).reshape(2, 56, 56)
    expected = low.repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_allclose(image[..., 0], expected, rtol=1e-5, atol=1e-5)
    assert (image >= 0).all() and (image > 0).any()


def test_layers_survive_keras_serialization():
    canonical = np.random.default_rng(6).uniform(20, 90, (68, 2)).astype(np.float32)
    for layer in (TransformEstimation(canonical), LandmarkTransform(), ImageTransform(),
                  LandmarkHeatmap(SIZE, 12.0), FeatureImage(SIZE)):
        clone = keras.layers.deserialize(keras.layers.serialize(layer))
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
