"""Landmarks of the faces in one image: given boxes, or the face detector's.

What `facealign predict`, `facealign track` and the Python API (facealign.api)
share, in the face-alignment library's shape: one object holding a model and
a pluggable detector, one call per image. The detector is created on the
first image without boxes, so callers that always pass boxes never need
OpenCV's cascade file.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from serving import detector as face_detector
from serving.boxes import as_boxes
from serving.errors import ModelError
from serving.images import Image, load_image

USER, DETECTOR = "user", "detector"  # where a face's box came from


@dataclasses.dataclass(frozen=True)
class Face:
    """One aligned face."""

    landmarks: np.ndarray  # float32 [N, 2]: 0-based x, y pixels of the image (N = 68 for 300-W)
    box: np.ndarray        # float32 [4]: x0, y0, x1, y1, the box the model started from
    stage_spread: float    # the last two stages' disagreement / face size; large = unreliable
    box_source: str        # "user" (given) or "detector"
    # float32 [N]: each point's own share of it (stage_spread is their mean; zeros for a
    # one-stage model); None from a model exported without that output
    landmark_spread: np.ndarray | None = None


class Aligner:
    """A model (serving.model.open_model) and a face detector; `align` one image at a time."""

    def __init__(self, model, face_cascade=None, detector=None):
        self.model = model
        self.face_cascade = face_cascade
        self._detector = detector

    @property
    def detector(self):
        """The face detector: the object given, or the one named (serving/detector.py: default
        BlazeFace, or "haar"), created on first use (DetectorUnavailable if it cannot load)."""
        if self._detector is None or isinstance(self._detector, str):
            self._detector = face_detector.create(self._detector, self.face_cascade)
        return self._detector

    @property
    def encoding(self) -> str:
        """How arrays are encoded for the model: BMP in-process (fastest), PNG over the network."""
        return ".png" if getattr(self.model, "remote", False) else ".bmp"

    def image(self, image) -> Image:
        """A path, encoded bytes or a uint8 RGB/gray array as an Image (ImageError if not)."""
        return load_image(image, self.encoding)

    def align(self, image, boxes=None) -> list[Face]:
        """One Face per box ([4] or [K, 4] x0, y0, x1, y1), or per detected face, largest
        first, when `boxes` is None; [] when the detector finds none."""
        image = self.image(image)
        if boxes is None:
            found = np.asarray(self.detector.detect(image.bgr), np.float32).reshape(-1, 4)
            source = DETECTOR
        else:
            found, source = as_boxes(boxes, f"boxes for {image.name}"), USER
        if not len(found):
            return []
        try:
            prediction = self.model.predict_image(image, found)
        except ModelError as exc:  # e.g. a box the graph refuses: say which image it was for
            raise ModelError(f"{image.name}: {exc}") from None
        per_point = prediction.landmark_spread
        if per_point is None:
            per_point = [None] * len(found)
        return [Face(np.asarray(landmarks, np.float32), np.asarray(box, np.float32),
                     float(spread), source,
                     None if points is None else np.asarray(points, np.float32))
                for box, landmarks, spread, points in zip(
                    found, prediction.landmarks, prediction.stage_spread, per_point, strict=True)]
