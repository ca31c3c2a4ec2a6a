"""Walking a dataset folder tree: subsets, face ids, and folders with nothing in them.

Shared by the folder formats (300-W .pts, Menpo .ljson), whose annotation file
sits beside its image with the same stem.
"""
from __future__ import annotations

import os
import pathlib
import posixpath
from collections.abc import Callable, Iterator

import numpy as np

from facealign.core.data.images import IMAGE_SUFFIXES, is_image_name
from facealign.core.data.records import Reject
from facealign.core.data.report import DataError


def check_root(root: pathlib.Path) -> None:
    if not root.exists():
        raise DataError(str(root), "dataset root does not exist")
    if not root.is_dir():
        raise DataError(str(root), "dataset root is not a folder")


def relpath(path: pathlib.Path, root: pathlib.Path) -> str:
    return path.relative_to(root).as_posix()


def face_id(dataset: str, image_relpath: str) -> str:
    """Stable across runs and machines: the dataset name and the image path without suffix."""
    return f"{dataset}:{posixpath.splitext(image_relpath)[0]}"


def walk(root: pathlib.Path,
         dataset: str) -> Iterator[tuple[pathlib.Path, str, list[pathlib.Path]] | Reject]:
    """(folder, subset, files) for every folder under root, sorted; hidden entries skipped.

    A folder with no entries at all is yielded as a Reject: someone expected faces there.
    """
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files = sorted(f for f in files if not f.startswith("."))
        folder = pathlib.Path(folder)
        subset = relpath(folder, root) if folder != root else "."
        if not dirs and not files and folder != root:  # an empty root is reported by the reader
            yield Reject(str(folder), "empty folder: no annotated faces", dataset, subset)
            continue
        yield folder, subset, [folder / f for f in files]


def pair_with_images(files: list[pathlib.Path], annotation_suffix: str):
    """Pairs each annotation file with the image of the same stem.

    Returns (pairs, unused): pairs are (annotation, image or None); unused are
    (image, reason) for images no annotation file uses, which are reported, not skipped.
    """
    images: dict[str, list[pathlib.Path]] = {}
    for f in files:
        if is_image_name(f):
            images.setdefault(f.stem, []).append(f)
    pairs = []
    used = set()
    for f in files:
        if f.suffix.lower() != annotation_suffix:
            continue
        candidates = sorted(images.get(f.stem, []),
                            key=lambda p: IMAGE_SUFFIXES.index(p.suffix.lower()))
        image = candidates[0] if candidates else None
        if image is not None:
            used.add(image)
        pairs.append((f, image))
    annotated = {f.stem for f in files if f.suffix.lower() == annotation_suffix}
    unused = []
    for f in files:
        if is_image_name(f) and f not in used:
            if f.stem in annotated:
                chosen = next(p for p in used if p.stem == f.stem)
                unused.append((f, f"not used: {chosen.name} is taken as the image of "
                                  f"{f.stem}{annotation_suffix}"))
            else:
                unused.append((f, f"image without annotation: no {f.stem}{annotation_suffix} "
                                  "beside it"))
    return pairs, unused


def find_annotated_faces(root: pathlib.Path, dataset: str, suffix: str,
                         parse: Callable[[pathlib.Path], np.ndarray],
                         problems: tuple[type[Exception], ...]) -> Iterator:
    """Every `suffix` annotation under root with its image, as FaceAnnotation or Reject.

    `parse` reads one annotation file into landmarks [N, 2] (0-based) and
    raises one of `problems` (message = the reason) for a bad file.
    """
    from facealign.core.data.faces import FaceAnnotation  # faces.py builds on this module

    root = pathlib.Path(root)
    check_root(root)
    found_any = False
    for entry in walk(root, dataset):
        if isinstance(entry, Reject):
            yield entry
            continue
        _, subset, files = entry
        pairs, unused = pair_with_images(files, suffix)
        for annotation_path, image_path in pairs:
            found_any = True
            if image_path is None:
                yield Reject(str(annotation_path), f"no image beside the {suffix} (looked for "
                             f"{annotation_path.stem}{{{','.join(IMAGE_SUFFIXES)}}})",
                             dataset, subset)
                continue
            try:
                landmarks = parse(annotation_path)
            except problems as exc:
                yield Reject(str(annotation_path), str(exc), dataset, subset)
                continue
            image_relpath = relpath(image_path, root)
            yield FaceAnnotation(
                annotation_path=annotation_path, image_path=image_path,
                image_relpath=image_relpath, subset=subset,
                face_id=face_id(dataset, image_relpath), landmarks=landmarks)
        for image_path, reason in unused:
            yield Reject(str(image_path), reason, dataset, subset)
    if not found_any:
        yield Reject(str(root), f"no annotated faces: no {suffix} files in this folder or below",
                     dataset, None)
