"""The 300-W folder layout: ``<name>.<jpg|jpeg|png|ppm|bmp>`` beside ``<name>.pts``.

Folders are searched recursively; a face's subset is its folder relative to
the root (e.g. "afw", "helen/trainset").
"""
from __future__ import annotations

import pathlib
from collections.abc import Iterator

from facealign.core.data import layout
from facealign.core.data.faces import FaceAnnotation
from facealign.core.data.pts import PtsProblem, read_pts
from facealign.core.data.records import Reject


def find_300w_faces(root: pathlib.Path, dataset: str) -> Iterator[FaceAnnotation | Reject]:
    """Every .pts under root parsed into a FaceAnnotation, or a Reject saying why not."""
    return layout.find_annotated_faces(root, dataset, ".pts", read_pts, (PtsProblem,))
