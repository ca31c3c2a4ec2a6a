"""COCO-style keypoint JSON, as MMPose publishes 300-W, WFLW and COFW.

Layout: ``images`` (id, file_name relative to the image root, width, height) and
``annotations`` (image_id, id, keypoints flat [x, y, v] * N, bbox [x, y, w, h]).
Coordinates are 0-based pixels (COCO's convention; MMPose's converters subtract
1 from Matlab coordinates). ``v`` is 2 visible, 1 occluded but labelled (COFW
marks occlusion this way; the position is still annotated and kept), 0 not
labelled: a face with unlabelled points is rejected rather than trained on
made-up positions. The landmark count is whatever the file holds (68, 98, 29...).
"""
from __future__ import annotations

import collections
import json
import math
import pathlib
import posixpath
from collections.abc import Iterator

import numpy as np

from facealign.core.data import layout
from facealign.core.data.boxes import normalize_relpath
from facealign.core.data.faces import FaceAnnotation
from facealign.core.data.records import Reject
from facealign.core.data.report import DataError


def find_coco_faces(annotations: pathlib.Path, root: pathlib.Path | None,
                    dataset: str) -> Iterator[FaceAnnotation | Reject]:
    """Every annotation of the JSON as a FaceAnnotation, or a Reject saying why not.

    ``root`` is the folder file_name is relative to (default: the JSON's folder).
    """
    annotations = pathlib.Path(annotations)
    if not annotations.is_file():
        raise DataError(str(annotations), "COCO annotation file not found")
    root = pathlib.Path(root) if root is not None else annotations.parent
    layout.check_root(root)
    try:
        data = json.loads(annotations.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        yield Reject(str(annotations), f"not valid JSON ({exc})", dataset)
        return
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        yield Reject(str(annotations), "not COCO keypoint JSON: needs 'images' and "
                     "'annotations' lists", dataset)
        return

    images = {}
    for i, image in enumerate(data["images"]):
        problem = _image_entry_problem(image, images)
        if problem:
            yield Reject(str(annotations), f"images[{i}]: {problem}", dataset)
        else:
            images[image["id"]] = image
    faces_per_image = collections.Counter(
        a.get("image_id") for a in data["annotations"] if isinstance(a, dict))
    seen_ids = set()
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if isinstance(ann, dict) and "id" in ann:
            where += f" (id {ann['id']})"
        face = _parse_annotation(ann, images, root, dataset, faces_per_image, seen_ids,
                                 annotations, where)
        if isinstance(face, str):
            yield Reject(str(annotations), f"{where}: {face}", dataset)
        else:
            yield face
    if not data["annotations"]:
        yield Reject(str(annotations), "no annotated faces: 'annotations' is empty", dataset)


def _image_entry_problem(image, images) -> str | None:
    if (not isinstance(image, dict) or "id" not in image
            or not isinstance(image.get("file_name"), str)):
        return "needs an id and a file_name"
    if image["id"] in images:
        return f"a second image with id {image['id']}"
    for key in ("width", "height"):
        if key in image and not (isinstance(image[key], int) and image[key] > 0):
            return f"{key} {image[key]!r} is not a positive whole number"
    return None


def _parse_annotation(ann, images, root, dataset, faces_per_image, seen_ids, json_path, where):
    if not isinstance(ann, dict):
        return "not a JSON object"
    if ann.get("id") in seen_ids:
        return "a second annotation with this id"
    seen_ids.add(ann.get("id"))
    image = images.get(ann.get("image_id"))
    if image is None:
        return f"image_id {ann.get('image_id')!r} is not in 'images'"
    keypoints = ann.get("keypoints")
    if not isinstance(keypoints, list) or not keypoints or len(keypoints) % 3:
        return "keypoints must be a non-empty flat list [x, y, v, ...]"
    try:
        triples = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    except (TypeError, ValueError):
        return "keypoints are not all numbers"
    unlabelled = np.flatnonzero(triples[:, 2] == 0)
    if unlabelled.size:
        return (f"{unlabelled.size} of {len(triples)} keypoints are not labelled "
                f"(visibility 0), e.g. index {unlabelled[0]}")
    box = None
    if "bbox" in ann:
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
            return f"bbox must be [x, y, width, height], got {bbox!r}"
        x, y, w, h = (float(v) for v in bbox)
        box = (x, y, x + w, y + h)
    image_relpath = normalize_relpath(image["file_name"])
    if image_relpath.startswith("../") or posixpath.isabs(image_relpath):
        return f"file_name {image['file_name']} is outside the image root"
    image_path = root / image_relpath
    if not image_path.is_file():
        return f"image {image_relpath} not found under {root}"
    subset = posixpath.dirname(image_relpath) or "."
    stated = (image["width"], image["height"]) if "width" in image and "height" in image else None
    return FaceAnnotation(
        annotation_path=json_path, image_path=image_path, image_relpath=image_relpath,
        subset=subset, face_id=f"{layout.face_id(dataset, image_relpath)}#{ann.get('id', 0)}",
        landmarks=triples[:, :2].astype(np.float32), box=box, stated_size=stated,
        faces_in_image=faces_per_image[ann.get("image_id")], location=where)
