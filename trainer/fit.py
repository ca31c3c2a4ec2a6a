"""The one fit loop of DAN's stages and of the AAN, and the one result type of a training.

`fit` runs Keras' fit with what every training here wants: early stopping on
the validation NME that keeps the best epoch (after trainer.lr_drops drops of the
learning rate on plateaus), the wall-clock budget,
TensorBoard logs and, given a folder, a backup after each epoch so a killed
run resumes from its last finished epoch (trainer/backup.py). DAN calls it
once per stage, the AAN once. Under a multi-worker strategy only the chief
writes logs and backups, and all workers end at the same epoch
(trainer/distribution.py).
"""
from __future__ import annotations

import dataclasses
import os
import time
import warnings

import keras
import numpy as np

from trainer import distribution, precision
from trainer.losses import normalized_mean_error
from trainer.time_budget import TimeBudget, stop_reason


@dataclasses.dataclass
class FitOutcome:
    """One fit: the validation scores of the kept weights, the history, why it ended."""

    scores: dict[str, float]
    history: dict[str, list[float]]
    stop_reason: str          # "patience", "max epochs" or "time budget"
    steps: int                # optimizer steps of this fit (resumed epochs included)
    seconds: float = 0.0          # training seconds of this fit, resumed ones included
    resumed_seconds: float = 0.0  # of them, spent by interrupted earlier processes


@dataclasses.dataclass
class TrainingResult:
    """What a DAN or AAN training returns; one entry per stage in the lists (AAN: one)."""

    model: keras.Model                     # the exported model: stage_k and landmarks outputs
    nme_inter_pupil: list[float]           # validation NME after each stage (fraction)
    nme_inter_ocular: list[float]
    initial_nme_inter_pupil: float         # the mean shape S0's validation NME
    initial_nme_inter_ocular: float
    histories: list[dict[str, list[float]]]
    stop_reasons: list[str]
    steps: list[int]                       # optimizer steps per stage, this training only
    precision: str = "float32"             # what trainer.precision resolved to, and why
    precision_reason: str = ""
    parent: dict | None = None             # warm_start.lineage_of the model it continued from
    resumed_seconds: float = 0.0           # training time of interrupted earlier processes


RATE_KEY = "images_per_s"


class RequireMonitor(keras.callbacks.Callback):
    """Stops at the first epoch if the metric early stopping watches is not logged: Keras
    only warns and then trains on without early stopping or keeping the best weights."""

    def __init__(self, monitor: str):
        super().__init__()
        self.monitor = monitor

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.monitor not in logs:
            raise ValueError(f"early stopping watches {self.monitor!r}, which the model does "
                             f"not log (it logs {', '.join(sorted(logs))})")


class TrainingRate(keras.callbacks.Callback):
    """Images/s of an epoch's training steps alone (validation and start-up excluded), into the
    epoch's logs as `images_per_s`: the figure to hold against benchmarks/model_speed.py's."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self._start = self._end = None
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._steps = None, 0

    def on_train_batch_begin(self, batch, logs=None):
        if self._start is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        self._end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._steps and self._end > self._start:
            logs[RATE_KEY] = self._steps * self.batch_size / (self._end - self._start)


class PlateauDrops(keras.callbacks.EarlyStopping):
    """Early stopping that, `drops` times, goes on at a tenth of the learning rate instead.

    Where EarlyStopping would end the fit (patience epochs without a better
    monitored value), the best epoch's weights are put back, the optimizer's
    learning rate is divided by `factor` and the patience count starts again;
    after the last drop it ends the fit as EarlyStopping does. It replaces the
    manual "continue the published model at 1e-4" generation (dan-300w-fast
    generations 3 -> 4: 4.23% -> 4.07% held-out) inside one run. The drops
    taken are read off the learning rate itself (saved with the optimizer), so
    a resumed fit (trainer/backup.py) goes on where it stopped.
    """

    def __init__(self, drops: int, initial_rate: float, factor: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        self.drops = int(drops)
        self.initial_rate = float(initial_rate)
        self.factor = float(factor)

    def drops_taken(self) -> int:
        rate = float(np.asarray(self.model.optimizer.learning_rate))
        return int(round(np.log(self.initial_rate / rate) / np.log(self.factor)))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if not (self.drops and self.model.stop_training and self.stopped_epoch == epoch):
            return
        taken = self.drops_taken()
        if taken >= self.drops:
            return
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        rate = self.initial_rate / self.factor ** (taken + 1)
        self.model.optimizer.learning_rate = rate
        self.model.stop_training = False
        self.stopped_epoch, self.wait = 0, 0
        print(f"plateau: {self.patience} epochs without a better {self.monitor}; back to epoch "
              f"{self.best_epoch + 1}'s weights, learning rate {rate:g} (drop {taken + 1} of "
              f"{self.drops})", flush=True)


def training_rate(history: dict) -> float | None:
    """The median images/s of a fit's epochs after the first (which traces the graph)."""
    rates = list(history.get(RATE_KEY, []))[1:]
    return float(np.median(rates)) if rates else None


