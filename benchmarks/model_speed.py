"""How fast the DAN and the AAN train and infer on this machine, next to one bare Table-1 stage.

Prints one JSON object. Training rates are images/s of one optimizer step
(Adam on the eq.-4 loss, BatchNorm in training mode, as in model.fit) of:
the bare Table-1 network alone, DAN stage 1, and DAN stage 2 with stage 1
frozen (stage 1's forward pass + the connection layers + stage 2's forward
and backward), in float32 and mixed_bfloat16. Inference is the compiled
forward pass of the whole 2-stage DAN and of the bare stage, at batch 64
(images/s) and batch 1 (ms per face). The ratios compare the DAN to the bare
stage:
  inference_ratio = 2-stage DAN batch-64 inference / bare-stage inference (target >= 0.45)
  training_ratio  = stage-2 training / bare-stage training (target >= 0.40)
connection_layers_ms_batch64 shows what the connection layers cost. fit_loop
is DAN stage 1 trained by the pipeline's own loop (Keras fit on the GZIP
TFRecord input, callbacks and all) in the precision `auto` picks, against the
bare stage (target: within 10%, ratio >= 0.90). The AAN
(paper defaults, trainer/aan_model.py) is timed in the same rounds: training
is one Adam step on the summed losses of its final and intermediate heads and its
weight decay,
inference the exported model's forward pass (final head only).
--aan-config times the AAN a configuration trains (its model.aan: widths, units,
embedding, weight decay) instead of the paper defaults.

CPU time on a shared host is noisy, so every function is compiled and
warmed up first, then timed in interleaved rounds (bare, DAN, bare, DAN ...)
and each figure is its fastest round: what the code itself costs, and
ratios taken under the same conditions. cpu_share (process CPU time /
(wall time x cores)) says how much of the machine the run actually got.

The machine's CPU model and its bfloat16 flags are printed with the figures.
mixed_bfloat16 is timed only where the CPU computes in bfloat16 (as
`trainer.precision: auto` decides): on a CPU without it (AMD Zen 3, AVX2)
bfloat16 is emulated about 10x slower and timing it took over 20 minutes;
`--precisions float32 mixed_bfloat16` times both anyway.

  python benchmarks/model_speed.py            # ~4 min on the 2-core bf16 CPU, 7.8 on Zen 3
  python benchmarks/model_speed.py --quick    # training batch 16, fewer rounds (~2 min)

Measured (fused BatchNorm, trainer/batchnorm.py), default batch 32, 2026-12-01:
- AMD EPYC (Zen 3, AVX2 only; auto: float32), cpu_share 0.87, 13.1 min with
  8-step fit-loop epochs (now 4-step): training bare stage 3.81, stage 1 3.73,
  stage 2 3.08, AAN (AanConfig defaults, base 32) 1.88 img/s; inference at batch 64
  2-stage DAN 8.9, bare stage 18.6, AAN 12.6 img/s (110 / 54 / 101 ms for one
  face); fit_loop 3.93 img/s, ratio to the bare stage 1.03. With 4-step epochs: 7.8 min,
  cpu_share 0.90, bare 4.30, stage 1 4.06, fit_loop 3.89 (ratio 0.904).
- AMD EPYC (Zen 4, avx512_bf16; auto: mixed_bfloat16), 2026-12-02, `--quick --train-batch 32
  --precisions mixed_bfloat16 --aan-config configs/300w-aan.yaml`, 81 s, cpu_share 0.72:
  training bare stage 19.5, stage 1 20.1, stage 2 14.4, AAN (base 16, [2, 2, 2, 2]) 34.7
  img/s; inference at batch 64 2-stage DAN 35.6, bare stage 73.4, AAN 126.3 img/s (74 / 34
  / 18 ms for one face); fit_loop 20.7 img/s, ratio to the bare stage 1.07.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import numpy as np
import tensorflow as tf

from facealign.core import config as config_lib
from facealign.core.config import AanConfig, DanConfig
from trainer import dan_layers
from trainer import precision as precision_choice
from trainer.aan_model import build_aan_model, inference_model
from trainer.aan_training import aan_optimizer
from trainer.dan_model import build_dan_model, build_stage_network, set_stage_trainable, stage_model
from trainer.losses import NormalizedLandmarkLoss

SIZE = 112
NUM_LANDMARKS = 68
PRECISIONS = ("float32", "mixed_bfloat16")
FIT_LOOP_STEPS = 4


def face_like_mean_shape(rng) -> np.ndarray:
    return rng.uniform(0.25 * SIZE, 0.75 * SIZE, (NUM_LANDMARKS, 2)).astype(np.float32)


def random_batch(rng, batch, mean_shape):
    images = rng.integers(0, 256, (batch, SIZE, SIZE, 1)).astype(np.float32)
    shapes = mean_shape + rng.normal(0, 3, (batch, NUM_LANDMARKS, 2)).astype(np.float32)
    return tf.constant(images), tf.constant(shapes)


def bare_stage(precision: str) -> keras.Model:
    """One Table-1 network, image -> [B, N, 2]: what a single-stage regressor costs."""
    network = build_stage_network(1, NUM_LANDMARKS, SIZE, precision=precision, name="bare")
    images = keras.Input((SIZE, SIZE, 1))
    _, delta = network(images)
    shapes = keras.layers.Reshape((NUM_LANDMARKS, 2), dtype="float32")(delta)
    return keras.Model(images, shapes, name="bare_stage")


def two_stage_dan(precision: str, mean_shape) -> keras.Model:
    return build_dan_model(mean_shape, np.full((SIZE, SIZE), 128.0, np.float32),
                           np.full((SIZE, SIZE), 64.0, np.float32),
                           DanConfig(stages=2), precision=precision)


def aan(precision: str, mean_shape, config: AanConfig | None = None) -> keras.Model:
    """The AAN with its training heads (paper defaults unless a config is given)."""
    return build_aan_model(mean_shape, np.full((SIZE, SIZE), 128.0, np.float32),
                           np.full((SIZE, SIZE), 64.0, np.float32), config or AanConfig(),
                           precision=precision)


def train_step_fn(model: keras.Model, optimizer=None):
    """A compiled optimizer step over model.trainable_variables (what fit runs per batch);
    a model with several outputs (the AAN's heads) minimises the sum of their losses."""
    optimizer = optimizer or keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    loss_fn = NormalizedLandmarkLoss()

    @tf.function
    def step(images, shapes):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            outputs = outputs.values() if isinstance(outputs, dict) else [outputs]
            # plus the model's regularisation losses (the AAN's weight decay), as fit adds them
            loss = tf.add_n([loss_fn(shapes, output) for output in outputs] + list(model.losses))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def aan_train_step_fn(model: keras.Model, config: AanConfig | None = None):
    """train_step_fn with the AAN's optimiser (trainer.aan_training: Adam, the L2 weight decay
    in the model's losses, sec. 4.2)."""
    return train_step_fn(model, aan_optimizer(config or AanConfig(), 1e-3))


def forward_fn(model: keras.Model):
    return tf.function(lambda images: model(images, training=False), reduce_retracing=True)


def time_call(function, *args) -> float:
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), function(*args))
    return time.perf_counter() - start


