"""How fast the LiteRT (.tflite) export runs next to the SavedModel it came from, on this CPU.

Times the SavedModel's predict_canonical signature (TensorFlow, as exported:
mixed_bfloat16 for the committed 300-W DAN) and the .tflite models on the
ai-edge-litert interpreter (XNNPACK, its CPU default) on the same real
canonical crops: ms per face at batch 1 and images/s at batch 64. Both get
the same thread count (--threads, default all cores). The .tflite models are
converted here (trainer/litert_export.py; int8 calibrated on
--calibration-faces real faces, which changes its accuracy, not its speed)
unless --tflite names files made by `facealign export`.

CPU time on a shared host is noisy: every model is warmed up, then timed in
interleaved rounds, and each figure is its fastest round. cpu_share (process
CPU time / (wall time x cores), over the timing) says how much of the
machine the run got.
Prints one JSON object.

  python benchmarks/litert_speed.py [--model pretrained/dan-300w] [--quantize float32 int8]
  python benchmarks/litert_speed.py --tflite dan.tflite dan-int8.tflite
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

from trainer.precision import cpu_flags, cpu_model  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "300w"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pretrained/dan-300w",
                        help="SavedModel or TF Serving base folder")
    parser.add_argument("--quantize", nargs="+", default=["float32", "float16", "int8", "dynamic"],
                        help="the .tflite variants to convert and time")
    parser.add_argument("--tflite", nargs="+", default=[], help="time these files instead")
    parser.add_argument("--faces", default=str(SHARED / "helen" / "trainset"),
                        help="300-W folder of real faces for the crops (and calibration)")
    parser.add_argument("--boxes", default=str(SHARED / "boxes" / "helen_trainset.csv"))
    parser.add_argument("--calibration-faces", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch1-calls", type=int, default=10)
    parser.add_argument("--batch64-calls", type=int, default=2)
    return parser.parse_args(argv)


def timed(call, crops, calls: int) -> float:
    """Seconds per call, over `calls` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        call(crops)
    return (time.perf_counter() - start) / calls


def main(argv=None) -> dict:
    args = parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from facealign.core import model_format
    from facealign.core.data import read_dataset
    from serving.litert import LiteRTModel
    from trainer import litert_export

    folder, metadata = litert_export.read_model(args.model)
    records, _ = read_dataset(args.faces, boxes=[args.boxes])
    size = int(metadata["image_size"])
    crops = litert_export.calibration_crops(records, metadata["mean_shape"], size, 64, seed=1)
    files = {pathlib.Path(path).name: path for path in args.tflite}
    scratch = tempfile.TemporaryDirectory()
    if not files:
        model, _, _ = litert_export.rebuild_model(folder)
        calibration = litert_export.calibration_crops(
            records, metadata["mean_shape"], size, args.calibration_faces)
        for quantize in args.quantize:
            path = os.path.join(scratch.name, f"{quantize}.tflite")
            pathlib.Path(path).write_bytes(litert_export.convert(
                model, metadata["mean_shape"], size, quantize, calibration))
            files[f"litert_{quantize}"] = path
    loaded = tf.saved_model.load(folder)
    signature = loaded.signatures[model_format.PREDICT_CANONICAL]
    runners = {"saved_model": lambda batch: signature(image=tf.constant(batch))}
    for name, path in files.items():
        runners[name] = LiteRTModel(path, num_threads=args.threads).predict

    wall_start, cpu_start = time.perf_counter(), time.process_time()
    best = {name: {1: float("inf"), 64: float("inf")} for name in runners}
    for run in runners.values():   # warm up (and let LiteRT resize) at both sizes
        run(crops[:1])
        run(crops)
    for _ in range(args.rounds):
        for name, run in runners.items():
            best[name][1] = min(best[name][1], timed(run, crops[:1], args.batch1_calls))
            best[name][64] = min(best[name][64], timed(run, crops, args.batch64_calls))
    wall = time.perf_counter() - wall_start
    flags = cpu_flags()
    result = {
        "model": folder, "threads": args.threads,
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(),
                    "bf16": sorted(flags & {"avx512_bf16", "amx_bf16"}),
                    "int8_dot": sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})},
        "results": {name: {"batch1_ms": round(1000 * times[1], 1),
                           "batch64_images_per_s": round(64 / times[64], 1),
                           **({"mb": round(os.path.getsize(files[name]) / 1e6, 1)}
                              if name in files else {})}
                    for name, times in best.items()},
        "timing_seconds": round(wall, 1),
        "cpu_share": round((time.process_time() - cpu_start) / (wall * os.cpu_count()), 2)}
    scratch.cleanup()
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
