"""The face detectors of serving/detector.py on the shared 300-W photos: detection rate and NME.

For every face of the shared 300-W training photos (AFW 337 + HELEN 870
faces; `--limit` takes every n-th) each detector (default: blazeface and
haar; `--detectors` takes any name of serving/detector.py) runs on the photo as
`facealign predict` runs it. Its detection of the annotated face is the box
overlapping the face's 300-W box (the CSV box the model was trained from) by
IoU >= 0.5 once mapped to the 300-W convention; no such box: a miss. The
model (default pretrained/dan-300w, through facealign.load, i.e.
serving.aligner and the serving signature) then starts from each box of the
face in one batch: the CSV box, each detector's calibrated box and its raw box
(the same detection, unmapped: what the calibration changes), and the
inter-ocular NME (facealign.core.metrics) is taken against the 68 annotated points.

Two caveats, so three groups of faces:
- The calibrations were fitted on AFW (benchmarks/detector_calibration.py):
  HELEN measures them on faces they were not fitted on, AFW on their own.
- pretrained/dan-300w was trained on these photos except 100 faces held out
  at random (seed 0; facealign.core.splits.held_out_faces of its configuration):
  "held_out" are those, the only faces the model never saw. On the others the
  NMEs are training-set figures, fine for comparing boxes, not as accuracy.
NMEs are given over the faces each detector found, and over the faces every
detector found ("common"), where the box sources compare on the same faces.

Prints a table and JSON (also written with --json), with the CPU model and
cpu_share (process CPU time / (wall time x cores): how much of the machine
the run got). One thread by default (shared machine): ~10 minutes for all
1,207 faces on 2 cores.

  python benchmarks/detector_comparison.py [--model pretrained/dan-300w] [--limit 1]
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
from facealign.core import config as config_lib  # noqa: E402
from facealign.core import metrics  # noqa: E402
from facealign.core.splits import held_out_faces  # noqa: E402
from serving import box_convention  # noqa: E402
from serving import detector as face_detector  # noqa: E402

HELD_OUT_CONFIG = REPO / "configs" / "300w.yaml"   # the pipeline that trained pretrained/dan-300w
FAILURE = 0.08
SUBSETS = {"afw": "afw (calibration fitted here)", "helen/trainset": "helen (unseen by the "
           "calibration)", "held_out": "held_out (unseen by the model)"}


def held_out_ids() -> set[str]:
    """The faces the 300-W pipeline held out for validation (pretrained/dan-300w's)."""
    return {face.face_id for face in held_out_faces(config_lib.load(HELD_OUT_CONFIG))}


def box_sources(faces, detectors):
    """{source: [box [4] or None per face]} and seconds per photo for each detector.

    Sources: "csv", and per detector its calibrated box and "<name> raw" (the same
    detection before the mapping)."""
    import cv2

    sources = {"csv": [np.asarray(f.box, np.float32) for f in faces]}
    seconds = {}
    for name, detector in detectors.items():
        calibrated, raw, spent = [], [], 0.0
        for face in faces:
            image = cv2.imread(str(face.image_path))
            start = time.perf_counter()
            found, mapped = detector.raw_and_mapped(image)  # the default: its answering stage's
            spent += time.perf_counter() - start
            best = box_convention.match(mapped, face.box, MATCH_IOU)
            calibrated.append(None if best is None else mapped[best])
            raw.append(None if best is None else found[best])
        sources[name], sources[f"{name} raw"] = calibrated, raw
        seconds[name] = spent / max(len(faces), 1)
        print(f"detector_comparison: {name}: found {sum(b is not None for b in calibrated)}"
              f"/{len(faces)} faces, {1000 * seconds[name]:.1f} ms a photo", flush=True)
    return sources, seconds


def calibrations(detector) -> dict:
    """The detector's BoxCalibration as a dict, or {stage: dict} for the staged default."""
    if hasattr(detector, "stages"):
        return {stage.label: vars(stage.calibration) for stage in detector.stages}
    return vars(detector.calibration)


def face_errors(aligner, faces, sources) -> dict[str, np.ndarray]:
    """{source: [F] inter-ocular NME, NaN where the source has no box}, one batch a face."""
    names = list(sources)
    errors = {name: np.full(len(faces), np.nan) for name in names}
    for i, face in enumerate(faces):
        present = [n for n in names if sources[n][i] is not None]
        found = aligner.align(str(face.image_path), np.stack([sources[n][i] for n in present]))
        predicted = np.stack([f.landmarks for f in found])
        truth = np.repeat(np.asarray(face.landmarks)[None], len(found), axis=0)
        for name, error in zip(present, metrics.face_errors(predicted, truth), strict=True):
            errors[name][i] = error
        if (i + 1) % 200 == 0:
            print(f"detector_comparison: aligned {i + 1}/{len(faces)} faces", flush=True)
    return errors


def summarise(errors, members, detectors) -> dict:
    """Per box source: faces found, detection rate, NME and failure rate (own and common)."""
    count = int(members.sum())
    common = members.copy()
    for name in detectors:
        common &= ~np.isnan(errors[name])
    rows = {}
    for name, values in errors.items():
        own = values[members & ~np.isnan(values)]
        rows[name] = {
            "found": int(len(own)), "detection_rate": round(len(own) / max(count, 1), 4),
            "nme": round(float(own.mean()), 5) if len(own) else None,
            "failure_rate": round(float((own >= FAILURE).mean()), 4) if len(own) else None,
            "nme_common": round(float(values[common].mean()), 5) if common.any() else None,
            "failure_rate_common": (round(float((values[common] >= FAILURE).mean()), 4)
                                    if common.any() else None)}
    return {"faces": count, "common_faces": int(common.sum()), "sources": rows}


def print_table(result) -> None:
    for subset, summary in result["subsets"].items():
        print(f"\n{SUBSETS[subset]}: {summary['faces']} faces, {summary['common_faces']} found "
              f"by every detector")
        print(f"  {'box from':22} {'found':>15} {'NME (own)':>10} {'fail@0.08':>9} "
              f"{'NME (common)':>12} {'fail@0.08':>9}")
        for name, row in summary["sources"].items():
            def pct(v):
                return "-" if v is None else f"{100 * v:.2f}%"
            print(f"  {name:22} {row['found']:>6} ({pct(row['detection_rate']):>7}) "
                  f"{pct(row['nme']):>10} {pct(row['failure_rate']):>9} "
                  f"{pct(row['nme_common']):>12} {pct(row['failure_rate_common']):>9}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "pretrained" / "dan-300w"))
    parser.add_argument("--detectors", nargs="+", default=[face_detector.DEFAULT, "haar"],
                        choices=face_detector.NAMES)
    parser.add_argument("--limit", type=int, default=1, help="take every n-th face (default 1)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", dest="json_out", help="also write the JSON here")
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    import facealign
    from trainer.precision import cpu_model

    all_faces = read_faces({"afw", "helen/trainset"})
    held_out = held_out_ids()
    faces = all_faces[::args.limit]
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    detectors = {name: face_detector.create(name) for name in args.detectors}
    sources, seconds = box_sources(faces, detectors)
    errors = face_errors(facealign.load(args.model), faces, sources)
    subsets = {"afw": np.array([f.subset == "afw" for f in faces]),
               "helen/trainset": np.array([f.subset == "helen/trainset" for f in faces]),
               "held_out": np.array([f.face_id in held_out for f in faces])}
    wall = time.perf_counter() - wall_start
    result = {
        "model": args.model, "faces": len(faces), "every_nth": args.limit,
        "match_iou": MATCH_IOU, "failure_threshold": FAILURE,
        "detectors": {name: {"detector": detector.name,
                             "calibration": calibrations(detector),
                             "ms_per_photo": round(1000 * seconds[name], 2)}
                      for name, detector in detectors.items()},
        "subsets": {subset: summarise(errors, members, detectors)
                    for subset, members in subsets.items()},
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
