"""Regenerates demo_data/300w: 60 real 300-W faces, small enough to live in the repo.

Usage: python demo_data/make_demo_data.py [--source ../shared/data/300w] [--out demo_data/300w]

Picks 30 AFW and 30 HELEN training faces, evenly spaced through each folder's
sorted file list (deterministic), downscales each image so its longest side is
192 px (JPEG quality 90), and maps the landmarks and detector boxes with the
same transform. The output has the 300-W layout (afw/, helen/trainset/, .pts
beside .jpg) and one box CSV, boxes.csv, with paths relative to the output.
"""
from __future__ import annotations

import argparse
import csv
import pathlib
import shutil
import sys

import numpy as np
from PIL import Image

from facealign.core.data import read_dataset
from facealign.core.data.boxes import read_box_csvs
from facealign.core.data.pts import format_pts, read_pts

HERE = pathlib.Path(__file__).resolve().parent
SUBSETS = {  # subset folder -> its box CSV in the source
    "afw": "boxes/afw.csv",
    "helen/trainset": "boxes/helen_trainset.csv",
}
FACES_PER_SUBSET = 30
LONGEST_SIDE = 192
JPEG_QUALITY = 90


def pick_evenly(items: list, count: int) -> list:
    return [items[i * len(items) // count] for i in range(count)]


def resized_coordinates(points: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """0-based pixel-centre coordinates after resizing by (scale_x, scale_y).

    A resize maps the image area, not the pixel centres: the edge -0.5 stays at
    -0.5, so x' = (x + 0.5) * s - 0.5 (as PIL and OpenCV resample). Plain
    x * s would put every point up to half a source pixel off.
    """
    scale = np.array([scale_x, scale_y])
    return (np.asarray(points, dtype=np.float64) + 0.5) * scale - 0.5


def make(source: pathlib.Path, out: pathlib.Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    box_rows = []
    for subset, csv_name in SUBSETS.items():
        boxes, rejects = read_box_csvs([source / csv_name], source)
        if rejects:
            sys.exit(f"{source / csv_name}: unusable rows: {rejects[:3]}")
        pts_files = sorted((source / subset).glob("*.pts"))
        (out / subset).mkdir(parents=True)
        for pts_path in pick_evenly(pts_files, FACES_PER_SUBSET):
            image_path = pts_path.with_suffix(".jpg")
            with Image.open(image_path) as image:
                image.load()
                width, height = image.size
                scale = LONGEST_SIDE / max(width, height)
                new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
                small = image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode)
                small = small.resize(new_size, Image.Resampling.LANCZOS)
            scale_x, scale_y = new_size[0] / width, new_size[1] / height
            small.save(out / subset / image_path.name, quality=JPEG_QUALITY)
            landmarks = resized_coordinates(read_pts(pts_path), scale_x, scale_y)
            (out / subset / pts_path.name).write_text(format_pts(landmarks))
            relpath = f"{subset}/{image_path.name}"
            x0, y0, x1, y1 = boxes[relpath].box
            (nx0, ny0), (nx1, ny1) = resized_coordinates([[x0, y0], [x1, y1]], scale_x, scale_y)
            box_rows.append([relpath] + [f"{v:.3f}" for v in (nx0, ny0, nx1, ny1)])
    with open(out / "boxes.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "x0", "y0", "x1", "y1"])
        writer.writerows(box_rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=pathlib.Path, default=HERE.parent.parent / "shared" / "data" / "300w"
    )
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "300w")
    args = parser.parse_args()
    make(args.source, args.out)
    records, report = read_dataset(args.out, boxes=[args.out / "boxes.csv"])
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: {report.accepted} faces accepted, {report.rejected} rejected, "
          f"{size / 1e6:.2f} MB")
    return 0 if report.accepted == 2 * FACES_PER_SUBSET and report.rejected == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
