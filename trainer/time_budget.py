"""A wall-clock budget for training, so a long run ends when the operator needs it to.

Checked at the end of each epoch: training stops when the next epoch (as long
as the mean epoch so far) would end past the deadline. EarlyStopping's
restore_best_weights still puts back the best epoch's weights at the end.
"""
from __future__ import annotations

import time

import keras


class TimeBudget(keras.callbacks.Callback):
    """Stops `fit` before `seconds` of wall-clock time are exceeded (None: no limit)."""

    def __init__(self, seconds: float | None, clock=time.monotonic):
        super().__init__()
        self.seconds = seconds
        self.clock = clock
        self.exhausted = False
        self._started = None
        self._epochs = 0
        self._earlier = 0.0   # seconds used before a resume (trainer/backup.py)

    def on_train_begin(self, logs=None):
        self._started = self.clock()
        self._epochs = 0
        self._earlier = 0.0
        self.exhausted = False

    def resume(self, seconds: float, epochs: int) -> None:
        """Counts the time and epochs of the run that was interrupted."""
        self._earlier, self._epochs = float(seconds), int(epochs)

    @property
    def earlier_seconds(self) -> float:
        """Seconds the interrupted run had used (0 unless resumed)."""
        return self._earlier

    def used_seconds(self) -> float:
        return self._earlier + (self.clock() - self._started if self._started is not None else 0.0)

    def on_epoch_end(self, epoch, logs=None):
        self._epochs += 1
        if self.seconds is None:
            return
        elapsed = self.used_seconds()
        if elapsed + elapsed / self._epochs > self.seconds:
            self.exhausted = True
            self.model.stop_training = True
            print(f"time budget: stopping after epoch {epoch + 1} ({elapsed / 60:.1f} of "
                  f"{self.seconds / 60:.1f} min used; another epoch would not fit)", flush=True)


def stop_reason(history: dict, budget: TimeBudget, max_epochs: int) -> str:
    """Why a fit ended: 'time budget', 'max epochs' or 'patience'."""
    if budget.exhausted:
        return "time budget"
    if len(history.get("loss", [])) >= max_epochs:
        return "max epochs"
    return "patience"


class Deadline:
    """The budget shared by sequential fits (DAN's stages): each gets an even share of what is
    left."""

    def __init__(self, minutes: float | None, clock=time.monotonic):
        self.clock = clock
        self.end = None if minutes is None else clock() + 60.0 * minutes

    def share(self, fits_left: int) -> float | None:
        if self.end is None:
            return None
        return max(0.0, self.end - self.clock()) / max(1, fits_left)
