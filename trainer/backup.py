"""Resuming a killed training from its last finished epoch.

A Trainer killed at hour two should not start again from epoch 0. After each
epoch `EpochBackup` writes into the fit's backup folder: the model's and the
optimizer's state (Keras' save_weights), the best epoch's weights that
early stopping keeps, and a small JSON with the epoch, early stopping's
counters, the history so far and the seconds used. When the same fit starts
again with the same folder it loads all of that and continues with the next
epoch, as if it had never stopped. Files are written beside their final
name and renamed, so a kill mid-write leaves the previous epoch's backup.

`StageBackup` keeps the weights of the fits (DAN stages) that finished, so
a resumed DAN skips them. The folder is keyed by the Trainer's inputs and
configuration (trainer/run.py) and removed when the Trainer succeeds.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import keras
import numpy as np

STATE_FILE = "state.json"
WEIGHTS_FILE = "latest.weights.h5"
BEST_FILE = "best.npz"


def keyed_folder(root: str, inputs: dict) -> str:
    """root/<hash of inputs>: the same training inputs and settings find the same backup."""
    key = json.dumps(inputs, sort_keys=True, default=str)
    return os.path.join(root, hashlib.sha256(key.encode()).hexdigest()[:16])


def _atomic_write_text(path: str, text: str) -> None:
    partial = f"{path}.partial"
    with open(partial, "w") as handle:
        handle.write(text)
    os.replace(partial, path)


class EpochBackup(keras.callbacks.Callback):
    """Saves a fit's state after every epoch and restores it when the fit starts again.

    Must come after the EarlyStopping and TimeBudget callbacks it restores
    in the callback list (their on_train_begin resets them first).
    """

    def __init__(self, folder: str, early_stopping, budget):
        super().__init__()
        self.folder = folder
        self.early_stopping = early_stopping
        self.budget = budget
        self.resumed_history: dict[str, list[float]] = {}
        self.resumed_epoch = 0

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def on_train_begin(self, logs=None):
        state_path = self._path(STATE_FILE)
        if not os.path.exists(state_path):
            return
        with open(state_path) as handle:
            state = json.load(handle)
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self._path(WEIGHTS_FILE))
        stopping = self.early_stopping
        stopping.best, stopping.best_epoch = state["best"], state["best_epoch"]
        stopping.wait = state["wait"]
        if os.path.exists(self._path(BEST_FILE)):
            with np.load(self._path(BEST_FILE)) as best:
                stopping.best_weights = [best[f"w{i}"] for i in range(len(best.files))]
        self.budget.resume(state["seconds"], state["epoch"])
        self.resumed_history = state["history"]
        self.resumed_epoch = state["epoch"]
        self.model._initial_epoch = state["epoch"]   # where Keras' BackupAndRestore puts it too
        best = ("no best epoch recorded" if state["best"] is None
                else f"best {state['best']:.5f} at epoch {state['best_epoch'] + 1}")
        print(f"resume: {self.folder}: continuing after epoch {state['epoch']} ({best})",
              flush=True)

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.folder, exist_ok=True)
        partial = self._path(f"partial.{WEIGHTS_FILE}")
        self.model.save_weights(partial, overwrite=True)
        os.replace(partial, self._path(WEIGHTS_FILE))
        stopping = self.early_stopping
        if stopping.best_weights is not None and stopping.best_epoch == epoch:
            partial = self._path(f"partial.{BEST_FILE}")
            with open(partial, "wb") as handle:
                np.savez(handle, **{f"w{i}": w for i, w in enumerate(stopping.best_weights)})
            os.replace(partial, self._path(BEST_FILE))
        history = {key: list(values) for key, values in self.resumed_history.items()}
        for key, value in (logs or {}).items():
            history.setdefault(key, []).append(float(value))
        self.resumed_history = history
        best = stopping.best
        _atomic_write_text(self._path(STATE_FILE), json.dumps({
            "epoch": epoch + 1, "best": None if best is None else float(best),
            "best_epoch": int(stopping.best_epoch), "wait": int(stopping.wait),
            "seconds": self.budget.used_seconds(), "history": history}))

    def full_history(self, history: dict) -> dict:
        """The whole fit's history: the epochs before the kill, then this run's."""
        return self.resumed_history if self.resumed_history else history


class StageBackup:
    """The finished fits of a sequential training (DAN's stages) and their results."""

    def __init__(self, folder: str | None):
        self.folder = folder

    def fit_folder(self, name: str) -> str | None:
        return None if self.folder is None else os.path.join(self.folder, name)

    def _done(self, name: str) -> str:
        return os.path.join(self.folder, f"{name}.done")

    def finished(self, name: str, model: keras.Model):
        """The saved result of a finished fit (its weights loaded into model), or None."""
        if self.folder is None or not os.path.exists(os.path.join(self._done(name), "result.json")):
            return None
        model.load_weights(os.path.join(self._done(name), "model.weights.h5"))
        with open(os.path.join(self._done(name), "result.json")) as handle:
            result = json.load(handle)
        print(f"resume: {name} finished before the interruption; its weights are loaded",
              flush=True)
        return result

    def finish(self, name: str, model: keras.Model, result: dict) -> None:
        """Records a finished fit: the whole model's weights and its result."""
        if self.folder is None:
            return
        done = self._done(name)
        os.makedirs(done, exist_ok=True)
        model.save_weights(os.path.join(done, "model.weights.h5"), overwrite=True)
        _atomic_write_text(os.path.join(done, "result.json"), json.dumps(result))
        shutil.rmtree(self.fit_folder(name), ignore_errors=True)

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
