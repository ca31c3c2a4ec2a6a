"""A training killed mid-stage resumes from its last finished epoch (trainer/backup.py)."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from facealign.core.config import TrainerSection
from trainer import backup, fit

REPO = pathlib.Path(__file__).resolve().parents[1]


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(inputs))
    model.compile(keras.optimizers.Adam(0.05), loss="mse", metrics=["mae"])
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    return x, (x[:, :2] * 2 + 1).astype(np.float32)


def test_a_resumed_fit_reports_the_seconds_of_the_interrupted_one(tmp_path):
    import tensorflow as tf
    x, y = _data()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    cfg = TrainerSection(max_epochs_per_stage=3, patience=5, batch_size=16)
    folder = str(tmp_path / "fit")
    first = fit.fit(_model(), data, data, cfg, monitor="loss", score_keys={"mae": "mae"},
                    name="a", verbose=0, backup_dir=folder)
    assert first.resumed_seconds == 0 and first.seconds > 0
    recorded = json.loads((tmp_path / "fit" / backup.STATE_FILE).read_text())["seconds"]
    # the same fit again, as after a kill at its last epoch: nothing left to train
    again = fit.fit(_model(), data, data, cfg, monitor="loss", score_keys={"mae": "mae"},
                    name="a", verbose=0, backup_dir=folder)
    assert again.resumed_seconds == pytest.approx(recorded)
    assert again.seconds >= again.resumed_seconds
    assert again.steps == first.steps


def test_fit_refuses_a_monitor_the_model_does_not_log():
    # Keras would only warn, then train on without early stopping or the best weights
    import tensorflow as tf
    x, y = _data()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    cfg = TrainerSection(max_epochs_per_stage=3, patience=5, batch_size=16)
    with pytest.raises(ValueError, match="watches 'val_out_mae', which the model does not "
                                         "log .*val_mae"):
        fit.fit(_model(), data, data, cfg, monitor="out_mae", score_keys={"mae": "mae"},
                name="a", verbose=0)


def test_a_resumed_fit_continues_with_weights_optimizer_and_early_stopping_state(tmp_path):
    x, y = _data()
    cfg = TrainerSection(max_epochs_per_stage=3, patience=5, batch_size=16)
    import tensorflow as tf
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    first = _model()
    folder = str(tmp_path / "fit")
    outcome = fit.fit(first, data, data, cfg, monitor="loss", score_keys={"mae": "mae"},
                      name="a", verbose=0, backup_dir=folder)
    state = json.loads((tmp_path / "fit" / backup.STATE_FILE).read_text())
    assert state["epoch"] == 3 and len(state["history"]["val_loss"]) == 3
    assert outcome.steps == 12
    # a new process would build a fresh model and call fit with the same folder
    second = _model()
    resumed = backup.EpochBackup(folder, keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=5, restore_best_weights=True), fit.TimeBudget(None))
    resumed.set_model(second)
    resumed.early_stopping.set_model(second)
    resumed.early_stopping.on_train_begin()
    resumed.on_train_begin()
    for ours, theirs in zip(second.get_weights(), first.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    assert int(second.optimizer.iterations.numpy()) == 12     # Adam's state came back too
    assert second._initial_epoch == 3
    assert resumed.early_stopping.best == pytest.approx(min(state["history"]["val_loss"]))
    assert resumed.early_stopping.best_weights is not None


def _train(work, *extra):
    command = [sys.executable, "-m", "facealign.cli", "train", "--config", "pipeline.yaml",
               "--work-dir", str(work), "--set", "trainer.max_epochs_per_stage=4",
               "--set", "trainer.patience=10", "--set", "trainer.steps_per_epoch=4",
               "--set", "trainer.precision=float32", *extra]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
def test_facealign_train_killed_mid_stage_resumes_after_its_last_epoch(tmp_path):
    work = tmp_path / "work"
    process = _train(work)
    deadline = time.monotonic() + 600
    state = None
    while time.monotonic() < deadline and process.poll() is None:
        found = sorted(work.glob("resume/*/stage_2/state.json"))
        if found:
            state = json.loads(found[0].read_text())
            if state["epoch"] >= 2:
                break
        time.sleep(0.2)
    assert process.poll() is None, process.stdout.read()
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    killed = json.loads(found[0].read_text())
    killed_after = killed["epoch"]
    assert 2 <= killed_after < 4
    stage_1 = [json.loads(p.read_text()) for p in work.glob("resume/*/**/result.json")]
    assert len(stage_1) == 1
    before_kill = stage_1[0]["seconds"] + killed["seconds"]
    assert before_kill > 0
    again = _train(work)
    output, _ = again.communicate(timeout=900)
    assert again.returncode == 0, output
    assert "resume: stage_1 finished before the interruption" in output
    assert f"continuing after epoch {killed_after}" in output
    summary = json.loads((work / "summary.json").read_text())
    assert summary["epochs_per_stage"] == [4, 4]      # the epochs before the kill count
    assert summary["steps_per_stage"] == [16, 16]     # Adam's step counter came back too
    # the time before the kill counts too (the lineage's cumulative seconds)
    assert summary["training_seconds"] > before_kill
    assert summary["lineage"]["cumulative_seconds"] == pytest.approx(summary["training_seconds"],
                                                                     abs=0.1)
    assert not list(work.glob("resume/*"))            # removed once the model is exported
