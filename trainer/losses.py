"""Normalised landmark error as a Keras loss and metric: DAN's training loss (eq. 4) and the NME.

Per face: mean over landmarks of the Euclidean point error, divided by a
length of the ground-truth face, so the number is comparable across face
sizes. The measure itself, its normalisations and their names are
facealign.core.metrics' (``face_errors_tf``, the TensorFlow twin of the
evaluator's ``face_errors``); this module adapts it to Keras. DAN trains on
the inter-pupil normalisation. Markups other than the 68-point one have no
defined eyes: those fall back to the diagonal of the ground truth's bounding
box (``metrics.default_normalization``), whatever normalisation was asked for.

Values are fractions (0.05 = 5 % of the normalising distance). Everything is
computed in float32, also under a mixed-precision policy. The legacy names
"pupils", "corners" and "diagonal" are still accepted, so saved
configurations keep loading.
"""
from __future__ import annotations

import keras
from keras import ops

from facealign.core import metrics
from facealign.core.metrics import INTER_PUPIL

_PACKAGE = "facealign"


def _as_points(shapes):
    """[B, N, 2] float32 from [B, N, 2] or flat [B, 2N], keeping N static (it picks the norm)."""
    shapes = ops.cast(shapes, "float32")
    if len(shapes.shape) == 2 and shapes.shape[-1] is not None:
        shapes = ops.reshape(shapes, (-1, shapes.shape[-1] // 2, 2))
    if len(shapes.shape) != 3 or shapes.shape[1] is None or shapes.shape[2] != 2:
        raise ValueError(f"shapes must be [B, N, 2] with a static N, got {shapes.shape}")
    return shapes


def normalized_mean_error(y_true, y_pred, normalization: str = INTER_PUPIL):
    """Per-face NME [B]: mean point-to-point error / normalising distance."""
    true_points = _as_points(y_true)
    pred_points = _as_points(y_pred)
    normalization = metrics.default_normalization(true_points.shape[1], normalization)
    return metrics.face_errors_tf(pred_points, true_points, normalization)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NormalizedLandmarkLoss(keras.losses.Loss):
    """DAN's loss, eq. 4: the batch mean of the per-face inter-pupil NME."""

    def __init__(self, normalization: str = INTER_PUPIL, name: str = "normalized_landmark_loss",
                 **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(name=name, **kwargs)
        self.normalization = metrics.normalization_name(normalization)

    def call(self, y_true, y_pred):
        return normalized_mean_error(y_true, y_pred, self.normalization)

    def get_config(self):
        config = super().get_config()
        config["normalization"] = self.normalization
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NormalizedMeanError(keras.metrics.MeanMetricWrapper):
    """NME metric (a fraction): the mean over all faces seen of the per-face error."""

    def __init__(self, normalization: str = INTER_PUPIL, name: str = "nme", **kwargs):
        kwargs["dtype"] = "float32"
        normalization = metrics.normalization_name(normalization)
        super().__init__(fn=normalized_mean_error, name=name,
                         normalization=normalization, **kwargs)
        self.normalization = normalization

    def get_config(self):
        return {"name": self.name, "normalization": self.normalization}
