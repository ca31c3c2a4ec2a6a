"""How fast the DAN trains and infers on this machine, next to one bare Table-1 stage.

Prints one JSON object. Training rates are images/s of one optimizer step
(Adam, eq.-4 loss) of: the bare Table-1 network alone, DAN stage 1, and DAN
stage 2 with stage 1 frozen (its forward pass + the connection layers + stage
2's forward and backward), in float32 and mixed_bfloat16. Inference is the
compiled forward pass of the whole 2-stage DAN and of the bare stage, at
batch 64 (images/s) and batch 1 (ms per face). Every timing follows a warm-up
(tracing) call and is the fastest of its repeats: CPU time on a shared host
is noisy, and the best repeat is what the code itself costs. The two ratios compare the DAN to the bare stage:
  inference_ratio = 2-stage DAN batch-64 inference / bare-stage inference (target >= 0.45)
  training_ratio  = stage-2 training / bare-stage training (target >= 0.40)
The connection-layer timings at batch 64 show where the rest of the time goes.

  python benchmarks/model_speed.py            # ~5 minutes on 2 cores
  python benchmarks/model_speed.py --quick    # smaller training batch, fewer repeats
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from facealign.config import DanConfig  # noqa: E402
from trainer import dan_layers  # noqa: E402
from trainer.dan_model import (build_dan_model, build_stage_network,  # noqa: E402
                               set_stage_trainable, stage_model)
from trainer.losses import NormalizedLandmarkLoss  # noqa: E402

SIZE = 112
NUM_LANDMARKS = 68


def face_like_mean_shape(rng) -> np.ndarray:
    return rng.uniform(0.25 * SIZE, 0.75 * SIZE, (NUM_LANDMARKS, 2)).astype(np.float32)


def random_batch(rng, batch, mean_shape):
    images = rng.integers(0, 256, (batch, SIZE, SIZE, 1)).astype(np.float32)
    shapes = mean_shape + rng.normal(0, 3, (batch, NUM_LANDMARKS, 2)).astype(np.float32)
    return images, shapes


class _StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def training_rate(model, images, shapes, warmup: int, steps: int) -> float:
    """Images/s of the fastest model.fit step on an in-memory batch, after `warmup` steps."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=NormalizedLandmarkLoss())
    data = tf.data.Dataset.from_tensors((images, shapes)).repeat()
    timer = _StepTimer()
    model.fit(data, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer],
              shuffle=False, verbose=0)
    gc.collect()  # drop fit's iterators before the next measurement
    step_seconds = np.diff(timer.ends[warmup - 1:])
    return len(images) / float(step_seconds.min())


def inference_rate(model, images, repeats: int) -> float:
    """Seconds of the fastest call of the compiled forward pass (after one warm-up call)."""
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return fastest_call(forward, tf.constant(images), repeats)


def fastest_call(function, inputs, repeats: int) -> float:
    tf.nest.map_structure(lambda t: t.numpy(), function(inputs))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), function(inputs))
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def bare_stage(precision: str) -> keras.Model:
    """One Table-1 network, image -> [B, N, 2]: what a single-stage regressor costs."""
    network = build_stage_network(1, NUM_LANDMARKS, SIZE, precision=precision, name="bare")
    images = keras.Input((SIZE, SIZE, 1))
    _, delta = network(images)
    shapes = keras.layers.Reshape((NUM_LANDMARKS, 2), dtype="float32")(delta)
    return keras.Model(images, shapes, name="bare_stage")


def dan(precision: str, mean_shape) -> keras.Model:
    return build_dan_model(mean_shape, np.full((SIZE, SIZE), 128.0, np.float32),
                           np.full((SIZE, SIZE), 64.0, np.float32),
                           DanConfig(stages=2), precision=precision)


