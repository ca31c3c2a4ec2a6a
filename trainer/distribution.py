"""`trainer.distribution`: the tf.distribute strategy a training runs under, and who writes.

- `auto` (the default): MultiWorkerMirroredStrategy when TF_CONFIG names a cluster of more
  than one task (Vertex AI and Kubeflow's training operators set it on every replica),
  MirroredStrategy when several GPUs are visible, else none (TensorFlow's default strategy).
- `none`, `mirrored`, `multi_worker`: that one. `none` or `mirrored` under a multi-task
  TF_CONFIG is an error: every replica would train alone and write the same model.

Both strategies are synchronous data parallelism: `trainer.batch_size` is the global batch,
each of the N replicas computes the gradients of 1/N of it, and the gradients are summed
across replicas before every step, so all replicas hold the same weights throughout.

Multi-worker rules (TensorFlow's multi-worker guide), kept here so the training code stays
the same on one machine and on many:

- The strategy is created once per process, before TensorFlow runs anything (collective
  ops are configured at start-up); `strategy()` caches it. Entry points call it first.
- Every worker runs the same code and the same number of steps. Only the chief writes what
  lasts: the SavedModel, TensorBoard logs, the resume backups. Workers restore from the
  chief's backup folder (under the pipeline root, on storage every worker shares) and write
  their own epochs into a private temporary folder (`epoch_backup`, `stage_backup`).
- Input is sharded by element (auto-shard policy DATA, trainer/dan_input.py): the prepared
  data is one or a few TFRecord files, fewer than workers, so sharding by file would leave
  workers without data. Each worker reads the files in the same seeded order and keeps its
  share of every global batch.
- A worker that dies or stops answering must not hang the others: the coordination
  service declares a task dead after HEARTBEAT_TIMEOUT_S without a heartbeat and every
  collective gives up after COLLECTIVE_TIMEOUT_S; the survivors then stop with
  DistributedTrainingError, naming what happened, instead of waiting forever.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time

import keras
import tensorflow as tf

from trainer.backup import EpochBackup, StageBackup

AUTO, NONE, MIRRORED, MULTI_WORKER = "auto", "none", "mirrored", "multi_worker"
TRAINING_JOBS = ("chief", "worker")   # the TF_CONFIG jobs that train (not ps, evaluator)
# A step (all-reduce included) waits at most this long for its peers. Generous: a worker's
# first step traces the model, and the chief writes its backup between epochs.
COLLECTIVE_TIMEOUT_S = 300.0
# A task silent for this long is declared dead and every other task's collectives abort
# (TF's default, stated: heartbeats come from their own thread, so a busy task still sends).
HEARTBEAT_TIMEOUT_S = 10
# How long workers wait for the chief to export the model (wait_for_chief).
CHIEF_WAIT_TIMEOUT_S = 3600
# How long the chief stays after a barrier it hosts, so the other tasks' answers reach them
# before its process (and the coordination service in it) ends (wait_for_chief).
LEADER_LINGER_S = 3.0

_multi_worker: tf.distribute.MultiWorkerMirroredStrategy | None = None
_barriers = 0


class DistributionError(ValueError):
    """trainer.distribution cannot be used here (a bad TF_CONFIG, a strategy that conflicts)."""


class DistributedTrainingError(RuntimeError):
    """A multi-worker training failed on this worker, usually because another one stopped."""


def cluster_tasks(tf_config: str | None) -> int:
    """The training tasks (chief and workers) of a TF_CONFIG cluster; 0 without one."""
    if not tf_config:
        return 0
    try:
        cluster = json.loads(tf_config).get("cluster") or {}
    except (ValueError, AttributeError):
        raise DistributionError(f"TF_CONFIG is not a JSON object with a cluster: "
                                f"{tf_config[:200]!r}") from None
    return sum(len(cluster.get(job) or []) for job in TRAINING_JOBS)


def choose(setting: str, gpus: int | None = None,
           tf_config: str | None = None) -> tuple[str, str]:
    """(strategy kind, why) for a trainer.distribution setting on this machine."""
    if gpus is None:
        gpus = len(tf.config.list_physical_devices("GPU"))
    tasks = cluster_tasks(os.environ.get("TF_CONFIG") if tf_config is None else tf_config)
    if setting == AUTO:
        if tasks > 1:
            return MULTI_WORKER, f"TF_CONFIG names a cluster of {tasks} training tasks"
        if gpus > 1:
            return MIRRORED, f"{gpus} GPUs visible"
        return NONE, f"one machine with {gpus or 'no'} GPU{'' if gpus == 1 else 's'}"
    if setting in (NONE, MIRRORED) and tasks > 1:
        raise DistributionError(
            f"trainer.distribution is {setting}, but TF_CONFIG names a cluster of {tasks} "
            "training tasks: each would train alone and write the same model; use auto or "
            "multi_worker")
    if setting == MULTI_WORKER and tasks <= 1:
        return MULTI_WORKER, "trainer.distribution is multi_worker (TF_CONFIG names no " \
                             "cluster: this machine alone)"
    return setting, f"trainer.distribution is {setting}"


def strategy(setting: str = AUTO) -> tf.distribute.Strategy:
    """The strategy of a trainer.distribution setting; call it before TensorFlow runs anything.

    The multi-worker strategy is created once per process and returned again after that.
    """
    kind, _ = choose(setting)
    if kind == NONE:
        return tf.distribute.get_strategy()
    if kind == MIRRORED:
        return tf.distribute.MirroredStrategy()
    global _multi_worker
    if _multi_worker is None:
        _multi_worker = _create_multi_worker()
    return _multi_worker


def _create_multi_worker() -> tf.distribute.MultiWorkerMirroredStrategy:
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    cluster = resolver.cluster_spec()
    if cluster.as_dict():
        # What the strategy would configure, with our heartbeat timeout (TF has no public API
        # for it; parameter_server_strategy_v2.py configures the service the same way).
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.distribute import multi_worker_util
        from tensorflow.python.eager import context

        context.context().configure_coordination_service(
            service_type="standalone",
            service_leader=multi_worker_util.coordination_leader(cluster),
            heartbeat_timeout_in_ms=HEARTBEAT_TIMEOUT_S * 1000,
            coordinated_jobs=[coordination_config_pb2.CoordinatedJob(
                name=job, num_tasks=cluster.num_tasks(job))
                for job in TRAINING_JOBS if job in cluster.jobs])
    try:
        return _MultiWorkerMirroredStrategy(
            cluster_resolver=resolver,
            communication_options=tf.distribute.experimental.CommunicationOptions(
                timeout_seconds=COLLECTIVE_TIMEOUT_S))
    except RuntimeError as exc:
        if "program startup" not in str(exc):
            raise
        raise DistributionError(
            "multi-worker training: TensorFlow already ran something in this process, and its "
            "collective ops can only be set up before that; call trainer.distribution."
            "strategy(trainer.distribution) first thing in the program") from None


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy with the reduce() Keras 3's fit expects of it.

    Keras 3 trains with this strategy only on one worker (keras-team/keras#20585, open):
    on more, its TensorFlow trainer calls reduce() in two ways this strategy refuses.
    - fit and evaluate reduce the first (x, y) batch, a nest, to build the model
      (TensorFlowTrainer._maybe_symbolic_build); the strategy reduces one value at a time
      (TF: "TODO: support `value` being a nest"): "Attempt to convert a value (PerReplica
      ...) to a Tensor". Here each value of the nest is reduced.
    - the step's metric results, one scalar per replica, are averaged with reduce(MEAN,
      axis=0) (reduce_per_replica; on one worker Keras stacks the replicas' values and
      averages over that axis 0): "Invalid reduction dimension 0 for input with 0
      dimensions". A scalar has no axis to reduce but the replicas': axis None.
    """

    def reduce(self, reduce_op, value, axis):
        reduce_one = super().reduce

        def reduce_item(item):
            local = self.experimental_local_results(item)[0]
            scalar = getattr(local, "shape", None) is not None and local.shape.rank == 0
            return reduce_one(reduce_op, item, None if scalar else axis)

        return tf.nest.map_structure(reduce_item, value)


