"""Face-alignment error measures as the DAN paper reports them (section 4).

Per face: the mean point-to-point error divided by a normalising distance of
the ground truth: inter-ocular (outer eye corners, the headline figure),
inter-pupil (eye-contour centroids), or the diagonal of the ground truth's
bounding box (as the Menpo challenge defines it). Over a set: the mean, the
area under the cumulative error distribution up to a threshold divided by it
(AUC_a, 0..1), and the failure rate (error >= threshold).
"""
from __future__ import annotations

import numpy as np

from facealign import landmarks68

NORMALISATIONS = ("inter_ocular", "inter_pupil", "box_diagonal")


def normalising_distance(ground_truth: np.ndarray, normalisation: str) -> np.ndarray:
    """[B] distances from ground-truth shapes [B, N, 2]."""
    gt = np.asarray(ground_truth, np.float64)
    if normalisation == "inter_ocular":
        return landmarks68.inter_ocular_distance(gt)
    if normalisation == "inter_pupil":
        return landmarks68.inter_pupil_distance(gt)
    if normalisation == "box_diagonal":
        return np.linalg.norm(gt.max(axis=1) - gt.min(axis=1), axis=-1)
    raise ValueError(f"unknown normalisation {normalisation!r}; use one of {NORMALISATIONS}")


def face_errors(predicted: np.ndarray, ground_truth: np.ndarray,
                normalisation: str = "inter_ocular") -> np.ndarray:
    """[B] normalised mean errors (fractions, not percent)."""
    pred = np.asarray(predicted, np.float64)
    gt = np.asarray(ground_truth, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"shapes must both be [B, N, 2], got {pred.shape} and {gt.shape}")
    point_errors = np.linalg.norm(pred - gt, axis=-1).mean(axis=1)
    return point_errors / normalising_distance(gt, normalisation)


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

    AUC and failure use the inter-ocular error for 68-point data (as the
    paper) and the box-diagonal error otherwise.
    """
    pred, gt = np.asarray(predicted), np.asarray(ground_truth)
    result: dict = {"count": int(len(gt))}
    errors = {}
    for name in NORMALISATIONS:
        if name != "box_diagonal" and gt.shape[-2] != 68:
            result[f"nme_{name}"] = None
            continue
        errors[name] = face_errors(pred, gt, name)
        result[f"nme_{name}"] = float(100 * errors[name].mean()) if len(gt) else float("nan")
    headline = errors.get("inter_ocular", errors["box_diagonal"])
    result[f"auc_{threshold:g}"] = auc(headline, threshold)
    result[f"failure_rate_{threshold:g}"] = 100 * failure_rate(headline, threshold)
    return result


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
