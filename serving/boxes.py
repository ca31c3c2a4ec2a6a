"""Face boxes given by a caller: x0, y0, x1, y1 in the image's pixels, checked once here.

The serving signature takes any float box; a swapped corner or a NaN would
come back as landmarks of nothing, so bad boxes are refused before the model.
"""
from __future__ import annotations

import numpy as np

from serving.errors import BoxError


def as_boxes(boxes, name: str = "boxes") -> np.ndarray:
    """float32 [K, 4] from one box [4] or a list [K, 4]; BoxError names `name` otherwise."""
    try:
        array = np.asarray(boxes, np.float64)
    except (TypeError, ValueError):
        raise BoxError(f"{name}: give numbers x0, y0, x1, y1 (pixels), one box [4] or a list "
                       "[K, 4]") from None
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise BoxError(f"{name} of shape {list(np.shape(boxes))}: give one box [4] or a list "
                       "[K, 4] of x0, y0, x1, y1 (pixels)")
    for i, box in enumerate(array):
        where = name if len(array) == 1 else f"{name}[{i}]"
        if not np.all(np.isfinite(box)):
            raise BoxError(f"{where} {box.tolist()}: not finite")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise BoxError(f"{where} {box.tolist()}: x1 must exceed x0 and y1 must exceed y0")
    return array.astype(np.float32)


def parse_box(text: str) -> np.ndarray:
    """'x0,y0,x1,y1' -> float32 [4]; BoxError unless 4 numbers with x1 > x0 and y1 > y0."""
    try:
        values = [float(v) for v in str(text).replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not np.all(np.isfinite(values)):
        raise BoxError(f"{text!r}: give four numbers x0,y0,x1,y1 (pixels)")
    if values[2] <= values[0] or values[3] <= values[1]:
        raise BoxError(f"{text!r}: x1 must exceed x0 and y1 must exceed y0")
    return np.asarray(values, np.float32)
