"""Sequential DAN training (sec. 3.5): one stage at a time, earlier stages frozen.

Stage 1 trains alone until the validation error stops improving for
`patience` epochs, and keeps its best weights; then it is frozen (its
BatchNorm and dropout switch to inference behaviour) and stage 2 with its
connection layers is trained the same way, and so on. Each stage minimises
eq. 4, the inter-pupil-normalised landmark error of its own output S_t.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable

import keras
import numpy as np

from facealign.config import DanConfig, TrainerSection
from trainer import dan_input
from trainer.time_budget import Deadline, TimeBudget, stop_reason
from trainer.dan_model import (build_dan_model, num_stages, set_stage_trainable,
                               stage_model, stage_output_name)
from trainer.losses import CORNERS, NormalizedLandmarkLoss, NormalizedMeanError, \
    normalized_mean_error

NME_INTER_OCULAR = "nme_inter_ocular"   # outer eye corners: the headline measure, and sweeps'


@dataclasses.dataclass
class DanTrainingResult:
    model: keras.Model                  # the whole DAN, dict outputs, all layers trainable
    stage_nme: list[float]              # validation NME (inter-pupil, fraction) after each stage
    initial_nme: float                  # validation NME of the mean shape S0, for reference
    histories: list[dict[str, list[float]]]   # Keras history of each stage's fit
    stop_reasons: list[str] = dataclasses.field(default_factory=list)  # why each stage ended
    # validation NME normalised by the outer eye corners after each stage (box diagonal
    # for other than 68 points)
    stage_nme_inter_ocular: list[float] = dataclasses.field(default_factory=list)


def _mean_shape_nme(dataset, mean_shape: np.ndarray) -> float:
    errors = []
    for _, landmarks in dataset:
        initial = np.broadcast_to(mean_shape, landmarks.shape)
        errors.append(np.asarray(normalized_mean_error(landmarks, initial)))
    return float(np.mean(np.concatenate(errors)))


def train_stage(model: keras.Model, stage: int, train_data, eval_data,
                trainer_cfg: TrainerSection, log_dir: str | None = None,
                verbose="auto", time_budget_s: float | None = None) -> tuple[dict, dict, str]:
    """Trains one stage of `model` with all earlier stages frozen.

    Returns (validation scores {"nme": inter-pupil eq. 4, "nme_inter_ocular"},
    Keras history, why training ended: patience, max epochs or time budget).
    """
    for earlier in range(1, stage):
        set_stage_trainable(model, earlier, False)
    set_stage_trainable(model, stage, True)
    submodel = stage_model(model, stage)
    submodel.compile(optimizer=keras.optimizers.Adam(trainer_cfg.learning_rate),
                     loss=NormalizedLandmarkLoss(),
                     metrics=[NormalizedMeanError(),
                              NormalizedMeanError(CORNERS, name=NME_INTER_OCULAR)])
    monitor = "val_loss" if eval_data is not None else "loss"
    callbacks = [keras.callbacks.EarlyStopping(monitor=monitor, mode="min",
                                               patience=trainer_cfg.patience,
                                               restore_best_weights=True)]
    budget = TimeBudget(time_budget_s)
    callbacks.append(budget)
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(
            log_dir=os.path.join(log_dir, stage_output_name(stage))))
    with warnings.catch_warnings():
        # TFRecord datasets have unknown length: Keras learns it from the end of the first pass.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = submodel.fit(train_data, validation_data=eval_data,
                               epochs=trainer_cfg.max_epochs_per_stage,
                               steps_per_epoch=trainer_cfg.steps_per_epoch, shuffle=False,
                               callbacks=callbacks, verbose=verbose)
        scores = submodel.evaluate(
            eval_data if eval_data is not None else train_data,
            steps=None if eval_data is not None else trainer_cfg.steps_per_epoch,
            return_dict=True, verbose=0)
    reason = stop_reason(history.history, budget, trainer_cfg.max_epochs_per_stage)
    return ({key: float(scores[key]) for key in ("nme", NME_INTER_OCULAR)}, history.history,
            reason)


def train_dan(train_files: str | Iterable[str], eval_files: str | Iterable[str] | None,
              mean_shape, pixel_mean, pixel_std, dan_cfg: DanConfig | None = None,
              trainer_cfg: TrainerSection | None = None, log_dir: str | None = None,
              verbose="auto", seed: int | None = None) -> DanTrainingResult:
    """Builds a DAN and trains its dan_cfg.stages stages sequentially.

    train_files, eval_files: canonical-sample GZIP TFRecords (paths or globs).
    Without eval files, early stopping and the reported NME use the training
    data (not recommended). mean_shape [N, 2], pixel_mean/pixel_std [size,
    size]: training-set statistics, as in build_dan_model. log_dir: a
    TensorBoard subfolder per stage. seed: seeds Keras/TF/NumPy if given.
    """
    dan_cfg = dan_cfg or DanConfig()
    trainer_cfg = trainer_cfg or TrainerSection()
    if seed is not None:
        keras.utils.set_random_seed(seed)
    mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)
    image_size = np.asarray(pixel_mean).shape[0]
    train_data, eval_data = dan_input.training_datasets(
        train_files, eval_files, mean_shape.shape[0], image_size, trainer_cfg, seed)
    if eval_data is None:
        print("train_dan: no eval files; early stopping watches the training loss")

    model = build_dan_model(mean_shape, pixel_mean, pixel_std, dan_cfg,
                            precision=trainer_cfg.precision)
    initial_nme = _mean_shape_nme(eval_data, mean_shape) if eval_data is not None \
        else float("nan")
    print(f"mean shape S0: validation NME {initial_nme:.4f}")
    normaliser = "inter-pupil distance" if mean_shape.shape[0] == 68 else "box diagonal"
    stage_nme, stage_nme_io, histories, reasons = [], [], [], []
    deadline = Deadline(trainer_cfg.time_budget_minutes)
    for stage in range(1, num_stages(model) + 1):
        scores, history, reason = train_stage(
            model, stage, train_data, eval_data, trainer_cfg, log_dir=log_dir, verbose=verbose,
            time_budget_s=deadline.share(num_stages(model) - stage + 1))
        nme = scores["nme"]
        stage_nme.append(nme)
        stage_nme_io.append(scores[NME_INTER_OCULAR])
        histories.append(history)
        reasons.append(reason)
        print(f"stage {stage}: validation NME {nme:.4f} ({100 * nme:.2f}% of the "
              f"{normaliser}; {100 * scores[NME_INTER_OCULAR]:.2f}% inter-ocular) after "
              f"{len(history['loss'])} epochs (ended by {reason})")
    for stage in range(1, num_stages(model) + 1):
        set_stage_trainable(model, stage, True)
    return DanTrainingResult(model=model, stage_nme=stage_nme, initial_nme=initial_nme,
                             histories=histories, stop_reasons=reasons,
                             stage_nme_inter_ocular=stage_nme_io)
