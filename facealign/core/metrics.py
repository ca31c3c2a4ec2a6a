"""Face-alignment error measures as the DAN paper reports them (section 4), in numpy and TensorFlow.

Per face: the mean point-to-point error divided by a normalising distance of
the ground truth: inter-ocular (outer eye corners, the headline figure),
inter-pupil (eye-contour centroids, DAN's training loss, eq. 4), or the
diagonal of the ground truth's bounding box (as the Menpo challenge defines
it). Over a set: the mean, the area under the cumulative error distribution
up to a threshold divided by it (AUC_a, 0..1), and the failure rate
(error >= threshold).

The names of the normalisations and the choice among them for a markup
(``default_normalization``) live here, for the evaluator, the CLI and the
training losses alike. The per-face error has a TensorFlow twin,
``face_errors_tf`` (float32, for trainer.losses; tests/test_metrics_tf.py
holds the pair to the same answers); TensorFlow is imported inside it, so
importing this module stays numpy-only.
"""
from __future__ import annotations

import numpy as np

from facealign.core import landmarks68

INTER_OCULAR = "inter_ocular"   # outer eye corners, points 36 and 45: the headline 300-W measure
INTER_PUPIL = "inter_pupil"     # eye-contour centroids (36-41, 42-47): DAN's loss, eq. 4
BOX_DIAGONAL = "box_diagonal"   # the ground truth's bounding-box diagonal: any markup
NORMALIZATIONS = (INTER_OCULAR, INTER_PUPIL, BOX_DIAGONAL)
# The names trainer.losses and AanConfig.normalization used before issue #12; saved
# configurations and model metadata still hold them.
LEGACY_NORMALIZATIONS = {"corners": INTER_OCULAR, "pupils": INTER_PUPIL, "diagonal": BOX_DIAGONAL}


def normalization_name(name: str) -> str:
    """The name in NORMALIZATIONS for ``name``, which may be a legacy alias; ValueError for
    anything else."""
    name = LEGACY_NORMALIZATIONS.get(name, name)
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {name!r}; use one of {NORMALIZATIONS}")
    return name


def default_normalization(num_landmarks: int, preferred: str = INTER_OCULAR) -> str:
    """The normalisation to use for a markup: ``preferred`` where it defines it, else the box
    diagonal.

    The eye distances exist only for the 68-point markup (facealign.core.landmarks68),
    so with the default this is inter-ocular for 68 points (the paper's headline
    figure) and the box diagonal (Menpo's) for any other count.
    """
    preferred = normalization_name(preferred)
    if preferred == BOX_DIAGONAL or int(num_landmarks) == landmarks68.NUM_LANDMARKS:
        return preferred
    return BOX_DIAGONAL


def normalizing_distance(ground_truth: np.ndarray, normalization: str) -> np.ndarray:
    """[B] distances from ground-truth shapes [B, N, 2]."""
    gt = np.asarray(ground_truth, np.float64)
    normalization = normalization_name(normalization)
    if normalization == INTER_OCULAR:
        return landmarks68.inter_ocular_distance(gt)
    if normalization == INTER_PUPIL:
        return landmarks68.inter_pupil_distance(gt)
    return np.linalg.norm(gt.max(axis=1) - gt.min(axis=1), axis=-1)


def face_errors(predicted: np.ndarray, ground_truth: np.ndarray,
                normalization: str = INTER_OCULAR) -> np.ndarray:
    """[B] normalised mean errors (fractions, not percent)."""
    pred = np.asarray(predicted, np.float64)
    gt = np.asarray(ground_truth, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"shapes must both be [B, N, 2], got {pred.shape} and {gt.shape}")
    point_errors = np.linalg.norm(pred - gt, axis=-1).mean(axis=1)
    return point_errors / normalizing_distance(gt, normalization)


def normalizing_distance_tf(ground_truth, normalization: str):
    """``normalizing_distance`` in TensorFlow: float32 [B] from shapes [B, N, 2] with a static N."""
    import tensorflow as tf

    gt = tf.cast(ground_truth, tf.float32)
    normalization = normalization_name(normalization)
    if normalization == INTER_OCULAR:
        return landmarks68.inter_ocular_distance_tf(gt)
    if normalization == INTER_PUPIL:
        return landmarks68.inter_pupil_distance_tf(gt)
    extent = tf.reduce_max(gt, axis=1) - tf.reduce_min(gt, axis=1)
    return tf.sqrt(tf.reduce_sum(tf.square(extent), axis=-1))


