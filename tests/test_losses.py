"""trainer.losses: the Keras loss and metric are facealign.core.metrics' error, legacy names
included."""
import keras
import numpy as np
import pytest

from facealign.core import metrics
from trainer.losses import NormalizedLandmarkLoss, NormalizedMeanError, normalized_mean_error


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(0)
    truth = rng.uniform(20, 90, (4, 68, 2)).astype(np.float32)
    return truth, truth + rng.normal(0, 2, truth.shape).astype(np.float32)


@pytest.mark.parametrize("normalization", metrics.NORMALIZATIONS)
def test_nme_is_the_evaluators_error(faces, normalization):
    truth, prediction = faces
    expected = metrics.face_errors(prediction, truth, normalization)
    np.testing.assert_allclose(normalized_mean_error(truth, prediction, normalization), expected,
                               rtol=1e-5)
    flat = normalized_mean_error(truth.reshape(4, -1), prediction.reshape(4, -1), normalization)
    np.testing.assert_allclose(flat, expected, rtol=1e-5)


def test_other_markups_fall_back_to_the_box_diagonal(faces):
    truth, prediction = faces
    few, few_prediction = truth[:, :29], prediction[:, :29]
    expected = metrics.face_errors(few_prediction, few, metrics.BOX_DIAGONAL)
    for normalization in metrics.NORMALIZATIONS:
        np.testing.assert_allclose(normalized_mean_error(few, few_prediction, normalization),
                                   expected, rtol=1e-5)


@pytest.mark.parametrize("legacy, name", sorted(metrics.LEGACY_NORMALIZATIONS.items()))
def test_legacy_names_load_and_measure_the_same(faces, legacy, name):
    truth, prediction = faces
    np.testing.assert_array_equal(normalized_mean_error(truth, prediction, legacy),
                                  normalized_mean_error(truth, prediction, name))
    for kind in (NormalizedLandmarkLoss, NormalizedMeanError):
        config = kind(name).get_config()
        config["normalization"] = legacy          # as a model compiled before issue #12 saved it
        clone = kind.from_config(config)
        assert clone.normalization == name
        assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(clone)
                                                     ).get_config() == clone.get_config()
    with pytest.raises(ValueError, match="unknown normalization"):
        NormalizedLandmarkLoss("eyes")
