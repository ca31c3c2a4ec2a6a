"""Training entry points: `run_fn` for the TFX Trainer and `train_and_export`
for `facealign train`; both end in the same exported SavedModel."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import tensorflow as tf

from facealign.core import config as config_lib
from facealign.core import frame_io, geometry, spans
from facealign.core.canonical_example import decode_canonical_example
from trainer import backup, distribution, export, flip_average, warm_start
from trainer.fit import training_rate
from trainer.training import train_model


def train_and_export(cfg: config_lib.Config, train_files, eval_files, frame: dict,
                     serving_model_dir: str, log_dir: str | None = None,
                     init_from: str | None = None, backup_dir: str | None = None,
                     verbose="auto") -> dict:
    """Trains the configured model and writes the SavedModel; returns a summary.

    init_from: the model to continue from (default: trainer.warm_start when
    it names a path). backup_dir: resume folder, removed once the model is
    exported.
    """
    if init_from is None and config_lib.warm_start_path(cfg.trainer.warm_start):
        init_from = str(cfg.resolve(cfg.trainer.warm_start))
    if cfg.model.flip_average:   # refused before hours of training, not at the export
        flip_average.mirror_permutation_for(len(np.asarray(frame["mean_shape"]).reshape(-1, 2)))
    started = time.monotonic()
    result = train_model(cfg.model, cfg.trainer, train_files, eval_files, frame,
                         seed=cfg.augment.seed, log_dir=log_dir, init_from=init_from,
                         backup_dir=backup_dir, verbose=verbose)
    parent = result.parent or {}
    # a resumed training counts the time the interrupted processes spent too
    seconds = time.monotonic() - started + result.resumed_seconds
    steps = int(sum(result.steps))
    summary = {"model": cfg.model.name, "stages": len(result.nme_inter_pupil),
               "validation_nme_inter_pupil_per_stage": [round(x, 6)
                                                        for x in result.nme_inter_pupil],
               "validation_nme_inter_ocular_per_stage": [round(x, 6)
                                                         for x in result.nme_inter_ocular],
               "validation_nme_mean_shape": round(result.initial_nme_inter_pupil, 6),
               "epochs_per_stage": [len(h.get("loss", [])) for h in result.histories],
               "steps_per_stage": list(result.steps),
               "ended_by": result.stop_reasons,
               "training_seconds": round(seconds, 1),
               # per stage, validation excluded: compare with benchmarks/model_speed.py
               "training_images_per_s": [None if rate is None else round(rate, 2) for rate in
                                         map(training_rate, result.histories)],
               "precision": result.precision, "precision_reason": result.precision_reason,
               "lineage": {
                   "parent": parent.get("parent"),
                   "parent_exported_at": parent.get("parent_exported_at"),
                   "generation": int(parent.get("generation", 0)) + 1,
                   "cumulative_steps": int(parent.get("cumulative_steps", 0)) + steps,
                   "cumulative_samples": int(parent.get("cumulative_samples", 0))
                   + steps * cfg.trainer.batch_size,
                   "cumulative_seconds": round(float(parent.get("cumulative_seconds", 0.0))
                                               + seconds, 1),
                   "spans_per_generation": [*parent.get("spans_per_generation", []),
                                            training_spans(train_files)]},
               "validation_curve": validation_curve(result, parent, cfg.trainer.batch_size),
               "training_data": [s.name for s in cfg.data.sources if s.split == "train"],
               "config": config_lib.component_config(cfg, config_lib.TRAINER_SECTIONS)}
    if distribution.is_chief():   # multi-worker: the chief alone writes the model
        served = warm_start.exported_view(result.model, cfg.model)
        export.export_saved_model(served, frame["mean_shape"], serving_model_dir,
                                  metadata=summary, image_size=frame["image_size"],
                                  warmup_faces=warmup_faces(eval_files))
        if backup_dir and tf.io.gfile.exists(backup_dir):
            tf.io.gfile.rmtree(backup_dir)
        print(f"Trainer: exported {serving_model_dir} after {seconds:.0f} s; validation NME "
              f"per stage {summary['validation_nme_inter_pupil_per_stage']}", flush=True)
    else:
        print(f"Trainer: {distribution.describe()} done; the chief exports the model",
              flush=True)
    distribution.wait_for_chief("exported")   # workers return once the model exists
    return summary


def validation_curve(result, parent: dict, batch_size: int) -> list[dict]:
    """Validation NME after every epoch against the samples trained on since the first ancestor.

    The parent's curve comes first, so a model card can draw the whole
    cumulative training. Each point: stage, cumulative samples, NME
    inter-pupil and inter-ocular (fractions).
    """
    curve = list(parent.get("validation_curve") or [])
    samples = int(parent.get("cumulative_samples", 0))
    dan = any("val_nme" in history for history in result.histories)
    pupil = "val_nme" if dan else "val_stage_1_nme_inter_pupil"
    ocular = "val_nme_inter_ocular" if pupil == "val_nme" else "val_stage_1_nme_inter_ocular"
    for stage, (history, steps) in enumerate(zip(result.histories, result.steps), start=1):
        epochs = len(history.get(pupil, []))
        for epoch in range(epochs):
            curve.append({"stage": stage,
                          "samples": samples + round(steps * (epoch + 1) / epochs) * batch_size,
                          "nme_inter_pupil": round(float(history[pupil][epoch]), 6),
                          "nme_inter_ocular": round(float(history[ocular][epoch]), 6)})
        samples += steps * batch_size
    return curve


def warmup_faces(eval_files, count: int = export.MAX_WARMUP_FACES) -> list:
    """(PNG bytes, box) of the first few held-out faces, for TF Serving's warmup requests.

    The eval split holds canonical crops, not the photos; a crop is a real photo
    of the face too, and its detector box maps into it through to_original.
    """
    faces = []
    for pattern in ([eval_files] if isinstance(eval_files, str) else eval_files):
        for path in sorted(tf.io.gfile.glob(pattern)):
            for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
                sample = decode_canonical_example(record.numpy()).sample
                corners = np.reshape(sample.box, (2, 2))
                box = geometry.apply_transform(sample.to_canonical, corners.astype(np.float64))
                png = tf.io.encode_png(sample.image[..., None]).numpy()
                faces.append((png, [float(v) for v in (*box.min(0), *box.max(0))]))
                if len(faces) == count:
                    return faces
    return faces


def training_spans(train_files) -> list[int]:
    """The spans of the crops trained on, from the label Augment writes beside them (the
    Trainer sees file patterns, not artifacts); [] for crops without one."""
    found = set()
    for pattern in [train_files] if isinstance(train_files, str) else train_files:
        label = os.path.join(os.path.dirname(os.path.dirname(pattern)), spans.LABEL_FILE)
        if tf.io.gfile.exists(label):
            with tf.io.gfile.GFile(label) as handle:
                found.add(int(json.load(handle)["span"]))
    return sorted(found)


def backup_folder(fn_args) -> str:
    """The resume folder of this Trainer's inputs and configuration, beside its executions.

    A re-run of a killed pipeline gives the Trainer a new execution (and
    output folder) but the same inputs and custom_config, hence the same key.
    """
    trainer_root = os.path.dirname(os.path.dirname(fn_args.model_run_dir.rstrip("/")))
    return backup.keyed_folder(os.path.join(trainer_root, "resume"), {
        "config": fn_args.custom_config, "train": sorted(fn_args.train_files),
        "eval": sorted(fn_args.eval_files or []), "frame": fn_args.transform_graph_path,
        "base_model": getattr(fn_args, "base_model", None),
        "hyperparameters": getattr(fn_args, "hyperparameters", None)})


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (GenericExecutor)."""
    cfg = config_lib.from_custom_config(fn_args.custom_config, "Trainer")
    distribution.strategy(cfg.trainer.distribution)   # before TensorFlow runs anything
    if getattr(fn_args, "hyperparameters", None):   # the Tuner's best values (tuner.enabled)
        from trainer.tuning import apply_best_hyperparameters
        cfg = apply_best_hyperparameters(cfg, fn_args.hyperparameters)
        print(f"Trainer: tuned hyperparameters {fn_args.hyperparameters.get('values')}",
              flush=True)
    init_from = None
    if cfg.trainer.warm_start == config_lib.LATEST_BLESSED:
        init_from = getattr(fn_args, "base_model", None)
        source = init_from or "none yet, training from random weights"
        print(f"Trainer: warm start from the latest blessed model: {source}", flush=True)
    frame = frame_io.read_frame(fn_args.transform_graph_path)
    summary = train_and_export(cfg, fn_args.train_files, fn_args.eval_files, frame,
                               fn_args.serving_model_dir, log_dir=fn_args.model_run_dir,
                               init_from=init_from, backup_dir=backup_folder(fn_args),
                               verbose=2)   # one line per epoch in the pipeline's log
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}), flush=True)
