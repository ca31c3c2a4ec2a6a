"""The 300-W ``.pts`` landmark file: parsing, and the 1-based to 0-based shift.

300-W coordinates follow Matlab: the centre of the top-left pixel is (1, 1).
Everything in facealign uses 0-based pixels, so the parser subtracts 1 and the
writer adds it back; no other module needs to know.
"""
from __future__ import annotations

import pathlib

import numpy as np


class PtsProblem(ValueError):
    """The .pts file is malformed; the message is the reason."""


def parse_pts(text: str) -> np.ndarray:
    """Landmarks of a .pts text as float32 [N, 2] (x, y), 0-based pixels.

    Non-finite values (``nan``) parse; the caller decides what to do with them.
    """
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line]
    if not lines:
        raise PtsProblem("empty .pts file")
    opening = next((i for i, (_, line) in enumerate(lines) if line == "{"), None)
    if opening is None:
        raise PtsProblem("malformed .pts: no '{' line before the points")
    n_points = None
    for number, line in lines[:opening]:
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if not sep or key not in ("version", "n_points"):
            raise PtsProblem(f"malformed .pts header, line {number}: {line[:40]!r}")
        if key == "n_points":
            try:
                n_points = int(value)
            except ValueError:
                raise PtsProblem(f"malformed .pts header, line {number}: n_points "
                                 f"{value.strip()!r} is not a whole number") from None
    if n_points is None:
        raise PtsProblem("malformed .pts header: no n_points line")
    closing = next((i for i in range(opening + 1, len(lines)) if lines[i][1] == "}"), None)
    if closing is None:
        read = len(lines) - opening - 1
        raise PtsProblem(f"truncated .pts: no closing '}}' ({read} of {n_points} point lines)")
    if closing != len(lines) - 1:
        raise PtsProblem(f"malformed .pts: text after the closing '}}' "
                         f"(line {lines[closing + 1][0]})")
    points = []
    for number, line in lines[opening + 1:closing]:
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError
            points.append((float(fields[0]), float(fields[1])))
        except ValueError:
            raise PtsProblem(f"malformed .pts, line {number}: expected 'x y', "
                             f"got {line[:40]!r}") from None
    if len(points) != n_points:
        raise PtsProblem(f"{len(points)} points, but the header says n_points: {n_points}")
    if not points:
        raise PtsProblem("no points (n_points: 0)")
    return (np.asarray(points, dtype=np.float64) - 1.0).astype(np.float32)


def read_pts(path: pathlib.Path) -> np.ndarray:
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PtsProblem("not a text file (cannot be read as UTF-8)") from None
    return parse_pts(text)


def format_pts(landmarks: np.ndarray) -> str:
    """The .pts text of 0-based landmarks [N, 2] (written 1-based, as 300-W does)."""
    points = np.asarray(landmarks, dtype=np.float64) + 1.0
    rows = "\n".join(f"{x:.6f} {y:.6f}" for x, y in points)
    return f"version: 1\nn_points:  {len(points)}\n{{\n{rows}\n}}\n"
