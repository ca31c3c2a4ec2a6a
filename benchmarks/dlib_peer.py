"""dlib's 68-point landmarks as a peer (benchmarks/peer_comparison.py), and its box convention.

dlib is benchmark-only, never a runtime dependency: `pip install -e .[peers]` pins
dlib-bin (dlib's prebuilt wheel) and face_recognition_models (which ships dlib's
shape_predictor_68_face_landmarks.dat, trained on the 300-W training set: AFW, HELEN
train, LFPW train, iBUG; not on the HELEN test faces). The peer is dlib's usual pipeline:
the HOG frontal face detector (`dlib.get_frontal_face_detector()`, upsampling the photo
once) and `dlib.shape_predictor` (Kazemi and Sullivan's regression trees) on its box.

dlib's shape predictor was trained from its detector's boxes, which are smaller and placed
differently from the 300-W boxes our models start from. To start it from the 300-W boxes,
W300_TO_DLIB (a serving/box_convention.py BoxCalibration: centre offset and scale relative
to the 300-W box) maps a 300-W box to the box dlib's detector draws around the same face.
`fit_boxes` fits it on the TRAINING faces of ../shared/data/300w (never the test faces):
every photo's HOG detections are matched to the face's 300-W box by IoU (>= 0.3 as they
are, then >= 0.5 with the 300-W box mapped, which drops a neighbouring face; the two
passes of benchmarks/detector_calibration.py in the other direction), and the least-squares
calibration of the matches is fitted twice.

Boxes are float (x0, y0, x1, y1) pixels; dlib's rectangle has inclusive right and bottom
pixels, so it is (left, top, right + 1, bottom + 1) here, and back rounded. Its landmarks
are whole pixels (dlib rounds them; ~0.3 px RMS, 0.3% of a 100 px inter-ocular distance).

  python benchmarks/dlib_peer.py [--json OUT]   # re-fits W300_TO_DLIB: ~6 min on one core
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from serving import box_convention  # noqa: E402
from serving.box_convention import BoxCalibration  # noqa: E402

TRAINING = REPO.parent / "shared" / "data" / "300w"
TRAINING_BOXES = ("afw.csv", "helen_trainset.csv")
UPSAMPLE = 1                      # dlib's HOG detector upsamples the photo once (its usual call)
RAW_MATCH_IOU, MATCH_IOU = 0.3, 0.5
PREDICTOR_FILE = "models/shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = "pip install -e .[peers]"

# 300-W box -> dlib HOG box, fitted by `python benchmarks/dlib_peer.py` on the shared 300-W
# training photos (AFW 337 + HELEN train 870 faces), dlib-bin 20.0.1, upsample 1, 2026-12-06:
# 1,140 of the 1,207 faces matched (1,147 in the raw pass; no detection in 57 photos). dlib's
# box is larger (1.08 times the 300-W box's width and height) and higher (by 0.085 of the
# height). Fit quality: mean IoU of dlib's detection with the 300-W box 0.713 as it is, 0.766
# mapped (median 0.781, 10th percentile 0.654); residual spread (std over faces) of dx, dy,
# sx, sy: 0.087, 0.059, 0.114, 0.106. The spread is mostly dlib's: its HOG windows come in
# discrete sizes (a pyramid of 5/6 steps: 269, 224, 187, 156 px ... on these photos).
# Control: dlib's NME from its own detector on these faces it trained on: HELEN train 2.61%
# (838 faces), AFW 3.48% (302); on the 110 HELEN test faces 2.47% (peer_comparison.py).
W300_TO_DLIB = BoxCalibration(dx=0.0002, dy=-0.0847, sx=1.0788, sy=1.0838)


class PeerMissing(RuntimeError):
    """A package the dlib rows need is not installed; the message is one line naming it."""


def predictor_path() -> pathlib.Path:
    """dlib's 68-point model in face_recognition_models, found without importing the package
    (its __init__ imports pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise PeerMissing(f"face_recognition_models is not installed (dlib's 68-point model): "
                          f"{INSTALL_HINT}")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / PREDICTOR_FILE
    if not path.is_file():
        raise PeerMissing(f"face_recognition_models has no {PREDICTOR_FILE}: reinstall it "
                          f"({INSTALL_HINT})")
    return path


def import_dlib():
    """The dlib module; PeerMissing naming the package when it is not installed."""
    try:
        import dlib
    except ImportError:
        raise PeerMissing(f"dlib is not installed (the dlib rows need it): {INSTALL_HINT} "
                          "(dlib-bin, face_recognition_models)") from None
    return dlib


def to_rect(dlib, box):
    """dlib.rectangle of a float box [4] (inclusive right and bottom pixels)."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in np.asarray(box).reshape(4))
    return dlib.rectangle(x0, y0, max(x1 - 1, x0), max(y1 - 1, y0))


def from_rects(rects) -> np.ndarray:
    """float64 [K, 4] boxes of dlib rectangles."""
    return np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects],
                    np.float64).reshape(-1, 4)


class DlibAligner:
    """dlib's HOG detector and 68-point shape predictor, on uint8 RGB (or gray) arrays."""

    def __init__(self):
        dlib = import_dlib()
        model = predictor_path()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model))
        self.version = dlib.__version__

    def detect(self, image) -> np.ndarray:
        """[K, 4] boxes of the faces dlib's HOG detector finds (dlib's convention)."""
        return from_rects(self._detector(image, UPSAMPLE))

    def landmarks(self, image, box) -> np.ndarray:
        """float32 [68, 2] from a box [4] in dlib's convention."""
        shape = self._predictor(image, to_rect(self._dlib, box))
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)

    def align(self, image) -> list[tuple[np.ndarray, np.ndarray]]:
        """(box, landmarks) of every detected face: the whole per-photo pipeline."""
        return [(box, self.landmarks(image, box)) for box in self.detect(image)]


