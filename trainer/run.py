"""Training entry points: `run_fn` for the TFX Trainer and `train_from_config`
for `facealign train`; both end in the same exported SavedModel."""
from __future__ import annotations

import json
import time

import numpy as np
import tensorflow as tf

from components.augment import frame_io
from facealign import config as config_lib
from facealign.canonical_example import decode_canonical_example
from trainer import aan_training, dan_training, export


def train_and_export(cfg: config_lib.Config, train_files, eval_files, frame: dict,
                     serving_model_dir: str, log_dir: str | None = None) -> dict:
    """Trains the configured model and writes the SavedModel; returns a summary."""
    started = time.monotonic()
    if cfg.model.name == "aan":
        result = aan_training.train_aan(
            train_files, eval_files, frame["mean_shape"], frame["pixel_mean"],
            frame["pixel_std"], cfg.model.aan, cfg.trainer, log_dir=log_dir,
            seed=cfg.augment.seed)
        stages, stage_nme = 1, [result.nme_inter_pupil]
        initial_nme, stop_reasons = result.initial_nme_inter_pupil, [result.stop_reason]
        epochs = [len(result.history["loss"])]
        stage_nme_io = [result.nme_inter_ocular]
    else:
        result = dan_training.train_dan(
            train_files, eval_files, frame["mean_shape"], frame["pixel_mean"],
            frame["pixel_std"], cfg.model.dan, cfg.trainer, log_dir=log_dir,
            seed=cfg.augment.seed)
        stages, stage_nme, initial_nme = cfg.model.dan.stages, result.stage_nme, \
            result.initial_nme
        stop_reasons = result.stop_reasons
        epochs = [len(history["loss"]) for history in result.histories]
        stage_nme_io = result.stage_nme_inter_ocular
    seconds = time.monotonic() - started
    summary = {"model": cfg.model.name, "stages": stages,
               "validation_nme_inter_pupil_per_stage": [round(x, 6) for x in stage_nme],
               "validation_nme_inter_ocular_per_stage": [round(x, 6) for x in stage_nme_io],
               "validation_nme_mean_shape": round(initial_nme, 6),
               "epochs_per_stage": epochs, "ended_by": stop_reasons,
               "training_seconds": round(seconds, 1),
               "training_data": [s.name for s in cfg.data.sources if s.split == "train"],
               "config": cfg.model_dump(mode="json")}
    export.export_saved_model(result.model, frame["mean_shape"], serving_model_dir,
                              metadata=summary, image_size=frame["image_size"],
                              warmup_faces=warmup_faces(eval_files))
    print(f"Trainer: exported {serving_model_dir} after {seconds:.0f} s; validation NME per "
          f"stage {summary['validation_nme_inter_pupil_per_stage']}", flush=True)
    return summary


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
                to_original = np.vstack([sample.to_original, [0.0, 0.0, 1.0]])
                corners = np.array([[sample.box[0], sample.box[1], 1.0],
                                    [sample.box[2], sample.box[3], 1.0]])
                box = (np.linalg.inv(to_original) @ corners.T)[:2].T
                png = tf.io.encode_png(sample.image[..., None]).numpy()
                faces.append((png, [float(v) for v in (*box.min(0), *box.max(0))]))
                if len(faces) == count:
                    return faces
    return faces


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (GenericExecutor)."""
    cfg = config_lib.from_dict(fn_args.custom_config["facealign"], "Trainer custom_config")
    if getattr(fn_args, "hyperparameters", None):   # the Tuner's best values (tuner.enabled)
        from trainer.tuning import apply_best_hyperparameters
        cfg = apply_best_hyperparameters(cfg, fn_args.hyperparameters)
        print(f"Trainer: tuned hyperparameters {fn_args.hyperparameters.get('values')}",
              flush=True)
    frame = frame_io.read_frame(fn_args.transform_graph_path)
    summary = train_and_export(cfg, fn_args.train_files, fn_args.eval_files, frame,
                               fn_args.serving_model_dir, log_dir=fn_args.model_run_dir)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}), flush=True)