def connection_layer_ms(rng, mean_shape, batch: int, repeats: int) -> dict:
    shapes = tf.constant(random_batch(rng, batch, mean_shape)[1])
    images = tf.constant(rng.normal(size=(batch, SIZE, SIZE, 1)).astype(np.float32))
    fc1 = tf.constant(rng.normal(size=(batch, 256)).astype(np.float32))
    estimate = dan_layers.TransformEstimation(mean_shape)
    transform, _ = estimate(shapes)
    layers = {
        "transform_estimation": (estimate, shapes),
        "image_transform": (dan_layers.ImageTransform(), [images, transform]),
        "landmark_transform": (dan_layers.LandmarkTransform(), [shapes, transform]),
        "landmark_heatmap": (dan_layers.LandmarkHeatmap(SIZE, 16.0), shapes),
        "feature_image": (dan_layers.FeatureImage(SIZE), fc1),
    }
    timings = {}
    for name, (layer, inputs) in layers.items():
        timings[name] = round(1000 * fastest_call(tf.function(layer), inputs, repeats), 2)
    return timings


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="training batch 16, 2 timed steps, fewer inference repeats")
    parser.add_argument("--train-batch", type=int, default=None,
                        help="training batch size (default 64, 16 with --quick)")
    parser.add_argument("--train-steps", type=int, default=None,
                        help="timed training steps per measurement (default 3, 2 with --quick)")
    args = parser.parse_args(argv)
    train_batch = args.train_batch or (16 if args.quick else 64)
    train_steps = args.train_steps or (2 if args.quick else 3)
    repeats_64, repeats_1 = (2, 10) if args.quick else (4, 30)

    rng = np.random.default_rng(0)
    mean_shape = face_like_mean_shape(rng)
    train_images, train_shapes = random_batch(rng, train_batch, mean_shape)
    images_64, _ = random_batch(rng, 64, mean_shape)
    images_1 = images_64[:1]
    started = time.perf_counter()

    result = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or "?",
                          "tensorflow": tf.__version__, "keras": keras.__version__},
              "train_batch": train_batch, "training_images_per_s": {},
              "inference": {}}
    for precision in ("float32", "mixed_bfloat16"):
        bare = bare_stage(precision)
        model = dan(precision, mean_shape)
        inference = {}
        for name, net in (("dan_2_stage", model), ("bare_stage", bare)):
            seconds_64 = inference_rate(net, images_64, repeats_64)
            seconds_1 = inference_rate(net, images_1, repeats_1)
            inference[name] = {"batch64_images_per_s": round(64 / seconds_64, 2),
                               "batch1_ms_per_face": round(1000 * seconds_1, 2)}
        result["inference"][precision] = inference
        rates = {"bare_stage": training_rate(bare, train_images, train_shapes, 1, train_steps)}
        rates["stage_1"] = training_rate(stage_model(model, 1), train_images, train_shapes,
                                         1, train_steps)
        set_stage_trainable(model, 1, False)
        rates["stage_2"] = training_rate(stage_model(model, 2), train_images, train_shapes,
                                         1, train_steps)
        set_stage_trainable(model, 1, True)
        result["training_images_per_s"][precision] = {k: round(v, 2) for k, v in rates.items()}

        train, infer = result["training_images_per_s"][precision], inference
        result.setdefault("ratios", {})[precision] = {
            "inference_ratio": round(infer["dan_2_stage"]["batch64_images_per_s"]
                                     / infer["bare_stage"]["batch64_images_per_s"], 3),
            "inference_ratio_batch1": round(infer["bare_stage"]["batch1_ms_per_face"]
                                            / infer["dan_2_stage"]["batch1_ms_per_face"], 3),
            "training_ratio": round(train["stage_2"] / train["bare_stage"], 3),
        }
        keras.backend.clear_session()
    result["connection_layers_ms_batch64"] = connection_layer_ms(
        rng, mean_shape, 64, 5 if args.quick else 20)
    result["targets"] = {"inference_ratio": 0.45, "training_ratio": 0.40}
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
