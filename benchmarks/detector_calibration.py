"""Fits the box calibrations of serving/detector.py: each detector's raw box -> the 300-W box.

The landmark models were trained from the 300-W face-detector boxes
(../shared/data/300w/boxes/*.csv). For every face of the chosen subsets of
the shared 300-W photos (default: AFW, 337 faces; HELEN is left for
benchmarks/detector_comparison.py to measure on), each detector runs
uncalibrated on the photo: every BlazeFace model alone (blazeface-short, -back,
-full; the default "blazeface" maps each of its stages' boxes by its model's
calibration) and haar. The detection overlapping the face's CSV box most
is its match if the IoU is >= 0.3 (raw boxes are in another convention). A
BoxCalibration (serving/box_convention.py: centre offset and scale relative
to the detector box) is fitted to the matches by least squares; then the
faces are matched again with the mapped boxes at IoU >= 0.5, which drops
detections of a neighbouring face, and the calibration is fitted once more.
It prints a table, the constants to paste into serving/detector.py, and JSON.

  python benchmarks/detector_calibration.py                  # AFW, ~1 min on one core
  python benchmarks/detector_calibration.py --subsets afw helen/trainset
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from facealign.core.data import BOX_FROM_DETECTOR, read_dataset  # noqa: E402
from serving import box_convention  # noqa: E402
from serving import detector as face_detector  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "300w"
BOX_CSVS = ("afw.csv", "helen_trainset.csv")
RAW_MATCH_IOU, MATCH_IOU = 0.3, 0.5
# every detector with one calibration: each BlazeFace variant (the default "blazeface" cascade
# maps each stage's boxes by its variant's) and the Haar cascade
CONSTANT_NAMES = {**{name: f"BLAZEFACE_{variant.upper()}_TO_300W"
                     for name, variant in face_detector.VARIANT_NAMES.items()},
                  "haar": "HAAR_TO_300W"}


def read_faces(subsets, data=DATA):
    """The shared 300-W faces with a detector box from the CSVs, of the given subsets."""
    records, _ = read_dataset(data, "300w", boxes=[data / "boxes" / name for name in BOX_CSVS],
                              name="300w")
    return [r for r in records if r.box_source == BOX_FROM_DETECTOR and r.subset in subsets]


def limit_threads(threads: int) -> None:
    """One core by default: these scripts share the machine with training."""
    import cv2
    import tensorflow as tf

    cv2.setNumThreads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def detect_all(detector, faces) -> tuple[list[np.ndarray], float]:
    """(boxes [K, 4] per face's photo, mean seconds per photo)."""
    import cv2

    found, seconds = [], 0.0
    for face in faces:
        image = cv2.imread(str(face.image_path))
        start = time.perf_counter()
        found.append(np.asarray(detector.detect(image), np.float32).reshape(-1, 4))
        seconds += time.perf_counter() - start
    return found, seconds / max(len(faces), 1)


def matched(detections, targets, calibration, min_iou):
    """(indices of matched faces, their detector boxes [F, 4]) under `calibration`."""
    indices, boxes = [], []
    for i, (found, target) in enumerate(zip(detections, targets, strict=True)):
        best = box_convention.match(calibration.apply(found), target, min_iou)
        if best is not None:
            indices.append(i)
            boxes.append(found[best])
    return indices, np.array(boxes, np.float64).reshape(-1, 4)


def fit_detector(detections, targets) -> dict:
    """The two-pass fit described above, with the residual spread of the matched faces."""
    first, raw = matched(detections, targets, box_convention.IDENTITY, RAW_MATCH_IOU)
    calibration = box_convention.fit(raw, targets[first])
    indices, raw = matched(detections, targets, calibration, MATCH_IOU)
    calibration = box_convention.fit(raw, targets[indices])
    offsets = box_convention.relative_offsets(raw, targets[indices])
    def mean_iou(boxes):
        return round(float(np.mean([box_convention.box_iou(box, target)[0]
                                    for box, target in zip(boxes, targets[indices], strict=True)])),
                     4)

    return {"calibration": calibration, "faces": len(indices), "raw_matches": len(first),
            "residual_std": offsets.std(axis=0).round(4).tolist(),
            "mean_iou_raw": mean_iou(raw), "mean_iou_after": mean_iou(calibration.apply(raw))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subsets", nargs="+", default=["afw"],
                        help="300-W subsets to fit on (afw, helen/trainset; default afw)")
    parser.add_argument("--detectors", nargs="+", default=list(CONSTANT_NAMES),
                        choices=list(CONSTANT_NAMES))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    faces = read_faces(set(args.subsets))
    targets = np.array([face.box for face in faces], np.float64)
    print(f"detector_calibration: {len(faces)} faces of {', '.join(args.subsets)}", flush=True)
    result = {"subsets": args.subsets, "faces": len(faces), "detectors": {}}
    for name in args.detectors:
        raw_detector = face_detector.create(name, calibrated=False)
        detections, seconds = detect_all(raw_detector, faces)
        fitted = fit_detector(detections, targets)
        calibration = fitted.pop("calibration")
        result["detectors"][name] = {
            "detector": raw_detector.name, "seconds_per_photo": round(seconds, 4),
            **{k: round(v, 4) for k, v in vars(calibration).items()}, **fitted}
    print(f"\n{'detector':16} {'faces':>6} {'dx':>8} {'dy':>8} {'sx':>8} {'sy':>8} "
          f"{'IoU raw':>8} {'IoU after':>9}")
    for name, row in result["detectors"].items():
        print(f"{name:16} {row['faces']:>6} {row['dx']:>8.4f} {row['dy']:>8.4f} "
              f"{row['sx']:>8.4f} {row['sy']:>8.4f} {row['mean_iou_raw']:>8.3f} "
              f"{row['mean_iou_after']:>9.3f}")
    print()
    for name, row in result["detectors"].items():
        print(f"{CONSTANT_NAMES[name]} = BoxCalibration(dx={row['dx']}, dy={row['dy']}, "
              f"sx={row['sx']}, sy={row['sy']})  # {row['faces']} faces")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
