"""Trains the configured model: the one dispatch the Trainer, `facealign train` and sweeps share.

Builds the DAN or the AAN (their training resolves `trainer.precision: auto`
for this machine), loads the warm-start weights when a parent model is
given, and runs the model's training with an optional resume folder, all
under the `trainer.distribution` strategy (trainer/distribution.py).
"""
from __future__ import annotations

from facealign.core.config import ModelSection, TrainerSection
from trainer import aan_training, dan_training, distribution, warm_start
from trainer.aan_model import inference_model
from trainer.fit import TrainingResult


def train_model(model_cfg: ModelSection, trainer_cfg: TrainerSection, train_files, eval_files,
                frame: dict, *, seed: int | None = None, log_dir: str | None = None,
                verbose="auto", init_from: str | None = None,
                backup_dir: str | None = None) -> TrainingResult:
    """Trains model_cfg's model on canonical TFRecords with frame's S0 and pixel statistics.

    init_from: a SavedModel (or TF Serving base folder) to continue from; its
    lineage lands in the result's `parent`. backup_dir: where a killed
    training resumes from (trainer/backup.py).
    """
    parent = {}

    def init(model) -> int:
        """Loads the parent's weights; returns how many leading stages are kept as loaded."""
        if not init_from:
            return 0
        exported = inference_model(model) if model_cfg.name == "aan" else model
        lineage = warm_start.load_weights(model, exported, init_from,
                                          model_cfg.model_dump(mode="json"), frame["mean_shape"])
        parent["lineage"] = {k: v for k, v in lineage.items() if k != "kept_stages"}
        return lineage["kept_stages"]

    common = dict(log_dir=log_dir, verbose=verbose, seed=seed, init=init,
                  backup_dir=backup_dir)
    args = (train_files, eval_files, frame["mean_shape"], frame["pixel_mean"],
            frame["pixel_std"])
    strategy = distribution.strategy(trainer_cfg.distribution)
    kind, why = distribution.choose(trainer_cfg.distribution)
    print(f"distribution: {kind} ({why}), {strategy.num_replicas_in_sync} replica(s); "
          f"this process is the {distribution.describe()}", flush=True)
    with strategy.scope(), distribution.peer_failures():
        if model_cfg.name == "aan":
            result = aan_training.train_aan(*args, model_cfg.aan, trainer_cfg, **common)
        else:
            result = dan_training.train_dan(*args, model_cfg.dan, trainer_cfg, **common)
    result.parent = parent.get("lineage")
    return result