def face_errors_tf(predicted, ground_truth, normalization: str = INTER_OCULAR):
    """``face_errors`` in TensorFlow: float32 [B] from shapes [B, N, 2], differentiable (a loss)."""
    import tensorflow as tf

    pred = tf.cast(predicted, tf.float32)
    gt = tf.cast(ground_truth, tf.float32)
    if pred.shape.rank != 3 or pred.shape[-1] != 2 or not pred.shape.is_compatible_with(gt.shape):
        raise ValueError(f"shapes must both be [B, N, 2], got {pred.shape} and {gt.shape}")
    point_errors = tf.sqrt(tf.reduce_sum(tf.square(pred - gt), axis=-1))
    return tf.reduce_mean(point_errors, axis=-1) / normalizing_distance_tf(gt, normalization)


def auc(errors: np.ndarray, threshold: float = 0.08) -> float:
    """Area under the CED curve on [0, threshold], divided by threshold.

    Exact: each face contributes the length of [e, threshold] on which it
    counts as aligned, so the integral is the mean of max(0, threshold - e).
    """
    errors = np.asarray(errors, np.float64)
    if errors.size == 0:
        return float("nan")
    return float(np.mean(np.clip(threshold - errors, 0.0, None)) / threshold)


def failure_rate(errors: np.ndarray, threshold: float = 0.08) -> float:
    errors = np.asarray(errors, np.float64)
    return float(np.mean(errors >= threshold)) if errors.size else float("nan")


def summary(predicted: np.ndarray, ground_truth: np.ndarray, threshold: float = 0.08) -> dict:
    """The evaluation record: NME and failure in percent, AUC in 0..1.

    An NME the markup does not define is None. AUC and failure use the
    ``default_normalization`` error: inter-ocular for 68-point data (as the
    paper), the box diagonal otherwise.
    """
    pred, gt = np.asarray(predicted), np.asarray(ground_truth)
    num_landmarks = gt.shape[-2]
    result: dict = {"count": int(len(gt))}
    errors = {}
    for name in NORMALIZATIONS:
        if default_normalization(num_landmarks, name) != name:
            result[f"nme_{name}"] = None
            continue
        errors[name] = face_errors(pred, gt, name)
        result[f"nme_{name}"] = float(100 * errors[name].mean()) if len(gt) else float("nan")
    headline = errors[default_normalization(num_landmarks)]
    result[f"auc_{threshold:g}"] = auc(headline, threshold)
    result[f"failure_rate_{threshold:g}"] = 100 * failure_rate(headline, threshold)
    return result


def headline_nme(record: dict) -> float:
    """A `summary` record's headline NME (percent), the figure a blessing compares: its
    default_normalization's, inter-ocular for 68 points, else the box diagonal's."""
    value = record.get(f"nme_{INTER_OCULAR}")
    return record[f"nme_{BOX_DIAGONAL}"] if value is None else value


def plot_ced(errors_by_label: dict[str, np.ndarray], path, threshold: float = 0.08,
             title: str = "Cumulative error distribution") -> None:
    """Writes the CED curves (fraction of faces vs normalised error) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    grid = np.linspace(0, threshold, 200)
    for label, errors in errors_by_label.items():
        errors = np.sort(np.asarray(errors, np.float64))
        ced = np.searchsorted(errors, grid, side="right") / max(len(errors), 1)
        ax.plot(grid, ced, label=f"{label} (AUC {auc(errors, threshold):.3f}, n={len(errors)})")
    ax.set_xlim(0, threshold)
    ax.set_ylim(0, 1)
    ax.set_xlabel("normalised point-to-point error")
    ax.set_ylabel("fraction of faces")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def paired_difference(candidate, baseline, resamples: int = 2000, seed: int = 0,
                      confidence: float = 0.95) -> dict:
    """Mean of candidate - baseline over the same faces, with a bootstrap confidence interval
    (faces resampled with replacement, pairs kept together): what blessing compares, so that
    two models are told apart by their differences on each face, not by two noisy means."""
    a, b = np.asarray(candidate, np.float64), np.asarray(baseline, np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"need two equal-length 1-D error arrays, got {a.shape} and {b.shape}")
    differences = a - b
    draws = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    means = differences[draws].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"mean": float(differences.mean()), "low": float(low), "high": float(high),
            "faces": int(len(a)), "confidence": confidence}
