"""AAN training speed against its bottleneck width (model.aan.base_filters).

The paper gives no widths; on a CPU the width decides how many steps a time
budget buys (configs/300w-aan.yaml). Times one AdamW step on the summed
losses of the final output and the four intermediate heads (as model.fit
runs it), batch 64, after two warm-up steps; prints one JSON line per width.

  python benchmarks/aan_width_speed.py                 # widths 16 and 32, about 2 min
  python benchmarks/aan_width_speed.py --widths 8 16 32 --precision float32
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from facealign.config import AanConfig  # noqa: E402
from trainer.aan_model import build_aan_model  # noqa: E402
from trainer.aan_training import compile_aan  # noqa: E402

SIZE = 112
NUM_LANDMARKS = 68
BATCH = 64


def step_seconds(width: int, precision: str, steps: int, rng) -> tuple[float, int]:
    keras.mixed_precision.set_global_policy(precision)
    mean_shape = rng.uniform(0.25 * SIZE, 0.75 * SIZE, (NUM_LANDMARKS, 2)).astype(np.float32)
    images = rng.integers(0, 256, (BATCH, SIZE, SIZE, 1)).astype(np.float32)
    shapes = mean_shape + rng.normal(0, 3, (BATCH, NUM_LANDMARKS, 2)).astype(np.float32)
    config = AanConfig(base_filters=width)
    model = build_aan_model(mean_shape, np.full((SIZE, SIZE), 128, np.float32),
                            np.full((SIZE, SIZE), 50, np.float32), config, precision=precision)
    compile_aan(model, config, 1e-3)
    data = tf.data.Dataset.from_tensors((images, {k: shapes for k in model.output})).repeat()
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return (time.perf_counter() - start) / steps, model.count_params()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--precision", default="mixed_bfloat16",
                        choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for width in args.widths:
        seconds, params = step_seconds(width, args.precision, args.steps, rng)
        print(json.dumps({"base_filters": width, "precision": args.precision,
                          "parameters": params, "seconds_per_step": round(seconds, 3),
                          "train_images_per_s": round(BATCH / seconds, 1)}), flush=True)


if __name__ == "__main__":
    main()
