"""Latency and throughput of a served facealign model: the local REST server, batching off
and on, and the SavedModel in-process.

Prints a table, then one JSON object with everything:
- "server": `facealign serve`'s server (serving/server.py) in this process on a free
  loopback port, once without batching (--max-concurrency 4, the CLI's default) and once
  with TF Serving's batching (serving/batching.py). For each, at each --concurrency level,
  a second process (this script with --load) sends --requests REST predict requests (one
  real face each, row form) from that many threads: p50 / p99 latency (ms, client side,
  including JSON and base64), requests/s, errors, the batches run (with batching), and
  cpu_share = CPU time of both processes (the server's threads included) / (wall x cores).
- "batching": the parameters used: --batching_parameters_file, else
  the version's batching parameters file (the Pusher's), else what the Pusher would write,
  measured now (components/atomic_pusher/batch_timing.py).
- "in_process": the SavedModel's serving_default called directly at --batches sizes
  (the same face repeated): p50/p99 ms per call and faces/s (--iterations 0: skipped).
- "cpu": the CPU model and count (trainer/precision.py).

The model is --model (a SavedModel version folder or a base folder: its newest version),
else the newest version under serving_models/*/, else a tiny untrained DAN exported to a
temporary folder (its speed is not the real model's: say which in any report; the "model"
field names it). Loopback only; the load is bounded by --requests per level.

  python benchmarks/serving_latency.py --model pretrained/dan-300w               # 200 each
  python benchmarks/serving_latency.py --requests 20 --iterations 0 --concurrency 1,4
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

DEFAULT_FACE = REPO.parent / "shared" / "data" / "300w" / "afw" / "1051618982_1.jpg"


def percentiles(seconds) -> dict:
    ms = np.asarray(seconds, np.float64) * 1000
    if not len(ms):
        return {}
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2)}


def face(path: pathlib.Path) -> tuple[bytes, list[float]]:
    """The image's bytes and its face box (from its .pts when there is one, else centred)."""
    data = path.read_bytes()
    pts = path.with_suffix(".pts")
    if pts.is_file():
        from facealign.core import geometry
        from facealign.core.data.pts import read_pts

        return data, geometry.bounding_box(read_pts(pts)).round(2).tolist()
    import cv2

    height, width = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE).shape
    side = 0.5 * min(height, width)
    return data, [(width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2]


# --- the load generator (the second process) ---------------------------------------------------

def load(url: str, image: str, requests: int, concurrency: int) -> dict:
    from serving import client

    data, box = face(pathlib.Path(image))
    rest = client.RestClient.from_url(url, timeout=300)
    rest.predict([data], [box])  # connection and first-call costs out of the figures

    def one(_):
        started = time.perf_counter()
        try:
            rest.predict([data], [box])
            return time.perf_counter() - started, None
        except client.ServingError as exc:
            return time.perf_counter() - started, f"{exc.status}: {exc.message}"[:200]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    latencies = [t for t, error in results if error is None]
    errors = [error for _, error in results if error is not None]
    return {"requests": requests, "concurrency": concurrency, "errors": len(errors),
            "first_errors": errors[:3], **percentiles(latencies),
            "throughput_rps": round(len(latencies) / wall, 2), "wall_s": round(wall, 2)}


# --- the parent ----------------------------------------------------------------------------------

def find_model(given: str | None, tmp: str) -> tuple[pathlib.Path, str]:
    from facealign.core.model_paths import numeric_versions, resolve_model_dir

    if given:
        return pathlib.Path(resolve_model_dir(given)), "given"
    for base in sorted((REPO / "serving_models").glob("*")):
        versions = numeric_versions(base)
        if versions:
            return versions[max(versions)], "newest under serving_models"
    from tests import model_fixtures

    mean_shape = model_fixtures.afw_mean_shape(REPO.parent / "shared" / "data")
    _, path = model_fixtures.export_tiny_dan(pathlib.Path(tmp) / "tiny" / "1", mean_shape)
    return pathlib.Path(path), "tiny untrained DAN (not the real model's speed)"


def batching_parameters(model: pathlib.Path, given: str | None):
    """(BatchingParameters, where they come from)."""
    from components.atomic_pusher import batch_timing
    from facealign.core import model_format

    pushed = model_format.extra_path(model, model_format.BATCHING_FILE)
    if given:
        return model_format.read_batching_parameters(given), given
    if os.path.isfile(pushed):
        return model_format.read_batching_parameters(pushed), pushed
    timings = batch_timing.time_signature(str(model))
    return batch_timing.choose(timings), (
        "measured now by the Pusher's rule: " + ", ".join(
            f"batch {size} {seconds * 1000:.0f} ms" for size, seconds in timings.items()))


def _cpu_seconds() -> float:
    """CPU time of this process (server threads included) and of its waited-for children."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def server_figures(model: pathlib.Path, image: str, requests: int, levels, tmp: str,
                   batching=None) -> list[dict]:
    from serving import server

    base = pathlib.Path(tmp) / ("base-batching" if batching else "base")
    base.mkdir(exist_ok=True)
    version = base / (model.name if model.name.isdigit() else "1")
    if not version.exists():
        version.symlink_to(model.resolve(), target_is_directory=True)
    local = server.LocalServer(base, "bench", "127.0.0.1", 0, poll_seconds=3600,
                               batching=batching).start()
    rows = []
    try:
        for concurrency in levels:
            batcher = local.serving.batcher
            before = len(batcher.batch_sizes) if batcher else 0
            command = [sys.executable, __file__, "--load", local.model_url, "--image", image,
                       "--requests", str(requests), "--concurrency", str(concurrency)]
            cpu, wall = _cpu_seconds(), time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
            cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
            if done.returncode != 0:
                raise RuntimeError(f"the load process failed:\n{done.stderr[-2000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["cpu_share"] = round(cpu / (wall * (os.cpu_count() or 1)), 3)
            if batcher:
                sizes = list(batcher.batch_sizes)[before:]
                row["batches"] = len(sizes)
                row["mean_batch_size"] = round(sum(sizes) / len(sizes), 2) if sizes else 0
            rows.append(row)
    finally:
        local.stop()
    return rows


def in_process_figures(model: pathlib.Path, image: str, iterations: int, batches) -> dict:
    import tensorflow as tf

    from facealign.core import model_format

    data, box = face(pathlib.Path(image))
    signature = tf.saved_model.load(str(model)).signatures[model_format.SERVING_DEFAULT]
    figures = {}
    for batch in batches:
        images = tf.constant([data] * batch)
        boxes = tf.constant([box] * batch, tf.float32)
        signature(image_bytes=images, box=boxes)  # warm up
        times = []
        for _ in range(iterations):
            started = time.perf_counter()
            signature(image_bytes=images, box=boxes)["landmarks"].numpy()
            times.append(time.perf_counter() - started)
        figures[f"batch_{batch}"] = {"iterations": iterations, **percentiles(times),
                                     "faces_per_s": round(batch * len(times) / sum(times), 1)}
    return figures


def table(result: dict) -> str:
    lines = [f"model: {result['model']} ({result['model_origin']})",
             f"CPU: {result['cpu']['model']}, {result['cpu']['count']} cores; "
             f"cpu_share overall {result['cpu_share']}",
             f"batching: {result['batching']['parameters']} ({result['batching']['from']})",
             "",
             "| batching | concurrency | requests | errors | p50 ms | p99 ms | requests/s "
             "| mean batch | cpu_share |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mode, rows in result["server"].items():
        for row in rows:
            lines.append(f"| {mode} | {row['concurrency']} | {row['requests']} | "
                         f"{row['errors']} | {row.get('p50_ms', '-')} | {row.get('p99_ms', '-')}"
                         f" | {row['throughput_rps']} | {row.get('mean_batch_size', '-')} | "
                         f"{row['cpu_share']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="SavedModel version folder, or a base folder")
    parser.add_argument("--image", default=str(DEFAULT_FACE), help="face image (.pts beside it "
                                                                   "gives the box)")
    parser.add_argument("--requests", type=int, default=200,
                        help="requests per concurrency level and batching mode (default 200)")
    parser.add_argument("--concurrency", default="1,4,16",
                        help="concurrency levels, comma-separated (default 1,4,16)")
    parser.add_argument("--batching_parameters_file", metavar="FILE",
                        help="TF Serving batching parameters for the batching runs")
    parser.add_argument("--iterations", type=int, default=20,
                        help="in-process calls per batch size (0: skip)")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--load", metavar="MODEL_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:  # the second process
        concurrency = int(args.concurrency)
        print(json.dumps(load(args.load, args.image, args.requests, concurrency)))
        return 0
    from trainer.precision import cpu_model

    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model, origin = find_model(args.model, tmp)
        cpu, wall = _cpu_seconds(), time.perf_counter()
        parameters, source = batching_parameters(model, args.batching_parameters_file)
        result = {"model": str(model), "model_origin": origin,
                  "cpu": {"model": cpu_model(), "count": os.cpu_count()},
                  "image": args.image,
                  "batching": {"parameters": dataclasses.asdict(parameters), "from": source},
                  "server": {
                      "off": server_figures(model, args.image, args.requests, levels, tmp),
                      "on": server_figures(model, args.image, args.requests, levels, tmp,
                                           parameters)}}
        if args.iterations > 0:
            result["in_process"] = in_process_figures(
                model, args.image, args.iterations, [int(b) for b in args.batches.split(",")])
        result["cpu_share"] = round((_cpu_seconds() - cpu) / (
            (time.perf_counter() - wall) * (os.cpu_count() or 1)), 3)
    print(table(result))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
