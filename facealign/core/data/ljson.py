"""Menpo's LJSON landmark files (``<name>.ljson`` beside ``<name>.<image>``).

Menpo stores points as (y, x), row first; they are swapped to (x, y) here.
Versions 1, 2 and 3 of the format are read. A version-3 file may hold several
groups (lenna.ljson has "LJSON" with 68 points and "pupils" with 2): the group
named by ``group``, else the one with the most points, is used.
"""
from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import numpy as np

from facealign.core.data import layout
from facealign.core.data.faces import FaceAnnotation
from facealign.core.data.records import Reject


class LjsonProblem(ValueError):
    """The .ljson file is malformed; the message is the reason."""


def parse_ljson(data, group: str | None = None) -> np.ndarray:
    """Landmarks [N, 2] as (x, y) 0-based pixels; missing (null) points become nan."""
    if not isinstance(data, dict):
        raise LjsonProblem("LJSON must be a JSON object")
    if isinstance(data.get("groups"), dict):                       # version 3
        groups = {name: g.get("landmarks", {}).get("points") if isinstance(g, dict) else None
                  for name, g in data["groups"].items()}
        if not groups:
            raise LjsonProblem("LJSON has no landmark groups")
        if group is not None:
            if group not in groups:
                raise LjsonProblem(f"LJSON has no group {group!r} (has {sorted(groups)})")
            points = groups[group]
        else:
            points = max(groups.values(), key=lambda p: len(p) if isinstance(p, list) else -1)
    elif isinstance(data.get("landmarks"), dict):                  # version 2
        points = data["landmarks"].get("points")
    elif isinstance(data.get("landmarks"), list):                  # version 1
        points = [p.get("point") if isinstance(p, dict) else None for p in data["landmarks"]]
    else:
        raise LjsonProblem("LJSON has neither 'groups' nor 'landmarks'")
    if not isinstance(points, list) or not points:
        raise LjsonProblem("LJSON has no points")
    rows = []
    for i, point in enumerate(points):
        if point is None:
            point = [None, None]
        if not isinstance(point, list) or len(point) != 2:
            raise LjsonProblem(f"LJSON point {i} is not a [y, x] pair: {point!r}")
        try:
            rows.append([np.nan if v is None else float(v) for v in point])
        except (TypeError, ValueError):
            raise LjsonProblem(f"LJSON point {i} is not numeric: {point!r}") from None
    yx = np.asarray(rows, dtype=np.float64)
    return yx[:, ::-1].astype(np.float32)


def read_ljson(path: pathlib.Path, group: str | None = None) -> np.ndarray:
    try:
        return parse_ljson(json.loads(path.read_text(encoding="utf-8")), group)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LjsonProblem(f"not valid JSON ({exc})") from None


def find_ljson_faces(root: pathlib.Path, dataset: str,
                     group: str | None = None) -> Iterator[FaceAnnotation | Reject]:
    """Every .ljson under root parsed into a FaceAnnotation, or a Reject saying why not."""
    return layout.find_annotated_faces(root, dataset, ".ljson",
                                       lambda path: read_ljson(path, group), (LjsonProblem,))