def _task() -> tuple[str | None, int | None, dict]:
    if _multi_worker is None:
        return None, None, {}
    resolver = _multi_worker.cluster_resolver
    return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def num_workers() -> int:
    """How many processes train together (1 unless this process is in a multi-worker cluster)."""
    _, _, cluster = _task()
    return max(1, sum(len(cluster.get(job) or []) for job in TRAINING_JOBS))


def is_chief() -> bool:
    """Whether this process writes what lasts: the chief job, else worker 0, else alone."""
    task_type, task_id, cluster = _task()
    if not cluster or task_type is None:
        return True
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in cluster)


def describe() -> str:
    """For log lines: 'chief' alone, else e.g. 'worker (task worker:1 of 2)'."""
    task_type, task_id, cluster = _task()
    if not cluster:
        return "chief"
    return f"{'chief' if is_chief() else task_type} (task {task_type}:{task_id} of " \
           f"{num_workers()})"


def wait_for_chief(point: str, timeout_s: float = CHIEF_WAIT_TIMEOUT_S) -> None:
    """Every process of a multi-worker cluster waits here until all have reached `point`.

    After the chief's export: the workers return (and TFX's Trainer checks the model
    folder) only once the model exists. Nothing to wait for alone.
    """
    if num_workers() == 1:
        return
    from tensorflow.python.eager import context

    global _barriers
    _barriers += 1   # every process passes the same points in the same order
    try:
        context.context().wait_at_barrier(f"facealign/{point}/{_barriers}",
                                          int(timeout_s * 1000))
    except tf.errors.OpError as exc:
        raise DistributedTrainingError(
            f"{describe()}: waited for every worker at {point!r}: {type(exc).__name__}: "
            f"{(exc.message or str(exc)).strip().splitlines()[0][:500]}") from exc
    if is_chief():
        # The chief hosts the coordination service: its own wait returns while the
        # barrier's answers to the others are still on the wire. Leaving at once closed
        # the socket under a worker ("Socket closed" at 'exported', a CI run on 2 cores).
        time.sleep(LEADER_LINGER_S)


