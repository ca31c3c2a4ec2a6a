"""Face boxes: reading box CSVs, the landmark fallback, and what makes a box unusable.

A box CSV has the header ``image,x0,y0,x1,y1``; ``image`` is relative to the
dataset root and the box is in 0-based pixels. Every row that cannot be used
(malformed, duplicate, naming an image that does not exist) becomes a Reject,
so a typo in a CSV never silently turns detector boxes into landmark boxes.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import pathlib
import posixpath

import numpy as np

from facealign.core.data.records import Box, Reject
from facealign.core.data.report import DataError

CSV_HEADER = ("image", "x0", "y0", "x1", "y1")
MIN_INSIDE_FRACTION = 0.5  # of the box's area; detector boxes may overhang an image edge


@dataclasses.dataclass(frozen=True)
class CsvBox:
    box: Box
    origin: str  # "boxes.csv line 12", for messages


def normalize_relpath(path: str) -> str:
    """One spelling per image path: '/'-separated, no './' or duplicate slashes."""
    return posixpath.normpath(path.strip().replace("\\", "/"))


def read_box_csvs(csv_paths, root: pathlib.Path,
                  dataset: str = "") -> tuple[dict[str, CsvBox], list[Reject]]:
    """Boxes by image path (relative to root) from the CSVs, and the rows that were not usable.

    A CSV file that does not exist raises DataError: the source is unusable as configured.
    """
    boxes: dict[str, CsvBox] = {}
    rejects: list[Reject] = []
    for csv_path in csv_paths:
        csv_path = pathlib.Path(csv_path)
        if not csv_path.is_file():
            raise DataError(str(csv_path), "box CSV not found")
        try:
            text = csv_path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            rejects.append(Reject(str(csv_path), "box CSV is not a text file", dataset))
            continue
        rows = list(csv.reader(text.splitlines()))
        header = tuple(field.strip().lower() for field in rows[0]) if rows else ()
        if header != CSV_HEADER:
            rejects.append(Reject(str(csv_path), f"box CSV must start with the header "
                                  f"{','.join(CSV_HEADER)}; got "
                                  f"{','.join(header) or 'an empty file'}",
                                  dataset))
            continue
        for line_number, row in enumerate(rows[1:], 2):
            if not any(field.strip() for field in row):
                continue
            origin = f"{csv_path.name} line {line_number}"
            problem, image, box = _parse_row(row, root)
            if problem is None and image in boxes:
                problem = f"a second box for {image} (the first is {boxes[image].origin})"
            if problem is not None:
                rejects.append(Reject(str(csv_path), f"line {line_number}: {problem}", dataset))
                continue
            boxes[image] = CsvBox(box, origin)
    return boxes, rejects


def _parse_row(row: list[str], root: pathlib.Path):
    if len(row) != len(CSV_HEADER):
        return f"expected {len(CSV_HEADER)} fields (image,x0,y0,x1,y1), got {len(row)}", None, None
    image = normalize_relpath(row[0])
    if not image or image == ".":
        return "empty image path", None, None
    values = []
    for name, field in zip(CSV_HEADER[1:], row[1:]):
        try:
            value = float(field)
        except ValueError:
            return f"{name} {field.strip()!r} is not a number", None, None
        if not math.isfinite(value):
            return f"{name} is not finite ({field.strip()})", None, None
        values.append(value)
    if image.startswith("../") or posixpath.isabs(image):
        return f"image {image} is outside the dataset root", None, None
    if not (root / image).is_file():
        return f"image {image} does not exist under {root}", None, None
    box = tuple(values)
    problem = degenerate_box_problem(box)
    if problem:
        return problem, None, None
    return None, image, box


def landmark_box(landmarks: np.ndarray) -> Box:
    """The landmarks' bounding box, the fallback when no face box is given."""
    x0, y0 = np.min(landmarks, axis=0)
    x1, y1 = np.max(landmarks, axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def degenerate_box_problem(box: Box) -> str | None:
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box):
        return f"box {_fmt(box)} has non-finite coordinates"
    if x1 <= x0 or y1 <= y0:
        return f"degenerate box {_fmt(box)}: needs x1 > x0 and y1 > y0"
    return None


def box_problem(box: Box, image_size: tuple[int, int]) -> str | None:
    """Why a box cannot be used on an image of this size, or None.

    Outside means less than half of the box's area lies on the image: a face at
    the image edge legitimately has a detector box that overhangs it a little.
    """
    problem = degenerate_box_problem(box)
    if problem:
        return problem
    x0, y0, x1, y1 = box
    width, height = image_size
    # pixel centres run from 0 to size-1; the image area spans -0.5 .. size-0.5
    inside_w = max(0.0, min(x1, width - 0.5) - max(x0, -0.5))
    inside_h = max(0.0, min(y1, height - 0.5) - max(y0, -0.5))
    if inside_w * inside_h < MIN_INSIDE_FRACTION * (x1 - x0) * (y1 - y0):
        return f"box {_fmt(box)} lies outside the {width}x{height} image"
    return None


def _fmt(box: Box) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in box) + ")"
