"""Where one face's time goes through the Python API with a LiteRT model, against the network.

#26's bar: at batch 1, ``facealign.load(model.tflite).align(rgb_array, boxes=box)``
spends at most 1.3x the network's own time (the interpreter's call on a
ready canonical crop). This times, on real 300-W test photos decoded
beforehand, each step the API takes for one face:

- ``image``: the array wrapped as a serving.images.Image (RGB -> BGR);
- ``box_fit``: S0 fitted to the box (geometry.box_fit_transform);
- ``crop``: facealign/core/crop.py's numpy crop, and, for reference, the same
  crop through its general per-pixel gather (the first implementation, used
  for rotated transforms; a box fit takes the separable block read);
- ``network``: the interpreter alone (serving/litert.py);
- ``align``: the whole call, Face objects included;
- ``align_saved_model``: the same call on the SavedModel (TensorFlow), for scale.

Every step is warmed up, then timed in interleaved rounds; each figure is its
fastest round. cpu_share (process CPU time / (wall time x cores), over the
timing) says how much of the machine the run got: take figures with nothing
else running. Prints one JSON object.

  python benchmarks/api_latency.py --tflite fast-int8.tflite [--saved-model SAVED_MODEL]
  python benchmarks/api_latency.py        # exports pretrained/dan-300w-fast as int8 first
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "data"
TEST_FACES = SHARED / "300w-test"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite", help="a .tflite export (default: pretrained/dan-300w-fast "
                                         "exported as int8 here, calibrated on AFW faces)")
    parser.add_argument("--saved-model", default="pretrained/dan-300w-fast",
                        help="the SavedModel for the reference row ('' to skip it)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads")
    parser.add_argument("--photos", type=int, default=4, help="300-W test photos to cycle")
    parser.add_argument("--calls", type=int, default=100, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args(argv)


def int8_export(out: str) -> str:
    """pretrained/dan-300w-fast as int8 LiteRT, as `facealign export` writes it."""
    from facealign import cli

    code = cli.main(["export", "--model", str(REPO / "pretrained" / "dan-300w-fast"),
                     "--format", "tflite", "--quantize", "int8", "--calibration-data",
                     str(SHARED / "300w" / "afw"), "--boxes",
                     str(SHARED / "300w" / "boxes" / "afw.csv"), "--out", out])
    if code:
        raise SystemExit(f"api_latency.py: the int8 export failed ({code})")
    return out


def test_photos(count: int):
    """[(rgb uint8 array, box float32 [4])] of the first `count` public test faces."""
    import cv2
    import numpy as np

    rows = (TEST_FACES / "boxes" / "helen_testset.csv").read_text().splitlines()[1:count + 1]
    photos = []
    for row in rows:
        name, *box = row.split(",")
        bgr = cv2.imread(str(TEST_FACES / name))
        photos.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.asarray(box, np.float32)))
    return photos


def fastest_ms(steps: dict, photos, calls: int, rounds: int) -> dict:
    """{step: ms per call}: each step called `calls` times per round on the photos in turn,
    the rounds interleaved across steps, the fastest round kept."""
    best = dict.fromkeys(steps, float("inf"))
    for step in steps.values():
        for photo in photos:
            step(*photo)
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for i in range(calls):
                step(*photos[i % len(photos)])
            best[name] = min(best[name], (time.perf_counter() - start) / calls)
    return {name: round(1000 * seconds, 3) for name, seconds in best.items()}


def main(argv=None) -> dict:
    args = parse_args(argv)
    import numpy as np

    import facealign
    from facealign.core import crop, geometry
    from serving.images import from_rgb
    from trainer.precision import cpu_model

    scratch = tempfile.TemporaryDirectory()
    tflite = args.tflite or int8_export(os.path.join(scratch.name, "fast-int8.tflite"))
    aligner = facealign.load(tflite, num_threads=args.threads)
    model = aligner.model
    photos = test_photos(args.photos)
    prepared = {}   # per photo: the box fit and the crop, so each step is timed alone
    for rgb, box in photos:
        transform = geometry.box_fit_transform(model.mean_shape, box)
        prepared[id(rgb)] = (transform, crop.crops_numpy(rgb, transform, model.image_size))
    general = np.float32([[0, 1e-30, 0], [0, 0, 0]])   # any rotation term: the general gather

    steps = {
        "image": lambda rgb, box: from_rgb(rgb),
        "box_fit": lambda rgb, box: geometry.box_fit_transform(model.mean_shape, box),
        "crop": lambda rgb, box: crop.crops_numpy(rgb, prepared[id(rgb)][0], model.image_size),
        "crop_general_gather": lambda rgb, box: crop.crops_numpy(
            rgb, prepared[id(rgb)][0] + general, model.image_size),
        "network": lambda rgb, box: model.runner.predict(prepared[id(rgb)][1]),
        "align": lambda rgb, box: aligner.align(rgb, boxes=box),
    }
    if args.saved_model:
        reference = facealign.load(args.saved_model)
        steps["align_saved_model"] = lambda rgb, box: reference.align(rgb, boxes=box)
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    ms = fastest_ms(steps, photos, args.calls, args.rounds)
    wall = time.perf_counter() - wall_start
    result = {
        "model": str(tflite if args.tflite else "pretrained/dan-300w-fast as int8 LiteRT"),
        "threads": args.threads, "cpu": cpu_model(), "cpus": os.cpu_count(),
        "photos": [f"{rgb.shape[1]}x{rgb.shape[0]}" for rgb, _ in photos],
        "ms_per_face": ms,
        "align_over_network": round(ms["align"] / ms["network"], 3),
        "timing_seconds": round(wall, 1),
        "cpu_share": round((time.process_time() - cpu_start) / (wall * os.cpu_count()), 2)}
    scratch.cleanup()
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
