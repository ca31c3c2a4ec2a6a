"""Issue #26's "train on the box that is served": 300-W box CSVs with the served boxes.

The models learn to start from a box. The 300-W CSV boxes come from 300-W's own face
detector; the product starts from serving/detector.py's (BlazeFace, calibrated to the
300-W convention). For every row of the given CSVs the served detector runs on the
row's photo, and the detection that overlaps the row's box most (IoU >= 0.5) replaces
it; where none does, the CSV box stays. The new CSVs, same names and columns, go to
--out; a configuration uses them by its source's `boxes` (benchmarks/lever_ablation.py's
served-boxes lever). Prints how many boxes were replaced and their mean IoU with the
CSV boxes.

  python benchmarks/served_boxes.py --out runs/served-boxes     # ~7 s on 2 cores
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.detector_calibration import BOX_CSVS, DATA, MATCH_IOU, limit_threads  # noqa: E402
from facealign.core.data.boxes import CSV_HEADER as COLUMNS  # noqa: E402
from facealign.core.data.boxes import read_box_csvs  # noqa: E402
from serving import box_convention  # noqa: E402


def served_rows(rows: list[dict], data: pathlib.Path, detect) -> tuple[list[dict], list[float]]:
    """(the rows with matched boxes replaced, the IoU of each replaced box with its CSV box)."""
    import cv2

    found: dict[str, np.ndarray] = {}
    out, overlaps = [], []
    for row in rows:
        path = row["image"]
        if path not in found:
            image = cv2.imread(str(data / path))
            found[path] = (np.zeros((0, 4)) if image is None
                           else np.asarray(detect(image), np.float64).reshape(-1, 4))
        box = np.array([float(row[k]) for k in COLUMNS[1:]])
        best = box_convention.match(found[path], box, MATCH_IOU)
        if best is None:
            out.append(dict(row))
            continue
        overlaps.append(float(box_convention.box_iou(box, found[path][best])[0]))
        out.append({"image": path, **{k: f"{v:.2f}" for k, v in zip(COLUMNS[1:],
                                                                    found[path][best])}})
    return out, overlaps


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    parser.add_argument("--csvs", nargs="+", default=list(BOX_CSVS))
    parser.add_argument("--threads", type=int, default=None,
                        help="cores for OpenCV and TensorFlow (default: as they choose); set "
                             "before either starts, so not from a process that runs them")
    args = parser.parse_args(argv)
    if args.threads:
        limit_threads(args.threads)
    from serving import detector

    detect = detector.create().detect
    args.out.mkdir(parents=True, exist_ok=True)
    result = {}
    for name in args.csvs:
        # the project's reader: a malformed row or a missing photo is a reject, said and counted
        boxes, rejects = read_box_csvs([args.data / "boxes" / name], args.data)
        for reject in rejects:
            print(f"served_boxes: rejected {reject}", flush=True)
        rows = [{"image": image, **dict(zip(COLUMNS[1:], entry.box))}
                for image, entry in boxes.items()]
        replaced, overlaps = served_rows(rows, args.data, detect)
        with open(args.out / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({k: row[k] for k in COLUMNS} for row in replaced)
        result[name] = {"faces": len(rows), "served": len(overlaps),
                        "kept_csv_box": len(rows) - len(overlaps), "rejected": len(rejects),
                        "mean_iou": round(float(np.mean(overlaps)), 4) if overlaps else None}
        print(f"served_boxes: {name}: {len(overlaps)} of {len(rows)} boxes from the served "
              f"detector (mean IoU with the CSV box {result[name]['mean_iou']}), "
              f"{len(rows) - len(overlaps)} kept, {len(rejects)} rows rejected; wrote "
              f"{args.out / name}", flush=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
