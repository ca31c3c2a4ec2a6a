"""From one parsed annotation to a checked FaceRecord (or a Reject), for every format.

The format readers only parse; the checks every face needs (finite landmarks,
a decodable image of the stated size, a usable box, and which box to use) are
made here once, so all formats reject the same problems with the same words.
"""
from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterable, Iterator

import numpy as np

from facealign.core.data import boxes as boxes_lib
from facealign.core.data.images import ImageProblem, checked_image_size
from facealign.core.data.records import (
    BOX_FROM_ANNOTATION,
    BOX_FROM_DETECTOR,
    BOX_FROM_LANDMARKS,
    Box,
    FaceRecord,
    Reject,
)


@dataclasses.dataclass(frozen=True, eq=False)
class FaceAnnotation:
    """What a format reader found for one face, before any check."""

    annotation_path: pathlib.Path
    image_path: pathlib.Path
    image_relpath: str
    subset: str
    face_id: str
    landmarks: np.ndarray                        # [N, 2] x, y, 0-based; may hold nan
    box: Box | None = None                       # the annotation's own box, if it has one
    stated_size: tuple[int, int] | None = None   # (width, height) the annotation claims
    faces_in_image: int = 1
    # which face inside a multi-face annotation file, e.g. "annotations[3] (id 40)"
    location: str = ""


def assemble_faces(found: Iterable[FaceAnnotation | Reject], dataset: str,
                   csv_boxes: dict[str, boxes_lib.CsvBox]) -> Iterator[FaceRecord | Reject]:
    """Checks each found face; passes rejects through. Each image is decoded once."""
    sizes: dict[pathlib.Path, tuple[int, int] | str] = {}
    for item in found:
        if isinstance(item, Reject):
            yield item
        else:
            yield _assemble(item, dataset, csv_boxes, sizes)


def _assemble(face: FaceAnnotation, dataset: str, csv_boxes, sizes) -> FaceRecord | Reject:
    def reject(file, reason):
        if face.location and file == face.annotation_path:
            reason = f"{face.location}: {reason}"
        return Reject(str(file), reason, dataset, face.subset)

    landmarks = np.asarray(face.landmarks, dtype=np.float32)
    if landmarks.ndim != 2 or landmarks.shape[1] != 2 or landmarks.shape[0] == 0:
        return reject(face.annotation_path,
                      f"landmarks have shape {landmarks.shape}, expected [N, 2]")
    bad = np.flatnonzero(~np.isfinite(landmarks).all(axis=1))
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        return reject(face.annotation_path,
                      f"non-finite coordinates (nan/inf/missing) at {bad.size} of "
                      f"{len(landmarks)} points (index {shown})")

    if face.image_path not in sizes:
        try:
            sizes[face.image_path] = checked_image_size(face.image_path)
        except ImageProblem as exc:
            sizes[face.image_path] = str(exc)
    size = sizes[face.image_path]
    if isinstance(size, str):
        return reject(face.image_path, size)
    if face.stated_size is not None and tuple(face.stated_size) != size:
        return reject(face.annotation_path,
                      f"image {face.image_relpath} is {size[0]}x{size[1]}, the annotation "
                      f"says {face.stated_size[0]}x{face.stated_size[1]}")

    csv_box = csv_boxes.get(face.image_relpath)
    if csv_box is not None:
        if face.faces_in_image > 1:
            return reject(face.annotation_path,
                          f"{csv_box.origin} gives one box for {face.image_relpath}, which has "
                          f"{face.faces_in_image} faces: cannot tell which face it belongs to")
        box, source, origin = csv_box.box, BOX_FROM_DETECTOR, f" ({csv_box.origin})"
    elif face.box is not None:
        box, source, origin = tuple(float(v) for v in face.box), BOX_FROM_ANNOTATION, ""
    else:
        box, source, origin = boxes_lib.landmark_box(landmarks), BOX_FROM_LANDMARKS, ""
    problem = boxes_lib.box_problem(box, size)
    if problem:
        return reject(face.annotation_path, f"{source} {problem}{origin}")

    return FaceRecord(
        face_id=face.face_id, dataset=dataset, subset=face.subset,
        image_path=face.image_path, image_relpath=face.image_relpath, image_size=size,
        landmarks=landmarks, box=box, box_source=source, annotation_path=face.annotation_path)
