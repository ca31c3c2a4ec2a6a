"""Latency and throughput of a served facealign model: the local REST server and in-process.

Prints one JSON object:
- "server": `facealign serve`'s server (serving/server.py) in this process on a
  free loopback port, loaded by a second process (this script with --load) that
  sends --requests REST predict requests (one real face each, row form) from
  --concurrency threads: p50/p90/p99 latency (ms, client side, including JSON
  and base64) and throughput (requests/s), errors counted.
- "in_process": the SavedModel's serving_default called directly, at batch 1
  and batch 64 (the same face repeated): p50/p99 ms per call and faces/s.

The model is --model (a SavedModel version folder), else the newest version
under serving_models/*/, else a tiny untrained DAN exported to a temporary
folder (its speed is not the real model's: say which in any report; the
"model" field names it). Loopback only; the load is bounded by --requests.

  python benchmarks/serving_latency.py                      # 500 requests, concurrency 4
  python benchmarks/serving_latency.py --requests 20 --iterations 3   # a smoke run
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
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
        from facealign import geometry
        from facealign.data.pts import read_pts

        return data, geometry.bounding_box(read_pts(pts)).round(2).tolist()
    import cv2

    height, width = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE).shape
    side = 0.5 * min(height, width)
    return data, [(width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2]


# --- the load generator (the second process) ---------------------------------------------------

def load(url: str, image: str, requests: int, concurrency: int) -> dict:
    from serving import client

    data, box = face(pathlib.Path(image))
    rest = client.RestClient.from_url(url, timeout=120)
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
    if given:
        return pathlib.Path(given), "given"
    from serving.server import numeric_versions

    for base in sorted((REPO / "serving_models").glob("*")):
        versions = numeric_versions(base)
        if versions:
            return versions[max(versions)], "newest under serving_models"
    from serving import fixtures

    _, path = fixtures.export_tiny_dan(pathlib.Path(tmp) / "tiny" / "1",
                                       fixtures.afw_mean_shape(REPO.parent / "shared" / "data"))
    return pathlib.Path(path), "tiny untrained DAN (not the real model's speed)"


def server_figures(model: pathlib.Path, image: str, requests: int, concurrency: int,
                   tmp: str) -> dict:
    from serving import server

    base = pathlib.Path(tmp) / "base"
    base.mkdir(exist_ok=True)
    version = base / (model.name if model.name.isdigit() else "1")
    if not version.exists():
        version.symlink_to(model.resolve(), target_is_directory=True)
    local = server.LocalServer(base, "bench", "127.0.0.1", 0, poll_seconds=3600,
                               max_concurrency=concurrency).start()
    try:
        command = [sys.executable, __file__, "--load", local.model_url, "--image", image,
                   "--requests", str(requests), "--concurrency", str(concurrency)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"the load process failed:\n{done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        local.stop()


def in_process_figures(model: pathlib.Path, image: str, iterations: int, batches) -> dict:
    import tensorflow as tf

    data, box = face(pathlib.Path(image))
    signature = tf.saved_model.load(str(model)).signatures["serving_default"]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="SavedModel (version) folder")
    parser.add_argument("--image", default=str(DEFAULT_FACE), help="face image (.pts beside it "
                                                                   "gives the box)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=50,
                        help="in-process calls per batch size")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--load", metavar="MODEL_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:  # the second process
        print(json.dumps(load(args.load, args.image, args.requests, args.concurrency)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model, origin = find_model(args.model, tmp)
        started = time.process_time(), time.perf_counter()
        result = {"model": str(model), "model_origin": origin, "cpus": os.cpu_count(),
                  "image": args.image,
                  "server": server_figures(model, args.image, args.requests, args.concurrency,
                                           tmp),
                  "in_process": in_process_figures(model, args.image, args.iterations,
                                                   [int(b) for b in args.batches.split(",")])}
        result["parent_cpu_share"] = round((time.process_time() - started[0]) / (
            (time.perf_counter() - started[1]) * (os.cpu_count() or 1)), 3)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
