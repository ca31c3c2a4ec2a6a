"""Similarity transforms between landmark shapes, in numpy, and their TensorFlow twins.

A shape is an array [N, 2] of (x, y) pixel coordinates (0-based, pixel
centres at integers). A transform is a 2x3 matrix M acting on column vectors
(x, y, 1), the layout cv2.warpAffine takes; a similarity is
[[a, -b, tx], [b, a, ty]]: uniform scale sqrt(a^2 + b^2), rotation
atan2(b, a), never a reflection or skew. Transforms are float64; functions
that return shapes keep the floating dtype of the shape they were given.

The operations a model graph needs too (applying, inverting and estimating
a transform) have a batched TensorFlow version at the end of this module,
named ``*_tf``, with the same conventions in float32; tests/test_geometry_tf.py
holds each pair to the same answers. TensorFlow is imported inside those
functions, so importing this module stays numpy-only.
"""
from __future__ import annotations

import numpy as np


def _points(points, what: str = "points") -> np.ndarray:
    points = np.asarray(points)
    if points.shape[-1:] != (2,):
        raise ValueError(f"{what} must be an array [..., 2] of (x, y), got shape {points.shape}")
    return points


def _shape(shape, what: str = "shape") -> np.ndarray:
    shape = _points(shape, what)
    if shape.ndim != 2 or shape.shape[0] < 2:
        raise ValueError(f"{what} must be an array [N >= 2, 2], got shape {shape.shape}")
    return shape


def _out_dtype(points: np.ndarray):
    return points.dtype if np.issubdtype(points.dtype, np.floating) else np.float64


def similarity(scale: float = 1.0, angle: float = 0.0, translation=(0.0, 0.0)) -> np.ndarray:
    """The 2x3 similarity x -> scale * R(angle) x + translation.

    Positive angles (radians) turn +x towards +y, i.e. clockwise on screen.
    """
    a, b = scale * np.cos(angle), scale * np.sin(angle)
    tx, ty = np.asarray(translation, dtype=np.float64)
    return np.array([[a, -b, tx], [b, a, ty]], dtype=np.float64)


def similarity_about(centre, scale: float = 1.0, angle: float = 0.0,
                     shift=(0.0, 0.0)) -> np.ndarray:
    """Scale and rotate about ``centre``, then shift: the form perturbations are drawn in."""
    centre = np.asarray(centre, dtype=np.float64)
    about = similarity(scale, angle)
    about[:, 2] = centre - about[:, :2] @ centre + np.asarray(shift, dtype=np.float64)
    return about


def scale_and_angle(transform) -> tuple[float, float]:
    """Scale and rotation (radians) of a similarity, to read perturbations back."""
    transform = np.asarray(transform, dtype=np.float64)
    a, b = transform[0, 0], transform[1, 0]
    return float(np.hypot(a, b)), float(np.arctan2(b, a))


def apply_transform(transform, points) -> np.ndarray:
    """The points [..., 2] mapped through a 2x3 transform, or points [B, N, 2] each through
    its own of [B, 2, 3]."""
    points = _points(points)
    transform = np.asarray(transform, dtype=np.float64)
    if transform.shape[-2:] != (2, 3):
        raise ValueError(f"transforms must be arrays [..., 2, 3], got shape {transform.shape}")
    if transform.ndim == 2:
        mapped = points.astype(np.float64) @ transform[:, :2].T + transform[:, 2]
    else:
        mapped = (points.astype(np.float64) @ np.swapaxes(transform[..., :2], -1, -2)
                  + transform[..., None, :, 2])
    return mapped.astype(_out_dtype(points))


def invert_transform(transform) -> np.ndarray:
    """The inverse of an invertible 2x3 affine transform."""
    transform = np.asarray(transform, dtype=np.float64)
    linear = np.linalg.inv(transform[:, :2])
    return np.concatenate([linear, -(linear @ transform[:, 2])[:, None]], axis=1)


def compose(outer, inner) -> np.ndarray:
    """outer after inner: ``apply(compose(outer, inner), p) == apply(outer, apply(inner, p))``."""
    outer = np.asarray(outer, dtype=np.float64)
    inner = np.asarray(inner, dtype=np.float64)
    return np.concatenate(
        [outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], axis=1)


