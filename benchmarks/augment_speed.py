"""Faces/s of the Augment step (Beam DirectRunner) on the shared 300-W faces.

Runs ExampleGen's and Augment's executors directly (no orchestration) and
prints JSON: faces, samples written, seconds and faces/s for the Augment
step alone. Usage: python benchmarks/augment_speed.py [--workers 2] [--copies 10]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

from components.augment import executor as augment
from components.landmark_example_gen import executor as example_gen
from facealign.core.config import AugmentSection

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--data", type=pathlib.Path, default=SHARED)
    args = parser.parse_args()
    beam_args = [f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_processing"]
    with tempfile.TemporaryDirectory() as tmp:
        context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_args,
                                                              tmp_dir=tmp)
        raw = standard_artifacts.Examples()
        raw.uri = f"{tmp}/raw"
        sources = [{"name": "300w", "format": "300w", "root": str(args.data),
                    "boxes": sorted(str(p) for p in (args.data / "boxes").glob("*.csv")),
                    "split": "train"}]
        example_gen.Executor(context).Do({}, {"examples": [raw]}, {
            "sources": json.dumps(sources), "eval_count": 100, "seed": 0, "on_error": "skip"})
        faces = raw.get_int_custom_property("accepted_faces")
        out, frame = standard_artifacts.Examples(), standard_artifacts.TransformGraph()
        out.uri, frame.uri = f"{tmp}/canonical", f"{tmp}/frame"
        started = time.monotonic()
        augment.Executor(context).Do({"examples": [raw]},
                                     {"canonical_examples": [out], "canonical_frame": [frame]},
                                     AugmentSection(copies=args.copies).model_dump())
        seconds = time.monotonic() - started
        train_faces = faces - 100
        print(json.dumps({"faces": faces, "train_faces": train_faces, "copies": args.copies,
                          "samples": train_faces * args.copies + 100, "workers": args.workers,
                          "seconds": round(seconds, 1),
                          "faces_per_s": round(faces / seconds, 1),
                          "samples_per_s": round((train_faces * args.copies + 100) / seconds, 1)}))


if __name__ == "__main__":
    main()