def matched(detections, targets, calibration, min_iou):
    """(indices of the faces matched, their detections [F, 4]): each face's detection
    overlapping its target box mapped by `calibration` most, if by >= min_iou."""
    indices, boxes = [], []
    for i, (found, target) in enumerate(zip(detections, targets, strict=True)):
        best = box_convention.match(found, calibration.apply(target)[0], min_iou)
        if best is not None:
            indices.append(i)
            boxes.append(np.asarray(found, np.float64).reshape(-1, 4)[best])
    return indices, np.array(boxes, np.float64).reshape(-1, 4)


def fit_boxes(detections, targets) -> dict:
    """The two-pass least-squares fit of target (300-W) box -> detection, and its quality.

    detections: per face, [K, 4] boxes (K may be 0); targets [F, 4]. Returns the
    BoxCalibration, the faces matched in each pass, the photos without a detection, the
    IoU of the matched detections with the target boxes (the mean as they are; mapped: the
    mean, 10th percentile and median), and the residual spread (std over faces) of the four
    fitted numbers."""
    targets = np.asarray(targets, np.float64).reshape(-1, 4)
    first, found = matched(detections, targets, box_convention.IDENTITY, RAW_MATCH_IOU)
    calibration = box_convention.fit(targets[first], found)
    indices, found = matched(detections, targets, calibration, MATCH_IOU)
    calibration = box_convention.fit(targets[indices], found)
    offsets = box_convention.relative_offsets(targets[indices], found)

    def ious(boxes):
        return np.array([box_convention.box_iou(box, seen)[0]
                         for box, seen in zip(boxes, found, strict=True)])

    mapped = ious(calibration.apply(targets[indices]))
    return {"calibration": calibration, "matched": len(indices), "raw_matched": len(first),
            "no_detection": sum(len(np.reshape(d, (-1, 4))) == 0 for d in detections),
            "mean_iou_unmapped": round(float(ious(targets[indices]).mean()), 4),
            "mean_iou_mapped": round(float(mapped.mean()), 4),
            "iou_mapped_p10_p50": np.percentile(mapped, [10, 50]).round(4).tolist(),
            "residual_std": offsets.std(axis=0).round(4).tolist()}


def training_nme(faces, detections, shapes, calibration) -> dict:
    """A control for the test figures: per subset, dlib's inter-ocular NME (percent) from its
    own detector on these faces, which are in its training set (the detection matched as
    the fit matches: IoU >= 0.5 with the mapped 300-W box)."""
    from facealign.core import metrics

    errors: dict[str, list[float]] = {}
    for face, found, points in zip(faces, detections, shapes, strict=True):
        best = box_convention.match(found, calibration.apply(face.box)[0], MATCH_IOU)
        if best is not None:
            errors.setdefault(face.subset, []).append(metrics.face_errors(
                points[best][None], np.asarray(face.landmarks)[None])[0])
    return {subset: {"faces": len(values), "nme_inter_ocular": round(100 * np.mean(values), 3)}
            for subset, values in errors.items()}


def training_faces(root=TRAINING):
    """The shared 300-W training faces with their 300-W boxes (AFW and HELEN train)."""
    from facealign.core.data import BOX_FROM_DETECTOR, read_dataset

    root = pathlib.Path(root)
    records, _ = read_dataset(root, "300w", boxes=[root / "boxes" / n for n in TRAINING_BOXES])
    return [r for r in records if r.box_source == BOX_FROM_DETECTOR]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(TRAINING),
                        help="300-W training folder (never the test faces)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    import cv2

    try:
        aligner = DlibAligner()
    except PeerMissing as exc:
        sys.exit(f"dlib_peer: {exc}")
    faces = training_faces(args.data)
    print(f"dlib_peer: detecting on {len(faces)} training faces", flush=True)
    started, detections, shapes = time.perf_counter(), [], []
    for i, face in enumerate(faces):
        rgb = cv2.cvtColor(cv2.imread(str(face.image_path)), cv2.COLOR_BGR2RGB)
        found = aligner.align(rgb)
        detections.append(np.array([box for box, _ in found]).reshape(-1, 4))
        shapes.append([points for _, points in found])
        if (i + 1) % 200 == 0:
            print(f"dlib_peer: {i + 1}/{len(faces)}", flush=True)
    fitted = fit_boxes(detections, [face.box for face in faces])
    calibration = fitted.pop("calibration")
    result = {"data": args.data, "faces": len(faces), "dlib": aligner.version,
              "upsample": UPSAMPLE, **{k: round(v, 4) for k, v in vars(calibration).items()},
              **fitted, "training_nme": training_nme(faces, detections, shapes, calibration),
              "seconds": round(time.perf_counter() - started, 1), "cpus": os.cpu_count()}
    print(f"W300_TO_DLIB = BoxCalibration(dx={result['dx']}, dy={result['dy']}, "
          f"sx={result['sx']}, sy={result['sy']})  # {fitted['matched']} of {len(faces)} faces")
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