def estimate_similarity(source, target) -> np.ndarray:
    """The least-squares similarity taking ``source`` onto ``target`` (Umeyama without reflection).

    Minimises sum_i |M(source_i) - target_i|^2 in closed form; exact when the
    shapes differ by a similarity. DAN's Transform Estimation layer computes
    the same thing in its graph with ``estimate_similarity_tf``.
    """
    source = _shape(source, "source").astype(np.float64)
    target = _shape(target, "target").astype(np.float64)
    if source.shape != target.shape:
        raise ValueError(f"source and target need the same points, got {source.shape} and "
                         f"{target.shape}")
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    s, t = source - source_mean, target - target_mean
    norm = np.sum(s * s)
    if norm <= np.finfo(np.float64).tiny:
        raise ValueError("source shape is degenerate (all points coincide)")
    a = np.sum(s * t) / norm
    b = np.sum(s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]) / norm
    linear = np.array([[a, -b], [b, a]])
    return np.concatenate([linear, (target_mean - linear @ source_mean)[:, None]], axis=1)


def fit_shape_to_shape(shape, target) -> np.ndarray:
    """``shape`` moved by the best similarity onto ``target`` (DAN's bestFit)."""
    return apply_transform(estimate_similarity(shape, target), shape)


def bounding_box(shape) -> np.ndarray:
    """(x0, y0, x1, y1) of the extreme point coordinates."""
    shape = _shape(shape)
    return np.concatenate([shape.min(axis=0), shape.max(axis=0)]).astype(np.float64)


def box_fit_transform(shape, box) -> np.ndarray:
    """Scale and translation placing ``shape`` in ``box`` (DAN's bestFitRect, no rotation).

    The scale is the mean of the width and height ratios, and the bounding-box
    centres coincide, so a mean shape lands where a detector says the face is.
    """
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64)
    sx0, sy0, sx1, sy1 = bounding_box(shape)
    if sx1 <= sx0 or sy1 <= sy0:
        raise ValueError("shape has a degenerate bounding box")
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box (x0, y0, x1, y1) must have positive size, got {(x0, y0, x1, y1)}")
    scale = ((x1 - x0) / (sx1 - sx0) + (y1 - y0) / (sy1 - sy0)) / 2
    box_centre = np.array([x0 + x1, y0 + y1]) / 2
    shape_centre = np.array([sx0 + sx1, sy0 + sy1]) / 2
    return similarity(scale, 0.0, box_centre - scale * shape_centre)


def fit_shape_to_box(shape, box) -> np.ndarray:
    """``shape`` scaled and moved into ``box``: DAN's initial shape from a face detection."""
    return apply_transform(box_fit_transform(shape, box), shape)


def normalize_shape(shape) -> np.ndarray:
    """Centroid at the origin and unit Frobenius norm: a shape modulo translation and scale."""
    shape = _shape(shape).astype(np.float64)
    centred = shape - shape.mean(axis=0)
    norm = np.linalg.norm(centred)
    if norm <= np.finfo(np.float64).tiny:
        raise ValueError("shape is degenerate (all points coincide)")
    return centred / norm