def resolve_precision(trainer_cfg):
    """trainer_cfg with `auto` replaced by this machine's precision; (cfg, precision, why)."""
    chosen, reason = precision.choose(trainer_cfg.precision)
    print(f"precision: {chosen} ({reason})", flush=True)
    return trainer_cfg.model_copy(update={"precision": chosen}), chosen, reason


def mean_shape_nme(dataset, mean_shape, normalization: str) -> float:
    """Validation NME of the mean shape S0 itself: the score a model has to beat."""
    if dataset is None:
        return float("nan")
    errors = [np.asarray(normalized_mean_error(y, np.broadcast_to(mean_shape, y.shape),
                                               normalization)) for _, y in dataset]
    return float(np.mean(np.concatenate(errors)))


def fit(model: keras.Model, train_data, eval_data, trainer_cfg, *, monitor: str,
        score_keys: dict[str, str], name: str, log_dir: str | None = None, verbose="auto",
        time_budget_s: float | None = None, backup_dir: str | None = None) -> FitOutcome:
    """Fits a compiled model; returns the validation scores of its best epoch.

    monitor: the metric early stopping watches (without "val_"; with eval
    data the validation one is used). score_keys: {result name: metric name
    in model.evaluate's dict}. name: the TensorBoard subfolder.
    """
    watch = f"val_{monitor}" if eval_data is not None else monitor
    early_stopping = PlateauDrops(trainer_cfg.lr_drops, trainer_cfg.learning_rate,
                                  monitor=watch, mode="min", patience=trainer_cfg.patience,
                                  restore_best_weights=True)
    budget = TimeBudget(time_budget_s)
    callbacks = [TrainingRate(trainer_cfg.batch_size), RequireMonitor(watch), early_stopping,
                 budget]
    backup = None
    if backup_dir:
        backup = distribution.epoch_backup(backup_dir, early_stopping, budget)
        callbacks.append(backup)
    if log_dir and distribution.is_chief():
        callbacks.append(keras.callbacks.TensorBoard(log_dir=os.path.join(log_dir, name)))
    if distribution.num_workers() > 1:   # every worker ends each epoch with the same model
        callbacks = [distribution.AverageMovingStatistics(), *callbacks,
                     distribution.StopTogether()]
    with warnings.catch_warnings():
        # TFRecord datasets have unknown length: Keras learns it from the end of the first pass.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = model.fit(train_data, validation_data=eval_data,
                            epochs=trainer_cfg.max_epochs_per_stage,
                            steps_per_epoch=trainer_cfg.steps_per_epoch, shuffle=False,
                            callbacks=callbacks, verbose=verbose)
        scores = model.evaluate(
            eval_data if eval_data is not None else train_data,
            steps=None if eval_data is not None else trainer_cfg.steps_per_epoch,
            return_dict=True, verbose=0)
    full_history = backup.full_history(history.history) if backup else history.history
    reason = stop_reason(full_history, budget, trainer_cfg.max_epochs_per_stage)
    return FitOutcome({key: float(scores[metric]) for key, metric in score_keys.items()},
                      full_history, reason, int(model.optimizer.iterations.numpy()),
                      budget.used_seconds(), budget.earlier_seconds)
