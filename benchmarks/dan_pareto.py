"""The DAN's speed-accuracy Pareto table on this CPU: width x stages x float/int8 LiteRT, and dlib.

Issue #26's fallback: our DAN does not yet match dlib's per-face speed, so this
lays out what each DAN size costs and scores, and where dlib's shape predictor
sits among them. One row per `model.dan.base_filters` in --widths (8/16/32/64),
stage count in --stages (1, 2) and LiteRT file in --quantize (float32, int8):

- the file: `facealign export --model SAVED_MODEL --format tflite [--quantize int8
  --calibration-data AFW --boxes afw.csv --calibration-faces N]`, the command's own path;
- its SavedModel: a trained model where --trained names one for that width (default
  16=pretrained/dan-300w-fast, 64=pretrained/dan-300w): the 2-stage rows are the model
  itself, the 1-stage rows its stage 1 alone (trainer.warm_start.export_again(...,
  stages=1): the same stage-1 weights, stage 2 left out). Other widths are built with
  random weights (trainer.dan_model.build_dan_model, Table 1's layers at that width, fc
  256, exported by trainer.export with its configuration in the metadata): speed does not
  depend on the weights, so their rows are timed and show NME "-";
- NME: inter-ocular (facealign.core.metrics.summary), on the public 300-W test faces (110
  HELEN test faces, --faces N for the first N) from their 300-W boxes, through the same
  .tflite file that is timed (an int8 row's NME is the int8 model's), by
  `facealign.load(file).align(rgb, boxes=box)`;
- ms per face at batch 1: "align" is `facealign.load(file, num_threads=THREADS)
  .align(rgb, boxes=box)` on a photo already decoded (the public API path: box fit, crop,
  network, points back, Face objects), "network" the interpreter alone on a ready crop
  (`aligner.model.runner.predict(crop)`), on the first --photos public test photos
  (benchmarks/api_latency.py's photos and its fastest_ms: warmed up, interleaved
  rounds across every row, each figure its fastest round). A timed call runs the step
  on the photos in turn, as many times as it takes to last --round-ms at least;
- dlib (the reference row; benchmarks/dlib_peer.py, `pip install -e .[peers]`): its
  shape predictor from the 300-W box mapped to dlib's box convention (W300_TO_DLIB),
  its NME on the same faces from the same boxes and its ms per face timed in the same
  rounds. dlib's own-detector figures (its HOG boxes, which its predictor was trained
  from) are in benchmarks/peer_comparison.py.

The Pareto column marks the rows with an NME that no other such row beats on both ms
per face (align) and NME; dlib's place is said against them. cpu_share is process CPU
time / (wall time x cores) over the timing rounds and over the run (with one thread,
1 / cores is all a run can take): take figures with nothing else running.

Prints a markdown table sorted by ms per face, and JSON (--json); --plot draws NME against
ms per face with the front and dlib's point.

  python benchmarks/dan_pareto.py [--widths 8,16,32,64] [--stages 1,2]
      [--quantize float32,int8] [--trained WIDTH=PATH ...] [--faces N] [--threads 1]
      [--json OUT.json] [--plot OUT.png] [--no-dlib]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks import api_latency, dlib_peer, peer_comparison  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
TEST = SHARED / "300w-test"
CALIBRATION = SHARED / "300w" / "afw"
CALIBRATION_BOXES = SHARED / "300w" / "boxes" / "afw.csv"
DEFAULT_TRAINED = (f"16={REPO / 'pretrained' / 'dan-300w-fast'}",
                   f"64={REPO / 'pretrained' / 'dan-300w'}")
QUANTIZATIONS = ("float32", "int8")
THRESHOLD = 0.08
PEER_NOTE = ("dlib's own-detector figures (its HOG boxes, which its shape predictor was "
             "trained from) are in benchmarks/peer_comparison.py")


class SpecError(ValueError):
    """A bad option value; the message is one line naming it."""


def int_list(text: str, allowed=None) -> list[int]:
    """"8,16" -> [8, 16] (argparse type); positive, each at most once, in `allowed` if given."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers, e.g. 8,16") from None
    if not values or min(values) < 1 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct positive numbers")
    if allowed and set(values) - set(allowed):
        raise argparse.ArgumentTypeError(f"{text!r}: choose from "
                                         f"{','.join(map(str, allowed))}")
    return values


