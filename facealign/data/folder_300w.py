"""The 300-W folder layout: ``<name>.<jpg|jpeg|png|ppm|bmp>`` beside ``<name>.pts``.

Folders are searched recursively; a face's subset is its folder relative to
the root (e.g. "afw", "helen/trainset").
"""
from __future__ import annotations

import pathlib
from typing import Iterator

from facealign.data import layout
from facealign.data.faces import FaceAnnotation
from facealign.data.images import IMAGE_SUFFIXES
from facealign.data.pts import PtsProblem, read_pts
from facealign.data.records import Reject


def find_300w_faces(root: pathlib.Path, dataset: str) -> Iterator[FaceAnnotation | Reject]:
    """Every .pts under root parsed into a FaceAnnotation, or a Reject saying why not."""
    root = pathlib.Path(root)
    layout.check_root(root)
    found_any = False
    for entry in layout.walk(root, dataset):
        if isinstance(entry, Reject):
            yield entry
            continue
        _, subset, files = entry
        pairs, unused = layout.pair_with_images(files, ".pts")
        for pts_path, image_path in pairs:
            found_any = True
            if image_path is None:
                yield Reject(str(pts_path), "no image beside the .pts (looked for "
                             f"{pts_path.stem}{{{','.join(IMAGE_SUFFIXES)}}})", dataset, subset)
                continue
            try:
                landmarks = read_pts(pts_path)
            except PtsProblem as exc:
                yield Reject(str(pts_path), str(exc), dataset, subset)
                continue
            image_relpath = layout.relpath(image_path, root)
            yield FaceAnnotation(
                annotation_path=pts_path, image_path=image_path, image_relpath=image_relpath,
                subset=subset, face_id=layout.face_id(dataset, image_relpath), landmarks=landmarks)
        for image_path, reason in unused:
            yield Reject(str(image_path), reason, dataset, subset)
    if not found_any:
        yield Reject(str(root), "no annotated faces: no .pts files in this folder or below",
                     dataset, None)
