"""Face detector boxes in the 300-W detector-box convention the landmark models were trained on.

Every detector draws its own box around a face: OpenCV's Haar cascade a
square from the brows to below the mouth, BlazeFace a square from the brows
to the chin, the 300-W boxes (the face-detector boxes published with 300-W,
which the DAN authors used and /work/shared/data/300w/boxes holds) a slightly
larger square lower on the face. The landmark model fits its mean shape to
whatever box it gets, so a box in another convention starts it shifted and
scaled. A BoxCalibration maps a detector's box to the 300-W box of the same
face, relative to the detector box's centre and size:

    centre_x' = centre_x + dx * width      width'  = sx * width
    centre_y' = centre_y + dy * height     height' = sy * height

`fit` estimates (dx, dy, sx, sy) by least squares on faces where both boxes
are known, in units of the detector box (each face weighs the same whatever
its size): the minimiser of sum((t_cx - cx) / w - dx)^2 is the mean, and so
on for each number. `match` pairs a detection with an annotated face by IoU.
The fitted constants live with their detectors (serving/detector.py);
benchmarks/detector_calibration.py fits them.

Boxes are float (x0, y0, x1, y1) in the image's pixels.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class BoxCalibration:
    """(dx, dy): centre offset in detector-box widths / heights; (sx, sy): size scales."""

    dx: float = 0.0
    dy: float = 0.0
    sx: float = 1.0
    sy: float = 1.0

    def apply(self, boxes) -> np.ndarray:
        """float32 [K, 4] boxes in the target convention from detector boxes [K, 4] (or [4])."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        size = boxes[:, 2:] - boxes[:, :2]
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + np.array([self.dx, self.dy]) * size
        half = np.array([self.sx, self.sy]) * size / 2
        return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


IDENTITY = BoxCalibration()


def box_iou(box, boxes) -> np.ndarray:
    """[K] IoU of one box [4] with boxes [K, 4]."""
    box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
    low, high = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(np.prod(box[2:] - box[:2]) + areas - inter, 1e-12)


def match(detections, target, min_iou: float = 0.5) -> int | None:
    """Index of the detection [K, 4] overlapping the target box [4] most, if by >= min_iou."""
    detections = np.asarray(detections, np.float64).reshape(-1, 4)
    if not len(detections):
        return None
    overlaps = box_iou(target, detections)
    best = int(np.argmax(overlaps))
    return best if overlaps[best] >= min_iou else None


def relative_offsets(detected, target) -> np.ndarray:
    """[F, 4] per face: ((t_cx - cx) / w, (t_cy - cy) / h, t_w / w, t_h / h)."""
    detected = np.asarray(detected, np.float64).reshape(-1, 4)
    target = np.asarray(target, np.float64).reshape(-1, 4)
    size = detected[:, 2:] - detected[:, :2]
    shift = ((target[:, :2] + target[:, 2:]) - (detected[:, :2] + detected[:, 2:])) / 2 / size
    return np.concatenate([shift, (target[:, 2:] - target[:, :2]) / size], axis=1)


def fit(detected, target) -> BoxCalibration:
    """The least-squares BoxCalibration from detector boxes [F, 4] to target boxes [F, 4]."""
    offsets = relative_offsets(detected, target)
    if not len(offsets):
        raise ValueError("no matched faces to fit a box calibration on")
    dx, dy, sx, sy = (float(v) for v in offsets.mean(axis=0))
    return BoxCalibration(dx, dy, sx, sy)
