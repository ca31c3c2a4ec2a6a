"""Spans of real faces for the tests: the demo faces dealt into span folders, as a
team receiving annotated batches would lay them out (`<base>/<span>/...`)."""
from __future__ import annotations

import csv
import pathlib
import shutil

REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO = REPO / "demo_data" / "300w"


def demo_boxes() -> dict[str, list[float]]:
    with open(DEMO / "boxes.csv") as handle:
        return {row["image"]: [float(row[k]) for k in ("x0", "y0", "x1", "y1")]
                for row in csv.DictReader(handle)}


def write_span(folder: pathlib.Path, images: list[str], box_scale: float = 1.0) -> None:
    """The given demo images (paths relative to the demo root) with their annotations and a
    boxes.csv; box_scale grows each box about its centre (a detector that changed)."""
    boxes = demo_boxes()
    rows = []
    for image in images:
        target = folder / image
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEMO / image, target)
        shutil.copy((DEMO / image).with_suffix(".pts"), target.with_suffix(".pts"))
        x0, y0, x1, y1 = boxes[image]
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        rows.append([image, cx - hw * box_scale, cy - hh * box_scale,
                     cx + hw * box_scale, cy + hh * box_scale])
    with open(folder / "boxes.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "x0", "y0", "x1", "y1"])
        writer.writerows(rows)


def deal_spans(base: pathlib.Path, count: int = 3) -> list[list[str]]:
    """The 60 demo faces dealt round-robin into spans 1..count under base/<span>/ (afw and
    helen mixed in each); returns each span's images."""
    images = sorted(demo_boxes())
    dealt = [images[i::count] for i in range(count)]
    for span, chosen in enumerate(dealt, start=1):
        write_span(base / str(span), chosen)
    return dealt


def spanned_source(base: pathlib.Path, name: str = "arrivals") -> dict:
    return {"name": name, "format": "300w", "root": str(base / "{SPAN}"),
            "boxes": [str(base / "{SPAN}" / "boxes.csv")], "split": "train"}
