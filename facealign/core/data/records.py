"""What a reader produces: one accepted face, or one rejected input with the reason.

Every reader yields only these two types, so everything read is either used or
reported; nothing is dropped silently.
"""
from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

# Where a record's face box came from.
BOX_FROM_DETECTOR = "detector"      # a face-box CSV (the detector boxes published with 300-W)
BOX_FROM_ANNOTATION = "annotation"  # the annotation file's own box (COCO "bbox")
BOX_FROM_LANDMARKS = "landmarks"    # no box given: the landmarks' bounding box

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in 0-based pixels


@dataclasses.dataclass(frozen=True, eq=False)
class FaceRecord:
    """One real annotated face, in 0-based pixel coordinates.

    Coordinates follow the pixel-centre convention: (0, 0) is the centre of the
    top-left pixel. ``eq=False`` because numpy arrays do not compare as booleans;
    compare ``face_id`` instead.
    """

    face_id: str                 # stable and unique, e.g. "300w:afw/1051618982_1"
    dataset: str                 # the source's name
    subset: str                  # image folder relative to the root, e.g. "helen/trainset"
    image_path: pathlib.Path     # the image file
    image_relpath: str           # image path relative to the source root, '/'-separated
    image_size: tuple[int, int]  # (width, height) in pixels
    landmarks: np.ndarray        # float32 [N, 2]: x, y
    box: Box                     # face box x0, y0, x1, y1
    box_source: str              # BOX_FROM_DETECTOR, BOX_FROM_ANNOTATION or BOX_FROM_LANDMARKS
    annotation_path: pathlib.Path  # the file the landmarks came from

    @property
    def num_landmarks(self) -> int:
        return int(self.landmarks.shape[0])


@dataclasses.dataclass(frozen=True)
class Reject:
    """An input that was not used: which file, and why (one readable sentence)."""

    file: str
    reason: str
    dataset: str = ""
    subset: str | None = None    # None for files that are not a face (a CSV, a folder)

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"
