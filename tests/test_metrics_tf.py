"""facealign.core.metrics' and facealign.core.landmarks68's TensorFlow twins against their numpy
functions."""
import numpy as np
import pytest
import tensorflow as tf

from facealign.core import landmarks68, metrics


@pytest.fixture(scope="module")
def faces():
    """(ground truth, prediction) [6, 68, 2] of made-up faces with the eyes apart."""
    rng = np.random.default_rng(0)
    truth = rng.uniform(20, 90, (6, 68, 2))
    truth[:, landmarks68.LEFT_EYE, 0] -= 30
    truth[:, landmarks68.RIGHT_EYE, 0] += 30
    return truth, truth + rng.normal(0, 2, truth.shape)


def test_eye_distances_tf_match_numpy(faces):
    truth, _ = faces
    np.testing.assert_allclose(landmarks68.inter_pupil_distance_tf(truth).numpy(),
                               landmarks68.inter_pupil_distance(truth), rtol=1e-5)
    np.testing.assert_allclose(landmarks68.inter_ocular_distance_tf(truth).numpy(),
                               landmarks68.inter_ocular_distance(truth), rtol=1e-5)
    with pytest.raises(ValueError, match="needs 68 landmarks, got 29"):
        landmarks68.inter_ocular_distance_tf(truth[:, :29])


@pytest.mark.parametrize("normalization", metrics.NORMALIZATIONS)
def test_face_errors_tf_match_numpy(faces, normalization):
    truth, prediction = faces
    errors = metrics.face_errors_tf(prediction, truth, normalization)
    assert errors.dtype == tf.float32
    np.testing.assert_allclose(errors.numpy(),
                               metrics.face_errors(prediction, truth, normalization), rtol=1e-5)
    np.testing.assert_allclose(metrics.normalizing_distance_tf(truth, normalization).numpy(),
                               metrics.normalizing_distance(truth, normalization), rtol=1e-5)


def test_face_errors_tf_refuse_what_numpy_refuses(faces):
    truth, prediction = faces
    few = truth[:, :29]
    np.testing.assert_allclose(metrics.face_errors_tf(few + 1.0, few, metrics.BOX_DIAGONAL).numpy(),
                               metrics.face_errors(few + 1.0, few, metrics.BOX_DIAGONAL), rtol=1e-5)
    with pytest.raises(ValueError, match="needs 68 landmarks, got 29"):
        metrics.face_errors_tf(few, few, metrics.INTER_OCULAR)
    with pytest.raises(ValueError, match=r"\[B, N, 2\]"):
        metrics.face_errors_tf(prediction[:, :67], truth)
    with pytest.raises(ValueError, match="unknown normalization"):
        metrics.face_errors_tf(prediction, truth, "inter_eye")
