"""AAN training (sec. 4.2): the whole network at once, the heads' losses summed.

Loss: the NME of eq. 5 (aan_cfg.normalization, inter-ocular = outer eye
corners for 68 points by default; other markups fall back to the box
diagonal, see trainer.losses) on the final output plus, with intermediate
supervision, on every head, each with weight 1 and the same ground truth.
Optimiser: Adam with decoupled weight decay (AdamW, aan_cfg.weight_decay,
not applied to biases or BatchNorm) - the paper names "weight decay 0.001"
with Adam; a coupled L2 term would add a loss several times the NME itself
and swamp it. Learning rate: trainer.learning_rate, then /10 and /100 after
the aan_cfg.lr_boundaries steps (PiecewiseConstantDecay). Early stopping on
the validation NME of the final output (patience from TrainerSection),
keeping the best weights.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable

import keras
import numpy as np

from facealign.config import AanConfig, TrainerSection
from trainer import dan_input
from trainer.aan_model import FINAL, build_aan_model, inference_model
from trainer.losses import CORNERS, PUPILS, NormalizedLandmarkLoss, NormalizedMeanError, \
    normalized_mean_error
from trainer.time_budget import Deadline, TimeBudget, stop_reason

NME = "nme"                      # final output, aan_cfg.normalization
NME_INTER_PUPIL = "nme_inter_pupil"   # final output, inter-pupil (comparable with DAN)
NME_INTER_OCULAR = "nme_inter_ocular"  # final output, outer eye corners (sweeps' objective)


@dataclasses.dataclass
class AanTrainingResult:
    model: keras.Model            # the inference model: {"stage_1", "landmarks"}
    training_model: keras.Model   # with the intermediate heads
    nme: float                    # validation NME of the final output (aan_cfg.normalization)
    nme_inter_pupil: float        # the same, inter-pupil normalised
    initial_nme: float            # validation NME of S0 (aan_cfg.normalization)
    initial_nme_inter_pupil: float   # the same, inter-pupil normalised
    history: dict[str, list[float]]
    stop_reason: str = "patience"  # or "max epochs" or "time budget"
    nme_inter_ocular: float = float("nan")   # final output, outer eye corners


def compile_aan(model: keras.Model, aan_cfg: AanConfig, learning_rate: float) -> None:
    """Sums one NME loss per output (weight 1); metrics on the final output."""
    low, high = aan_cfg.lr_boundaries
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [low, high], [learning_rate, learning_rate * 0.1, learning_rate * 0.01])
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=aan_cfg.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    losses = {key: NormalizedLandmarkLoss(aan_cfg.normalization) for key in model.output}
    metrics = {FINAL: [NormalizedMeanError(aan_cfg.normalization, name=NME),
                       NormalizedMeanError(PUPILS, name=NME_INTER_PUPIL),
                       NormalizedMeanError(CORNERS, name=NME_INTER_OCULAR)]}
    model.compile(optimizer=optimizer, loss=losses, metrics=metrics)


def with_targets(dataset, keys):
    """(image, landmarks) -> (image, {key: landmarks for every supervised output})."""
    keys = list(keys)
    return dataset.map(lambda image, shape: (image, {k: shape for k in keys}))


def _mean_shape_nme(dataset, mean_shape, normalization) -> float:
    errors = [np.asarray(normalized_mean_error(y, np.broadcast_to(mean_shape, y.shape),
                                               normalization)) for _, y in dataset]
    return float(np.mean(np.concatenate(errors)))


def train_aan(train_files: str | Iterable[str], eval_files: str | Iterable[str] | None,
              mean_shape, pixel_mean, pixel_std, aan_cfg: AanConfig | None = None,
              trainer_cfg: TrainerSection | None = None, log_dir: str | None = None,
              verbose="auto", seed: int | None = None) -> AanTrainingResult:
    """Builds and trains an AAN; arguments as trainer.dan_training.train_dan.

    Epochs: trainer_cfg.max_epochs_per_stage (AAN has one stage).
    """
    aan_cfg = aan_cfg or AanConfig()
    trainer_cfg = trainer_cfg or TrainerSection()
    if seed is not None:
        keras.utils.set_random_seed(seed)
    mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)
    image_size = np.asarray(pixel_mean).shape[0]
    train_data, eval_data = dan_input.training_datasets(
        train_files, eval_files, mean_shape.shape[0], image_size, trainer_cfg, seed)
    if eval_data is None:
        print("train_aan: no eval files; early stopping watches the training data")

    model = build_aan_model(mean_shape, pixel_mean, pixel_std, aan_cfg,
                            precision=trainer_cfg.precision)
    compile_aan(model, aan_cfg, trainer_cfg.learning_rate)
    initial_nme, initial_pupils = (
        (_mean_shape_nme(eval_data, mean_shape, aan_cfg.normalization),
         _mean_shape_nme(eval_data, mean_shape, PUPILS))
        if eval_data is not None else (float("nan"), float("nan")))
    print(f"mean shape S0: validation NME {initial_nme:.4f}")

    keys = list(model.output)
    train_xy = with_targets(train_data, keys)
    eval_xy = with_targets(eval_data, keys) if eval_data is not None else None
    metric = f"{FINAL}_{NME}"
    monitor = f"val_{metric}" if eval_xy is not None else metric
    callbacks = [keras.callbacks.EarlyStopping(monitor=monitor, mode="min",
                                               patience=trainer_cfg.patience,
                                               restore_best_weights=True)]
    budget = TimeBudget(Deadline(trainer_cfg.time_budget_minutes).share(1))
    callbacks.append(budget)
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=os.path.join(log_dir, "aan")))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = model.fit(train_xy, validation_data=eval_xy,
                            epochs=trainer_cfg.max_epochs_per_stage,
                            steps_per_epoch=trainer_cfg.steps_per_epoch, shuffle=False,
                            callbacks=callbacks, verbose=verbose)
        scores = model.evaluate(
            eval_xy if eval_xy is not None else train_xy,
            steps=None if eval_xy is not None else trainer_cfg.steps_per_epoch,
            return_dict=True, verbose=0)
    nme, nme_pupils = float(scores[metric]), float(scores[f"{FINAL}_{NME_INTER_PUPIL}"])
    reason = stop_reason(history.history, budget, trainer_cfg.max_epochs_per_stage)
    print(f"AAN: validation NME {nme:.4f} ({aan_cfg.normalization}), {nme_pupils:.4f} "
          f"(inter-pupil) after {len(history.history['loss'])} epochs (ended by {reason})")
    return AanTrainingResult(model=inference_model(model), training_model=model, nme=nme,
                             nme_inter_pupil=nme_pupils, initial_nme=initial_nme,
                             initial_nme_inter_pupil=initial_pupils,
                             history=history.history, stop_reason=reason,
                             nme_inter_ocular=float(scores[f"{FINAL}_{NME_INTER_OCULAR}"]))