def end_process(code: int = 0) -> None:
    """Ends a process of a multi-worker cluster now that its work is done; alone, returns.

    TensorFlow 2.21 can deadlock tearing down a multi-worker process: an iterator of the
    distributed dataset, freed while the interpreter exits, waits in
    ~LogicalThreadWrapper for a tf.data thread that never ends. Seen on a non-chief
    worker on 2 busy cores: model exported, summary printed, then 509 threads idle for
    good (a cluster on Vertex AI would never finish). Everything is written by then, so
    the teardown is skipped.
    """
    if num_workers() == 1:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@contextlib.contextmanager
def peer_failures():
    """Turns a multi-worker training's TensorFlow error into DistributedTrainingError.

    A killed, crashed or unreachable worker surfaces on the others as an aborted or timed
    out collective, or as the coordination service's missed heartbeats.
    """
    try:
        yield
    except tf.errors.OpError as exc:
        if num_workers() == 1:
            raise
        first = (exc.message or str(exc)).strip().splitlines()[0][:500]
        raise DistributedTrainingError(
            f"multi-worker training stopped on {describe()}: {type(exc).__name__}: {first}. "
            "Another worker has probably stopped (killed, out of memory or unreachable); "
            "start every worker again: the run resumes from the chief's last backup") from exc


def _mean_over_replicas(strategy):
    """A tf.function: the mean of a list of local tensors over every replica of `strategy`."""

    @tf.function
    def mean(values):
        per_replica = strategy.run(lambda local: [tf.identity(v) for v in local], args=(values,))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    return mean


class AverageMovingStatistics(keras.callbacks.Callback):
    """Averages BatchNorm's moving statistics over the workers at every epoch end.

    Gradients are all-reduced, so the trained weights stay alike everywhere, but each
    replica updates the moving mean and variance from its own share of the batch (Keras 3
    BatchNormalization, synchronized=False). Averaged after every epoch, before early
    stopping keeps the best weights and before the backup, they are alike on every worker
    again (tf.keras 2 read them as this mean: ON_READ with MEAN aggregation), so the
    chief's export is every worker's model. Must come before EarlyStopping.
    """

    def __init__(self):
        super().__init__()
        self._mean = None

    def on_epoch_end(self, epoch, logs=None):
        # every BatchNorm, frozen ones too: a frozen DAN stage in frozen_mode "training"
        # updates its statistics, and the mean of identical values is those values
        variables = [variable for layer in self.model._flatten_layers()
                     if isinstance(layer, keras.layers.BatchNormalization)
                     for variable in (layer.moving_mean, layer.moving_variance)]
        if not variables:
            return
        self._mean = self._mean or _mean_over_replicas(tf.distribute.get_strategy())
        means = self._mean([variable.value for variable in variables])
        for variable, mean in zip(variables, means, strict=True):
            variable.assign(mean)


class StopTogether(keras.callbacks.Callback):
    """Ends every worker's fit at the same epoch: when one stops (its time budget), all stop.

    Early stopping watches validation metrics, which are reduced across workers and so
    alike everywhere; the time budget reads each machine's own clock. Must come after the
    callbacks that stop training.
    """

    def __init__(self):
        super().__init__()
        self._mean = None

    def on_epoch_end(self, epoch, logs=None):
        self._mean = self._mean or _mean_over_replicas(tf.distribute.get_strategy())
        [stopping] = self._mean([tf.constant(1.0 if self.model.stop_training else 0.0)])
        self.model.stop_training = bool(stopping.numpy() > 0)


class _WorkerEpochBackup(EpochBackup):
    """A worker's EpochBackup: restores from the chief's folder, writes into a private one."""

    def __init__(self, folder: str, early_stopping, budget):
        super().__init__(folder, early_stopping, budget)
        self.scratch = tempfile.mkdtemp(prefix="facealign-worker-backup-")

    def on_epoch_end(self, epoch, logs=None):
        shared, self.folder = self.folder, self.scratch
        try:
            super().on_epoch_end(epoch, logs)
        finally:
            self.folder = shared

    def on_train_end(self, logs=None):
        shutil.rmtree(self.scratch, ignore_errors=True)


class _WorkerStageBackup(StageBackup):
    """A worker's StageBackup: loads the stages the chief finished, records none itself."""

    def finish(self, name, model, result) -> None:
        pass

    def remove(self) -> None:
        pass


def epoch_backup(folder: str, early_stopping, budget) -> EpochBackup:
    """The per-epoch backup callback for this process (trainer/backup.py)."""
    kind = EpochBackup if is_chief() else _WorkerEpochBackup
    return kind(folder, early_stopping, budget)


def stage_backup(folder: str | None) -> StageBackup:
    """The finished-stages record for this process (trainer/backup.py)."""
    return (StageBackup if is_chief() else _WorkerStageBackup)(folder)
