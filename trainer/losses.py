"""Normalised landmark error: DAN's training loss (eq. 4) and the NME metric.

Per face: mean over landmarks of the Euclidean point error, divided by a
length of the ground-truth face, so the number is comparable across face
sizes. DAN trains on the inter-pupil normalisation (pupil = centroid of the
eye contour, points 36-41 and 42-47 of the 68-point markup). Markups with
another number of points have no defined pupils: those fall back to the
diagonal of the ground truth's bounding box (the Menpo-challenge measure).

Values are fractions (0.05 = 5 % of the normalising distance). Everything is
computed in float32, also under a mixed-precision policy.
"""
from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "facealign"

PUPILS = "pupils"        # eye-contour centroids (points 36-41, 42-47), DAN eq. 4
CORNERS = "corners"      # outer eye corners (points 36, 45): the "inter-ocular" measure
DIAGONAL = "diagonal"    # ground-truth bounding-box diagonal
NORMALIZATIONS = (PUPILS, CORNERS, DIAGONAL)
_SIXTY_EIGHT = 68


def _as_points(shapes):
    """[B, N, 2] float32 from [B, N, 2] or flat [B, 2N], keeping N static (it picks the norm)."""
    shapes = ops.cast(shapes, "float32")
    if len(shapes.shape) == 2 and shapes.shape[-1] is not None:
        shapes = ops.reshape(shapes, (-1, shapes.shape[-1] // 2, 2))
    if len(shapes.shape) != 3 or shapes.shape[1] is None or shapes.shape[2] != 2:
        raise ValueError(f"shapes must be [B, N, 2] with a static N, got {shapes.shape}")
    return shapes


def normalizing_distance(y_true, normalization: str = PUPILS):
    """Per-face normalising length [B]; non-68-point shapes always use the box diagonal."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    points = _as_points(y_true)
    if points.shape[1] != _SIXTY_EIGHT:
        normalization = DIAGONAL
    if normalization == PUPILS:
        left = ops.mean(points[:, 36:42], axis=1)
        right = ops.mean(points[:, 42:48], axis=1)
    elif normalization == CORNERS:
        left, right = points[:, 36], points[:, 45]
    else:
        left, right = ops.min(points, axis=1), ops.max(points, axis=1)
    return ops.sqrt(ops.sum(ops.square(right - left), axis=-1))


def normalized_mean_error(y_true, y_pred, normalization: str = PUPILS):
    """Per-face NME [B]: mean point-to-point error / normalising distance."""
    true_points = _as_points(y_true)
    pred_points = _as_points(y_pred)
    point_errors = ops.sqrt(ops.sum(ops.square(pred_points - true_points), axis=-1))
    return ops.mean(point_errors, axis=-1) / normalizing_distance(true_points, normalization)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NormalizedLandmarkLoss(keras.losses.Loss):
    """DAN's loss, eq. 4: the batch mean of the per-face inter-pupil NME."""

    def __init__(self, normalization: str = PUPILS, name: str = "normalized_landmark_loss",
                 **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(name=name, **kwargs)
        self.normalization = normalization

    def call(self, y_true, y_pred):
        return normalized_mean_error(y_true, y_pred, self.normalization)

    def get_config(self):
        config = super().get_config()
        config["normalization"] = self.normalization
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NormalizedMeanError(keras.metrics.MeanMetricWrapper):
    """NME metric (a fraction): the mean over all faces seen of the per-face error."""

    def __init__(self, normalization: str = PUPILS, name: str = "nme", **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(fn=normalized_mean_error, name=name,
                         normalization=normalization, **kwargs)
        self.normalization = normalization

    def get_config(self):
        return {"name": self.name, "normalization": self.normalization}
