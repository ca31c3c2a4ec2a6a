"""AAN training speed against its bottleneck width (model.aan.base_filters).

The paper gives no widths; on a CPU the width decides how many steps a time
budget buys (configs/300w-aan.yaml). Uses benchmarks/model_speed.py's AAN,
optimizer step (Adam on the summed losses of the final output, the
intermediate heads and the weight decay) and timing (warm-up, then interleaved rounds, fastest
round kept, so the widths are timed under the same load); prints one JSON
line per width.

  python benchmarks/aan_width_speed.py                 # widths 16 and 32, about 2 min
  python benchmarks/aan_width_speed.py --widths 8 16 32 --precision float32
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from benchmarks import model_speed as speed
from facealign.core.config import AanConfig
from trainer.precision import choose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--precision", default="auto", choices=("auto", *speed.PRECISIONS),
                        help="auto: mixed_bfloat16 only where the CPU computes in bfloat16")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    args.precision, why = choose(args.precision)
    print(f"aan_width_speed: {args.precision} ({why})", flush=True)
    rng = np.random.default_rng(0)
    mean_shape = speed.face_like_mean_shape(rng)
    batch = speed.random_batch(rng, args.batch, mean_shape)
    calls, parameters = {}, {}
    for width in dict.fromkeys(args.widths):
        model = speed.aan(args.precision, mean_shape, AanConfig(base_filters=width))
        parameters[width] = model.count_params()
        calls[width] = (speed.aan_train_step_fn(model), batch)
    fastest = speed.fastest_in_rounds(calls, args.rounds)
    for width, seconds in fastest.items():
        print(json.dumps({"base_filters": width, "precision": args.precision,
                          "batch": args.batch, "parameters": parameters[width],
                          "seconds_per_step": round(seconds, 3),
                          "train_images_per_s": round(args.batch / seconds, 1)}), flush=True)


if __name__ == "__main__":
    main()