def fastest_in_rounds(calls: dict, rounds: int, repeats: int = 1) -> dict:
    """{name: (fn, args)} -> {name: fastest seconds}: warm-up, then interleaved rounds."""
    for function, args in calls.values():
        time_call(function, *args)
    best = {name: float("inf") for name in calls}
    for _ in range(rounds):
        for name, (function, args) in calls.items():
            for _ in range(repeats):
                best[name] = min(best[name], time_call(function, *args))
    return best


def fit_loop_images_per_s(rng, mean_shape, precision: str, batch: int, rounds: int) -> float:
    """DAN stage 1 trained by the pipeline's own loop (trainer.dan_training.train_stage: Keras
    fit on the GZIP TFRecord input of trainer.dan_input): the fastest epoch's images/s after
    the first, validation excluded (trainer.fit.TrainingRate)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="model_speed_") as folder:
        return _fit_loop_rate(os.path.join(folder, "train.tfrecord.gz"), rng, mean_shape,
                              precision, batch, rounds)


def _fit_loop_rate(path, rng, mean_shape, precision, batch, rounds) -> float:
    from facealign.core import examples
    from facealign.core.config import TrainerSection
    from trainer import dan_input
    from trainer.dan_training import train_stage

    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for _ in range(FIT_LOOP_STEPS * batch):
            image = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
            shape = mean_shape + rng.normal(0, 3, mean_shape.shape)
            feature = {examples.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(
                           value=[image.tobytes()])),
                       examples.LANDMARKS: tf.train.Feature(float_list=tf.train.FloatList(
                           value=shape.ravel().tolist()))}
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())
    # Short epochs: a step of 32 takes ~8 s on the slowest CPU here (Zen 3, float32), and the
    # first epoch (tracing) is not counted; 8-step epochs took 5.5 of the 13 minutes there.
    trainer_cfg = TrainerSection(batch_size=batch, steps_per_epoch=FIT_LOOP_STEPS, patience=100,
                                 max_epochs_per_stage=min(rounds, 3), precision=precision)
    train = dan_input.make_dataset(path, NUM_LANDMARKS, SIZE, batch, training=True,
                                   repeat=True, seed=0)
    evaluation = dan_input.make_dataset(path, NUM_LANDMARKS, SIZE, batch).take(1)
    model = build_dan_model(mean_shape, np.zeros((SIZE, SIZE)), np.ones((SIZE, SIZE)),
                            DanConfig(stages=1), precision=precision)
    outcome = train_stage(model, 1, train, evaluation, trainer_cfg, verbose=0)
    return max(outcome.history["images_per_s"][1:])


def connection_layer_ms(rng, mean_shape, batch: int, rounds: int) -> dict:
    _, shapes = random_batch(rng, batch, mean_shape)
    images = tf.constant(rng.normal(size=(batch, SIZE, SIZE, 1)).astype(np.float32))
    fc1 = tf.constant(rng.normal(size=(batch, 256)).astype(np.float32))
    estimate = dan_layers.TransformEstimation(mean_shape)
    transform, _ = estimate(shapes)
    calls = {
        "transform_estimation": (tf.function(estimate), (shapes,)),
        "image_transform": (tf.function(dan_layers.ImageTransform()), ([images, transform],)),
        "landmark_transform": (tf.function(dan_layers.LandmarkTransform()), ([shapes, transform],)),
        "landmark_heatmap": (tf.function(dan_layers.LandmarkHeatmap(SIZE, 16.0)), (shapes,)),
        "feature_image": (tf.function(dan_layers.FeatureImage(SIZE)), (fc1,)),
    }
    return {name: round(1000 * s, 2) for name, s in fastest_in_rounds(calls, rounds).items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="training batch 16 and fewer rounds")
    parser.add_argument("--train-batch", type=int, default=None,
                        help="training batch size (default 32, 16 with --quick)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds per measurement (default 4, 2 with --quick)")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=None,
                        help="precisions to time (default: float32, and mixed_bfloat16 where "
                             "the CPU computes in bfloat16)")
    parser.add_argument("--aan-config", default=None,
                        help="a pipeline configuration whose model.aan to time (default: the "
                             "paper defaults, AanConfig())")
    args = parser.parse_args(argv)
    try:
        aan_config = (config_lib.load(args.aan_config).model.aan if args.aan_config
                      else AanConfig())
    except config_lib.ConfigError as error:
        parser.error(f"--aan-config: {error}")
    flags = sorted(
        precision_choice.cpu_flags() & {"avx2", "avx512f", *precision_choice.BF16_CPU_FLAGS}
    )
    auto, why = precision_choice.choose("auto")
    precisions = tuple(args.precisions or dict.fromkeys(("float32", auto)))
    print(f"model_speed: {precision_choice.cpu_model()}, flags {' '.join(flags) or 'none'}; "
          f"timing {', '.join(precisions)} (auto: {auto}, {why})", flush=True)
    # Images/s hardly depend on the batch beyond ~16 here; shorter steps give more rounds.
    train_batch = args.train_batch or (16 if args.quick else 32)
    rounds = args.rounds or (2 if args.quick else 4)

    rng = np.random.default_rng(0)
    mean_shape = face_like_mean_shape(rng)
    train_images, train_shapes = random_batch(rng, train_batch, mean_shape)
    images_64, _ = random_batch(rng, 64, mean_shape)
    images_1 = images_64[:1]
    wall_start, cpu_start = time.perf_counter(), time.process_time()

    inference_calls, training_calls = {}, {}
    for precision in precisions:
        bare, dan = bare_stage(precision), two_stage_dan(precision, mean_shape)
        aan_training_model = aan(precision, mean_shape, aan_config)
        for name, model in (("dan_2_stage", dan), ("bare_stage", bare),
                            ("aan", inference_model(aan_training_model))):
            forward = forward_fn(model)
            inference_calls[(precision, name, 64)] = (forward, (images_64,))
            inference_calls[(precision, name, 1)] = (forward, (images_1,))
        training_calls[(precision, "bare_stage")] = (train_step_fn(bare),
                                                     (train_images, train_shapes))
        training_calls[(precision, "stage_1")] = (train_step_fn(stage_model(dan, 1)),
                                                  (train_images, train_shapes))
        # steps are traced lazily: stage 2 gets its own DAN, so stage 1 above stays trainable
        frozen_first_stage = two_stage_dan(precision, mean_shape)
        set_stage_trainable(frozen_first_stage, 1, False)
        training_calls[(precision, "stage_2")] = (
            train_step_fn(stage_model(frozen_first_stage, 2)), (train_images, train_shapes))
        training_calls[(precision, "aan")] = (aan_train_step_fn(aan_training_model, aan_config),
                                              (train_images, train_shapes))

    inference = fastest_in_rounds(inference_calls, rounds, repeats=1)
    training = fastest_in_rounds(training_calls, rounds)

    result = {"machine": {"cpu": precision_choice.cpu_model(), "flags": flags,
                          "cpus": os.cpu_count(), "tensorflow": tf.__version__,
                          "keras": keras.__version__, "auto_precision": auto},
              "aan": {"config": args.aan_config or "AanConfig()",
                      "base_filters": aan_config.base_filters,
                      "units_per_block": list(aan_config.units_per_block)},
              "train_batch": train_batch, "rounds": rounds,
              "training_images_per_s": {}, "inference": {}, "ratios": {}}
    for precision in precisions:
        result["training_images_per_s"][precision] = {
            name: round(train_batch / training[(precision, name)], 2)
            for name in ("bare_stage", "stage_1", "stage_2", "aan")}
        result["inference"][precision] = {
            name: {"batch64_images_per_s": round(64 / inference[(precision, name, 64)], 2),
                   "batch1_ms_per_face": round(1000 * inference[(precision, name, 1)], 2)}
            for name in ("dan_2_stage", "bare_stage", "aan")}
        train, infer = result["training_images_per_s"][precision], result["inference"][precision]
        result["ratios"][precision] = {
            "inference_ratio": round(infer["dan_2_stage"]["batch64_images_per_s"]
                                     / infer["bare_stage"]["batch64_images_per_s"], 3),
            "inference_ratio_batch1": round(infer["bare_stage"]["batch1_ms_per_face"]
                                            / infer["dan_2_stage"]["batch1_ms_per_face"], 3),
            "training_ratio": round(train["stage_2"] / train["bare_stage"], 3),
        }
    # the pipeline's training loop against the bare step, in the precision training uses
    fit_rate = fit_loop_images_per_s(rng, mean_shape, auto, train_batch, rounds)
    bare = result["training_images_per_s"].get(auto, {}).get("bare_stage")
    result["fit_loop"] = {"precision": auto, "stage_1_images_per_s": round(fit_rate, 2),
                          "ratio_to_bare_stage": round(fit_rate / bare, 3) if bare else None}
    result["connection_layers_ms_batch64"] = connection_layer_ms(rng, mean_shape, 64, rounds + 2)
    result["targets"] = {"inference_ratio": 0.45, "training_ratio": 0.40,
                         "fit_loop_ratio_to_bare_stage": 0.90}
    wall = time.perf_counter() - wall_start
    result["seconds"] = round(wall, 1)
    result["cpu_share"] = round((time.process_time() - cpu_start) / (wall * os.cpu_count()), 2)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
