"""trainer.distribution: which strategy a machine gets, and training and resuming under one.

Two real workers on loopback: tests/test_distributed_training.py.
"""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from facealign.core import config
from facealign.core.config import ConfigError, TrainerSection
from trainer import backup, distribution, fit

CLUSTER = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"], "ps": ["d:1"],
                                  "evaluator": ["e:1"]},
                      "task": {"type": "worker", "index": 0}})
ALONE = json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}})


def test_cluster_tasks_counts_the_training_jobs_of_tf_config():
    assert distribution.cluster_tasks(None) == 0
    assert distribution.cluster_tasks(ALONE) == 1
    assert distribution.cluster_tasks(CLUSTER) == 3          # chief and workers; not ps, evaluator
    with pytest.raises(distribution.DistributionError, match="TF_CONFIG is not a JSON"):
        distribution.cluster_tasks("worker=a:1")


@pytest.mark.parametrize("gpus, tf_config, kind, why", [
    (0, "", "none", "one machine with no GPUs"),
    (1, ALONE, "none", "one machine with 1 GPU"),
    (2, "", "mirrored", "2 GPUs visible"),
    (8, CLUSTER, "multi_worker", "TF_CONFIG names a cluster of 3 training tasks"),
])
def test_auto_follows_tf_config_then_the_gpus(gpus, tf_config, kind, why):
    assert distribution.choose("auto", gpus=gpus, tf_config=tf_config) == (kind, why)


def test_explicit_settings_and_the_ones_a_cluster_refuses():
    assert distribution.choose("mirrored", gpus=0, tf_config="")[0] == "mirrored"
    assert distribution.choose("multi_worker", gpus=0, tf_config="") == (
        "multi_worker", "trainer.distribution is multi_worker (TF_CONFIG names no cluster: "
                        "this machine alone)")
    for setting in ("none", "mirrored"):
        with pytest.raises(distribution.DistributionError,
                           match=f"trainer.distribution is {setting}, but TF_CONFIG names a "
                                 "cluster of 3 training tasks: each would train alone"):
            distribution.choose(setting, gpus=2, tf_config=CLUSTER)


def test_the_config_key_is_validated():
    raw = {"data": {"sources": [{"name": "demo", "root": "demo_data/300w"}]}}
    assert config.from_dict(raw).trainer.distribution == "auto"
    with pytest.raises(ConfigError, match=r"trainer\.distribution: Input should be 'auto', "
                                          "'none', 'mirrored' or 'multi_worker'"):
        config.from_dict(config.apply_overrides(raw, ["trainer.distribution=horovod"]))


def test_a_process_outside_a_cluster_is_its_own_chief(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribution.strategy("none") is tf.distribute.get_strategy()
    assert distribution.is_chief() and distribution.num_workers() == 1
    assert distribution.describe() == "chief"
    assert type(distribution.epoch_backup("x", None, None)) is backup.EpochBackup
    assert type(distribution.stage_backup("x")) is backup.StageBackup
    distribution.end_process(3)   # alone it returns (in a cluster it ends the process)


@pytest.mark.parametrize("task_id, lingers", [(0, True), (1, False)])
def test_the_chief_outlasts_the_barrier_it_hosts(monkeypatch, task_id, lingers):
    """A CI run lost a worker's 'exported' answer when the chief left the barrier at once."""
    from tensorflow.python.eager import context

    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setattr(distribution, "_task", lambda: ("worker", task_id, cluster))
    events = []
    monkeypatch.setattr(context.Context, "wait_at_barrier",
                        lambda self, name, timeout_ms: events.append(("barrier", name)))
    monkeypatch.setattr(distribution.time, "sleep", lambda s: events.append(("sleep", s)))
    distribution.wait_for_chief("exported")
    assert events[0][0] == "barrier" and events[0][1].startswith("facealign/exported/")
    assert events[1:] == ([("sleep", distribution.LEADER_LINGER_S)] if lingers else [])


def test_a_failed_barrier_names_the_task_and_the_point(monkeypatch):
    from tensorflow.python.eager import context

    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setattr(distribution, "_task", lambda: ("worker", 1, cluster))

    def refuse(self, name, timeout_ms):
        raise tf.errors.UnavailableError(None, None, "Socket closed\nmore")

    monkeypatch.setattr(context.Context, "wait_at_barrier", refuse)
    with pytest.raises(distribution.DistributedTrainingError,
                       match=r"worker \(task worker:1 of 2\): waited for every worker at "
                             r"'exported': UnavailableError: Socket closed$"):
        distribution.wait_for_chief("exported")


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    hidden = keras.layers.BatchNormalization()(keras.layers.Dense(4)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    model.compile(keras.optimizers.Adam(0.05), loss="mse", metrics=["mae"])
    return model


def test_a_fit_under_mirrored_strategy_backs_up_and_resumes(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, x[:, :2] * 2 + 1)).batch(16)
    cfg = TrainerSection(max_epochs_per_stage=3, patience=5, batch_size=16,
                         distribution="mirrored")
    strategy = distribution.strategy(cfg.distribution)
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    folder = str(tmp_path / "fit")
    with strategy.scope():
        first = _model()
        outcome = fit.fit(first, data, data, cfg, monitor="loss", score_keys={"mae": "mae"},
                          name="a", verbose=0, backup_dir=folder)
        assert outcome.steps == 12 and outcome.stop_reason == "max epochs"
        second = _model()
        resumed = distribution.epoch_backup(folder, keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=5, restore_best_weights=True), fit.TimeBudget(None))
        for callback in (resumed.early_stopping, resumed):
            callback.set_model(second)
            callback.on_train_begin()
    assert resumed.resumed_epoch == 3
    assert int(second.optimizer.iterations.numpy()) == 12
    for ours, theirs in zip(second.get_weights(), first.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