def quantize_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values or set(values) - set(QUANTIZATIONS) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {','.join(QUANTIZATIONS)}")
    return values


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int_list, default=[8, 16, 32, 64],
                        help="model.dan.base_filters values (default 8,16,32,64)")
    parser.add_argument("--stages", type=lambda t: int_list(t, (1, 2, 3)), default=[1, 2],
                        help="stage counts (default 1,2)")
    parser.add_argument("--quantize", type=quantize_list, default=list(QUANTIZATIONS),
                        help="LiteRT files (default float32,int8)")
    parser.add_argument("--trained", action="append", metavar="WIDTH=PATH",
                        help="a trained DAN SavedModel of that base_filters (repeatable; "
                             "default 16=pretrained/dan-300w-fast and 64=pretrained/dan-300w; "
                             "given, only those)")
    parser.add_argument("--faces", type=int, default=None,
                        help="NME on the first N test faces (default all 110)")
    parser.add_argument("--data", default=str(TEST), help="300-W test folder")
    parser.add_argument("--photos", type=int, default=4, help="test photos to time on")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--round-ms", type=float, default=200.0,
                        help="each timed call lasts at least this long (default 200)")
    parser.add_argument("--threads", type=int, default=1,
                        help="interpreter threads (default 1, as dlib)")
    parser.add_argument("--calibration-faces", type=int, default=16,
                        help="AFW training faces for int8 calibration (default 16)")
    parser.add_argument("--no-dlib", action="store_true", help="leave out the dlib row")
    parser.add_argument("--json", dest="json_out", help="also write the JSON here")
    parser.add_argument("--plot", help="NME against ms per face, as a PNG")
    args = parser.parse_args(argv)
    for name in ("photos", "rounds", "threads", "calibration_faces"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.faces is not None and args.faces < 1:
        parser.error("--faces must be at least 1")
    return args


def parse_trained(specs) -> dict[int, str]:
    """{base_filters: path} of WIDTH=PATH specs; SpecError naming a malformed one."""
    trained = {}
    for spec in specs:
        width, sep, path = spec.partition("=")
        if not sep or not path or not width.strip().isdigit() or int(width) < 1:
            raise SpecError(f"--trained {spec}: give WIDTH=PATH, e.g. 16=pretrained/dan-300w-fast")
        if int(width) in trained:
            raise SpecError(f"--trained {spec}: width {int(width)} is named twice")
        trained[int(width)] = path
    return trained


def check_trained(width: int, path: str, stages: list[int]) -> dict:
    """The metadata of a trained DAN of `width` with at least max(stages) stages; SpecError
    naming what is wrong (no model there, not a DAN, another width, too few stages)."""
    from trainer import litert_export

    spec = f"--trained {width}={path}"
    try:
        folder, metadata = litert_export.read_model(path)
    except (litert_export.ExportError, OSError) as exc:
        raise SpecError(f"{spec}: {exc}") from None
    model = metadata["config"].get("model") or {}
    if model.get("name") != "dan":
        raise SpecError(f"{spec}: {folder} is model {model.get('name')!r}, not a DAN")
    dan = model.get("dan") or {}
    if dan.get("base_filters") != width:
        raise SpecError(f"{spec}: {folder} has model.dan.base_filters {dan.get('base_filters')}")
    if int(dan.get("stages") or 0) < max(stages):
        raise SpecError(f"{spec}: {folder} has {dan.get('stages')} stage(s), the rows need "
                        f"{max(stages)}")
    return {"folder": folder, "stages": int(dan["stages"])}


def pareto_optimal(points) -> list[bool]:
    """Per (ms, nme) point: True when no other point is as fast and as accurate and better in
    one of the two (ties are all optimal); a point whose nme is None is never optimal."""
    scored = [(ms, nme) for ms, nme in points if nme is not None]
    return [nme is not None and not any(
        other_ms <= ms and other_nme <= nme and (other_ms < ms or other_nme < nme)
        for other_ms, other_nme in scored) for ms, nme in points]


def place(reference, rows) -> dict:
    """Where the point (ms, nme) sits among rows' {"name", "ms", "nme"}: the rows it beats
    on both, the rows that beat it on both, and whether it would be on their front."""
    ms, nme = reference

    def beats(a_ms, a_nme, b_ms, b_nme):
        return a_ms <= b_ms and a_nme <= b_nme and (a_ms < b_ms or a_nme < b_nme)

    scored = [row for row in rows if row["nme"] is not None]
    dominated_by = [row["name"] for row in scored if beats(row["ms"], row["nme"], ms, nme)]
    return {"dominates": [row["name"] for row in scored
                          if beats(ms, nme, row["ms"], row["nme"])],
            "dominated_by": dominated_by, "on_front": not dominated_by}


def export_random_dan(out: str, width: int, stages: int, mean_shape) -> str:
    """A DAN of `width` base filters and `stages` stages with random weights, exported as the
    Trainer exports (its configuration in the metadata, so `facealign export` rebuilds it)."""
    import keras

    from facealign.core.config import DanConfig, ModelSection
    from trainer import export
    from trainer.dan_model import build_dan_model

    keras.utils.set_random_seed(width * 10 + stages)
    config = ModelSection(name="dan", dan=DanConfig(stages=stages, base_filters=width))
    flat = np.full((112, 112), 128.0, np.float32)
    model = build_dan_model(mean_shape, flat, flat / 2, config.dan)
    export.export_saved_model(model, mean_shape, out, metadata={
        "model": "dan", "precision": "float32", "weights": "random (dan_pareto.py)",
        "config": {"model": config.model_dump(mode="json")}})
    keras.backend.clear_session()
    return out


def export_tflite(saved_model: str, out: str, quantize: str, calibration_faces: int) -> str:
    """`facealign export --format tflite` of the SavedModel; int8 calibrated on AFW faces."""
    from facealign import cli

    command = ["export", "--model", saved_model, "--format", "tflite", "--quantize", quantize,
               "--out", out]
    if quantize == "int8":
        command += ["--calibration-data", str(CALIBRATION), "--boxes", str(CALIBRATION_BOXES),
                    "--calibration-faces", str(calibration_faces)]
    if cli.main(command):
        raise SystemExit(f"dan_pareto: facealign {' '.join(command)} failed")
    return out


def saved_models(widths, stage_counts, trained: dict, checked: dict, scratch: str) -> dict:
    """{(width, stages): (SavedModel, weights description)} for every architecture."""
    from tests import model_fixtures
    from trainer import warm_start

    mean_shape = None
    found = {}
    for width in widths:
        for stages in stage_counts:
            where = os.path.join(scratch, f"w{width}-s{stages}")
            if width in trained:
                name = pathlib.Path(trained[width]).name
                total = checked[width]["stages"]
                if stages == total:
                    found[(width, stages)] = (trained[width], f"trained: {name}")
                    continue
                print(f"dan_pareto: {name}'s first {stages} stage(s) of {total}", flush=True)
                warm_start.export_again(trained[width], where, stages=stages)
                kept = "stage 1" if stages == 1 else f"stages 1-{stages}"
                found[(width, stages)] = (where, f"trained: {name}, {kept} of {total}")
                continue
            if mean_shape is None:
                mean_shape = model_fixtures.afw_mean_shape(SHARED)
            print(f"dan_pareto: width {width}, {stages} stage(s), random weights", flush=True)
            found[(width, stages)] = (export_random_dan(where, width, stages, mean_shape),
                                      "random (speed only)")
    return found


def nme_row(aligner, faces, images) -> dict:
    """NME (IO), AUC and failure (facealign.core.metrics.summary) from the 300-W boxes."""
    from facealign.core import metrics

    predicted = np.stack([aligner(rgb, face.box) for face, rgb in zip(faces, images,
                                                                      strict=True)])
    truth = np.stack([np.asarray(face.landmarks, np.float32) for face in faces])
    found = metrics.summary(predicted, truth, THRESHOLD)
    return {"nme": round(found["nme_inter_ocular"], 3),
            "auc": round(found[f"auc_{THRESHOLD:g}"], 4),
            "failure": round(found[f"failure_rate_{THRESHOLD:g}"], 2)}


def repeated(step, photos, round_ms: float):
    """(call, times): `call()` runs step(rgb, box) `times` times over the photos in turn,
    `times` a multiple of len(photos) for which a call lasts round_ms at least."""
    for photo in photos:            # the first calls allocate: not estimated from
        step(*photo)
    start = time.perf_counter()
    for photo in photos:
        step(*photo)
    each_ms = 1000 * (time.perf_counter() - start) / len(photos)
    times = len(photos) * max(1, math.ceil(round_ms / max(each_ms * len(photos), 1e-3)))

    def call(*_):
        for i in range(times):
            step(*photos[i % len(photos)])

    return call, times


def timing(steps: dict, photos, rounds: int, round_ms: float) -> dict:
    """{key: ms per face}: api_latency.fastest_ms over calls of `repeated` steps."""
    calls, times = {}, {}
    for key, step in steps.items():
        calls[key], times[key] = repeated(step, photos, round_ms)
    best = api_latency.fastest_ms(calls, photos[:1], 1, rounds)
    return {key: round(best[key] / times[key], 3) for key in steps}


def table(result: dict) -> str:
    """The markdown table of a result, sorted by ms per face, and what it was measured on."""
    lines = ["| model | weights | ms/face align | ms/face network | NME IO | "
             f"AUC@{THRESHOLD:g} | failure@{THRESHOLD:g} | MB | Pareto |",
             "|---|---|---|---|---|---|---|---|---|"]

    def cell(value, fmt, suffix=""):
        return "-" if value is None else format(value, fmt) + suffix

    for row in result["rows"]:
        pareto = {True: "**yes**", False: "no", None: "-"}[row["pareto"]]
        if row["name"].startswith("dlib"):
            pareto = "reference"
        lines.append(
            f"| {row['name']} | {row['weights']} | {row['ms_align']:.2f} | "
            f"{cell(row['ms_network'], '.2f')} | {cell(row['nme'], '.2f', '%')} | "
            f"{cell(row['auc'], '.3f')} | {cell(row['failure'], '.1f', '%')} | "
            f"{cell(row['megabytes'], '.1f')} | {pareto} |")
    machine, timed = result["machine"], result["timing"]
    lines += ["", f"NME on {result['faces']} HELEN test faces of 300-W from their 300-W boxes "
                  "(inter-ocular), through the timed file; '-': random weights (speed only). "
                  f"ms per face at batch 1 on {machine['cpu']}, {machine['cores']} cores, "
                  f"{machine['threads']} interpreter thread(s) (dlib: 1); fastest of "
                  f"{timed['rounds']} interleaved rounds over {timed['photos']} decoded photos; "
                  f"cpu_share {result['timing_cpu_share']} while timing "
                  f"({result['cpu_share']} over the run). Pareto: among rows with an NME, "
                  "on ms/face align and NME."]
    dlib = result.get("dlib")
    if dlib:
        where = dlib["place"]
        if not any(row["pareto"] for row in result["rows"]):
            said = "no row of ours has an NME to place it among"
        else:
            said = ("on the front of our rows" if where["on_front"] else
                    "beaten on both by " + ", ".join(where["dominated_by"]))
            said += ("; it beats " + ", ".join(where["dominates"]) + " on both"
                     if where["dominates"] else "; it beats none of our rows on both")
        lines += ["", f"{dlib['row']} ({dlib['ms_align']:.2f} ms, {dlib['nme']:.2f}%): "
                      f"{said}. {PEER_NOTE}."]
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    """NME against ms per face (log scale): our rows, the Pareto front, dlib's point; rows
    without an NME as ticks along the bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    ours = [r for r in result["rows"] if not r["name"].startswith("dlib")]
    scored = [r for r in ours if r["nme"] is not None]
    figure, axes = plt.subplots(figsize=(8, 5.5))
    for row in scored:
        marker = "o" if row["quantize"] == "float32" else "s"
        axes.scatter(row["ms_align"], row["nme"], marker=marker,
                     color="C0" if row["stages"] == 1 else "C1", zorder=3)
        axes.annotate(f"w{row['base_filters']} {row['stages']}s {row['quantize']}",
                      (row["ms_align"], row["nme"]), textcoords="offset points",
                      xytext=(5, 4), fontsize=8)
    front = sorted((r["ms_align"], r["nme"]) for r in scored if r["pareto"])
    if front:
        axes.step(*zip(*front), where="post", color="C2", zorder=2)
        axes.scatter(*zip(*front), s=160, facecolors="none", edgecolors="C2", zorder=2,
                     label="Pareto front (ours)")
    dlib = result.get("dlib")
    if dlib:
        axes.scatter(dlib["ms_align"], dlib["nme"], marker="*", s=220, color="C3", zorder=4,
                     label=f"{dlib['row']}")
    for row in ours:
        if row["nme"] is None:
            axes.axvline(row["ms_align"], ymax=0.04, color="grey", lw=1)
            axes.annotate(f"w{row['base_filters']} {row['stages']}s {row['quantize']}",
                          (row["ms_align"], 0.05), xycoords=("data", "axes fraction"),
                          rotation=90, fontsize=6, color="grey", ha="center")
    axes.scatter([], [], marker="o", color="C0", label="float32, 1 stage (orange: 2)")
    axes.scatter([], [], marker="s", color="C0", label="int8, 1 stage (orange: 2)")
    axes.plot([], [], color="grey", label="random weights: ms only (ticks)")
    low, high = axes.get_ylim()     # room at the bottom for the speed-only ticks
    axes.set_ylim(low - 0.15 * (high - low), high)
    axes.set_xscale("log")
    plain = ticker.FuncFormatter(lambda value, _: f"{value:g}")
    axes.xaxis.set_major_formatter(plain)
    low, high = axes.get_xlim()
    axes.xaxis.set_minor_formatter(plain if high / low < 10 else ticker.NullFormatter())
    axes.set_xlabel(f"ms per face, align at batch 1 ({result['machine']['threads']} thread(s))")
    axes.set_ylabel(f"NME inter-ocular, % ({result['faces']} 300-W test faces)")
    axes.set_title("DAN width x stages x LiteRT precision, with dlib")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        trained = parse_trained(args.trained or DEFAULT_TRAINED)
    except SpecError as exc:
        sys.exit(f"dan_pareto: {exc}")
    if not args.no_dlib:   # before TensorFlow loads: a missing package fails in a second
        try:
            dlib_peer.import_dlib()
            dlib_peer.predictor_path()
        except dlib_peer.PeerMissing as exc:
            sys.exit(f"dan_pareto: {exc}; or leave the dlib row out with --no-dlib")
    trained = {width: path for width, path in trained.items() if width in args.widths}
    try:
        checked = {width: check_trained(width, path, args.stages)
                   for width, path in trained.items()}
    except SpecError as exc:
        sys.exit(f"dan_pareto: {exc}")

    import cv2

    import facealign
    from facealign.core import crop, geometry
    from trainer.precision import cpu_model

    cv2.setNumThreads(args.threads)
    faces = peer_comparison.read_test_faces(args.data, args.faces)
    if not faces:
        sys.exit(f"dan_pareto: --data {args.data}: no faces with a box in "
                 f"{peer_comparison.TEST_BOXES}")
    images = [cv2.cvtColor(cv2.imread(str(face.image_path)), cv2.COLOR_BGR2RGB)
              for face in faces]
    photos = api_latency.test_photos(args.photos)
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    scratch = tempfile.TemporaryDirectory(prefix="dan_pareto_")
    models = saved_models(args.widths, args.stages, trained, checked, scratch.name)
    rows, steps = [], {}
    for (width, stages), (saved, weights) in models.items():
        for quantize in args.quantize:
            name = f"DAN w{width} {stages}-stage {quantize}"
            out = os.path.join(scratch.name, f"w{width}-s{stages}-{quantize}.tflite")
            print(f"dan_pareto: {name}: exporting", flush=True)
            export_tflite(saved, out, quantize, args.calibration_faces)
            aligner = facealign.load(out, num_threads=args.threads)
            model = aligner.model
            prepared = {id(rgb): crop.crops_numpy(
                rgb, geometry.box_fit_transform(model.mean_shape, box), model.image_size)
                for rgb, box in photos}
            steps[(name, "align")] = lambda rgb, box, a=aligner: a.align(rgb, boxes=box)
            steps[(name, "network")] = (lambda rgb, box, m=model, p=prepared:
                                        m.runner.predict(p[id(rgb)]))
            row = {"name": name, "base_filters": width, "stages": stages, "quantize": quantize,
                   "weights": weights, "source": trained.get(width),
                   "megabytes": round(os.path.getsize(out) / 1e6, 2),
                   "nme": None, "auc": None, "failure": None}
            if width in trained:
                print(f"dan_pareto: {name}: scoring {len(faces)} faces", flush=True)
                row.update(nme_row(lambda rgb, box, a=aligner: a.align(rgb, boxes=box)[0]
                                   .landmarks, faces, images))
            rows.append(row)
    exports_seconds = time.perf_counter() - wall_start
    dlib = None
    if not args.no_dlib:
        system = peer_comparison.dlib_system()
        dlib_name = f"dlib {system.name.split()[-1]} shape predictor"
        print(f"dan_pareto: {dlib_name}: scoring {len(faces)} faces", flush=True)
        dlib = {"name": dlib_name, "base_filters": None, "stages": None, "quantize": None,
                "weights": "dlib's 68-point model, 300-W box mapped (W300_TO_DLIB)",
                "source": None, "megabytes": round(os.path.getsize(
                    dlib_peer.predictor_path()) / 1e6, 1),
                **nme_row(system.from_box, faces, images)}
        steps[(dlib_name, "align")] = system.from_box

    print(f"dan_pareto: timing {len(steps)} steps, {args.rounds} rounds", flush=True)
    timing_wall, timing_cpu = time.perf_counter(), time.process_time()
    speeds = timing(steps, photos, args.rounds, args.round_ms)
    timing_wall = time.perf_counter() - timing_wall
    timing_cpu = time.process_time() - timing_cpu
    for row in rows:
        row["ms_align"] = speeds[(row["name"], "align")]
        row["ms_network"] = speeds[(row["name"], "network")]
    marks = pareto_optimal([(row["ms_align"], row["nme"]) for row in rows])
    for row, mark in zip(rows, marks, strict=True):
        row["pareto"] = mark if row["nme"] is not None else None
    if dlib:
        dlib.update(ms_align=speeds[(dlib["name"], "align")], ms_network=None, pareto=None)
    everything = sorted(rows + ([dlib] if dlib else []), key=lambda row: row["ms_align"])
    cores = os.cpu_count() or 1
    wall = time.perf_counter() - wall_start
    result = {
        "command": " ".join(["python", "benchmarks/dan_pareto.py", *argv]),
        "data": str(args.data), "faces": len(faces),
        "face_ids": [face.face_id for face in faces],
        "trained": {str(width): path for width, path in trained.items()},
        "protocol": {"normalization": "inter_ocular", "failure_threshold": THRESHOLD,
                     "boxes": "300-W boxes (dlib: mapped by W300_TO_DLIB)",
                     "pareto": "rows with an NME, on ms_align and nme",
                     "calibration": f"{args.calibration_faces} AFW training faces (int8)",
                     "peer": PEER_NOTE},
        "rows": everything,
        "pareto_front": [row["name"] for row in everything if row["pareto"]],
        "dlib": None if dlib is None else {
            "row": dlib["name"], "ms_align": dlib["ms_align"], "nme": dlib["nme"],
            "place": place((dlib["ms_align"], dlib["nme"]),
                           [{"name": r["name"], "ms": r["ms_align"], "nme": r["nme"]}
                            for r in rows])},
        "timing": {"photos": len(photos), "rounds": args.rounds, "round_ms": args.round_ms,
                   "seconds": round(timing_wall, 1)},
        "machine": {"cpu": cpu_model(), "cores": cores, "threads": args.threads},
        "seconds": {"exports_and_nme": round(exports_seconds, 1), "total": round(wall, 1)},
        "timing_cpu_share": round(timing_cpu / (timing_wall * cores), 2),
        "cpu_share": round((time.process_time() - cpu_start) / (wall * cores), 2)}
    scratch.cleanup()
    print(table(result))
    text = json.dumps(result, indent=1)
    if args.json_out:
        pathlib.Path(args.json_out).write_text(text + "\n")
        print(f"dan_pareto: JSON in {args.json_out}")
    else:
        print(text)
    if args.plot:
        plot(result, args.plot)
        print(f"dan_pareto: plot in {args.plot}")
    return result


if __name__ == "__main__":
    main()