def rotate_onto(shape, reference) -> np.ndarray:
    """``shape`` rotated about the origin (no scaling) to best match ``reference``; fixes the
    orientation of a mean."""
    shape = np.asarray(shape, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    dot = np.sum(shape * reference)
    cross = np.sum(shape[:, 0] * reference[:, 1] - shape[:, 1] * reference[:, 0])
    if np.hypot(dot, cross) <= np.finfo(np.float64).tiny:
        return shape
    return apply_transform(similarity(1.0, np.arctan2(cross, dot)), shape)


def procrustes_mean(shapes, *, max_iterations: int = 200, tolerance: float = 1e-12) -> np.ndarray:
    """Generalised Procrustes mean of shapes [K, N, 2], centred with unit norm.

    Iterates: align every shape to the current mean by a similarity, average,
    normalise, until the mean stops moving. The rotation of the mean is free,
    so it is pinned to the plain average of the normalised shapes (upright
    for upright training faces) at every step.
    """
    shapes = np.asarray(shapes, dtype=np.float64)
    if shapes.ndim != 3 or shapes.shape[-1] != 2 or len(shapes) == 0:
        raise ValueError(f"shapes must be an array [K >= 1, N, 2], got shape {shapes.shape}")
    normalized = np.stack([normalize_shape(s) for s in shapes])
    reference = normalized.mean(axis=0)
    if np.linalg.norm(reference) <= 1e-9:  # rotations cancel out: any orientation will do
        reference = normalized[0]
    mean = normalize_shape(reference)
    for _ in range(max_iterations):
        aligned = np.stack([fit_shape_to_shape(s, mean) for s in normalized])
        new_mean = rotate_onto(normalize_shape(aligned.mean(axis=0)), reference)
        change = np.linalg.norm(new_mean - mean)
        mean = new_mean
        if change < tolerance:
            break
    return mean


def canonical_mean_shape(mean_shape, image_size: int = 112,
                         face_fraction: float = 0.5) -> np.ndarray:
    """The mean shape S0 placed in the image_size x image_size canonical frame, float32.

    The larger side of its bounding box spans face_fraction * image_size and
    the bounding box is centred on the frame centre ((image_size - 1) / 2 with
    pixel centres at integers), leaving equal borders on both sides.
    """
    if not 0 < face_fraction <= 1:
        raise ValueError(f"face_fraction must be in (0, 1], got {face_fraction}")
    shape = _shape(mean_shape).astype(np.float64)
    x0, y0, x1, y1 = bounding_box(shape)
    extent = max(x1 - x0, y1 - y0)
    if extent <= 0:
        raise ValueError("mean shape has a degenerate bounding box")
    scale = face_fraction * image_size / extent
    centre = np.array([x0 + x1, y0 + y1]) / 2
    frame_centre = np.full(2, (image_size - 1) / 2)
    return ((shape - centre) * scale + frame_centre).astype(np.float32)


# --- The same operations in TensorFlow, batched, for model graphs -----------------------------
# Transforms [B, 2, 3] and shapes [B, N, 2], computed in float32 whatever the inputs' dtype (in
# bfloat16 a coordinate near 100 px would be off by up to half a pixel). Graphs cannot raise on
# data, so where the numpy version refuses a degenerate input these return a usable number.


def apply_transform_tf(transform, points):
    """Points [B, N, 2] mapped each through its transform of [B, 2, 3] (``apply_transform``)."""
    import tensorflow as tf

    transform = tf.cast(transform, tf.float32)
    points = tf.cast(points, tf.float32)
    return tf.einsum("bij,bnj->bni", transform[:, :, :2], points) + transform[:, None, :, 2]


def invert_transform_tf(transform):
    """The inverses [B, 2, 3] of invertible affine transforms [B, 2, 3], in closed form
    (``invert_transform``)."""
    import tensorflow as tf

    transform = tf.cast(transform, tf.float32)
    a, b, tx = transform[:, 0, 0], transform[:, 0, 1], transform[:, 0, 2]
    c, d, ty = transform[:, 1, 0], transform[:, 1, 1], transform[:, 1, 2]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    itx = -(ia * tx + ib * ty)
    ity = -(ic * tx + id_ * ty)
    return tf.stack([tf.stack([ia, ib, itx], axis=-1),
                     tf.stack([ic, id_, ity], axis=-1)], axis=1)


def estimate_similarity_tf(source, target):
    """Least-squares similarities [B, 2, 3] taking shapes ``source`` [B, N, 2] onto ``target``
    (``estimate_similarity``).

    ``target`` is one shape [N, 2] for the whole batch (DAN's S0) or one per
    face [B, N, 2]. The closed form is the numpy one; a source whose points
    all coincide gets a zero linear part instead of an error.
    """
    import tensorflow as tf

    source = tf.cast(source, tf.float32)
    target = tf.cast(target, tf.float32)
    source_mean = tf.reduce_mean(source, axis=-2)                  # [B, 2]
    target_mean = tf.reduce_mean(target, axis=-2)                  # [2] or [B, 2]
    s = source - source_mean[..., None, :]
    t = target - target_mean[..., None, :]
    norm = tf.maximum(tf.reduce_sum(tf.square(s), axis=(-2, -1)), 1e-12)
    a = tf.reduce_sum(s * t, axis=(-2, -1)) / norm
    b = tf.reduce_sum(s[..., 0] * t[..., 1] - s[..., 1] * t[..., 0], axis=-1) / norm
    tx = target_mean[..., 0] - (a * source_mean[:, 0] - b * source_mean[:, 1])
    ty = target_mean[..., 1] - (b * source_mean[:, 0] + a * source_mean[:, 1])
    return tf.stack([tf.stack([a, -b, tx], axis=-1),
                     tf.stack([b, a, ty], axis=-1)], axis=1)
