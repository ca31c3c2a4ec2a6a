"""Multi-worker training for real: two processes on loopback under one TF_CONFIG.

Each process runs tests/distributed_worker.py, i.e. trainer.run.train_and_export (the
Trainer's entry point) with trainer.distribution auto, which picks
MultiWorkerMirroredStrategy from TF_CONFIG. Checked: both finish, they end with the same
weights (BatchNorm's moving statistics included), only the chief exports, the export
answers on a real face, and a killed worker makes the other fail within a bounded time
instead of hanging. The strategy choice itself is tested in test_distribution.py.
"""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from facealign.core import config
from facealign.core.model_format import SERVING_DEFAULT

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["model.dan.base_filters=4", "model.dan.fc_units=16", "model.dan.stages=2",
        "trainer.precision=float32", "trainer.batch_size=8", "trainer.steps_per_epoch=3",
        "trainer.max_epochs_per_stage=1", "augment.copies=2", "data.eval_count=8"]
FACE = ("300w/afw/1051618982_1.jpg", [108.53, 108.84, 324.42, 324.74])
SURVIVOR_LIMIT_S = 120   # a killed worker's peer must have stopped by then


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def _tf_config(ports, index: int) -> str:
    workers = ", ".join(f'"127.0.0.1:{port}"' for port in ports)
    return (f'{{"cluster": {{"worker": [{workers}]}}, '
            f'"task": {{"type": "worker", "index": {index}}}}}')


def _start_cluster(data: pathlib.Path, out: pathlib.Path,
                   overrides: list[str]) -> list[subprocess.Popen]:
    ports = _free_ports(2)
    processes = []
    for index in range(2):
        command = [sys.executable, str(REPO / "tests" / "distributed_worker.py"),
                   "--data", str(data), "--out", str(out),
                   "--weights", str(out / f"weights-{index}.npz")]
        for item in [*TINY, *overrides]:
            command += ["--set", item]
        env = {**os.environ, "TF_CONFIG": _tf_config(ports, index), "PYTHONUNBUFFERED": "1",
               "TF_CPP_MIN_LOG_LEVEL": "1"}
        processes.append(subprocess.Popen(command, cwd=REPO, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    return processes


def _stop(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The demo faces prepared once (pipeline/prepare.py), as `facealign train` prepares them."""
    from pipeline.prepare import prepared_data

    folder = tmp_path_factory.mktemp("prepared")
    prepared_data(config.load(REPO / "pipeline.yaml", TINY), folder)
    return folder


def test_two_workers_train_one_model_that_the_chief_exports(data, tmp_path, shared_data):
    work = tmp_path
    processes = _start_cluster(data, work, [])
    try:
        outputs = [process.communicate(timeout=900)[0] for process in processes]
    finally:
        _stop(processes)
    for index, (process, output) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 0, f"worker {index} failed:\n{output[-6000:]}"
        assert "distribution: multi_worker (TF_CONFIG names a cluster of 2 training tasks), " \
               "2 replica(s)" in output
    chief, worker = outputs
    summaries = [json.loads(output.split("worker summary: ", 1)[1].splitlines()[0])
                 for output in outputs]
    assert [s["chief"] for s in summaries] == [True, False]
    assert [s["steps"] for s in summaries] == [6, 6]   # 2 stages x 3 global batches, in step
    assert summaries[0]["validation_nme_inter_pupil_per_stage"] == \
        summaries[1]["validation_nme_inter_pupil_per_stage"]
    assert f"Trainer: exported {work / 'model'}" in chief
    assert "done; the chief exports the model" in worker and "Trainer: exported" not in worker
    assert not (work / "resume").exists()   # the chief's backups, removed after the export

    ours, theirs = np.load(work / "weights-0.npz"), np.load(work / "weights-1.npz")
    assert len(ours.files) == len(theirs.files) > 0
    for name in ours.files:   # trainable weights and BatchNorm's moving statistics alike
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)

    import tensorflow as tf

    model = tf.saved_model.load(str(work / "model"))
    path, box = FACE
    out = model.signatures[SERVING_DEFAULT](
        image_bytes=tf.constant([(shared_data / path).read_bytes()]), box=tf.constant([box]))
    points = out["landmarks"].numpy()
    assert points.shape == (1, 68, 2) and np.isfinite(points).all()
    # a tiny model after six steps still starts from S0 in the box: points on the face
    assert (points[..., 0] > 60).all() and (points[..., 0] < 380).all()


def test_a_killed_worker_stops_the_other_with_a_clear_error(data, tmp_path):
    long_run = ["trainer.steps_per_epoch=2", "trainer.max_epochs_per_stage=200",
                "trainer.patience=200"]
    chief, victim = processes = _start_cluster(data, tmp_path, long_run)
    reported = []   # (seconds since the start, line) of the chief's output

    def read_chief():
        for line in chief.stdout:
            reported.append((time.monotonic(), line))

    reader = threading.Thread(target=read_chief, daemon=True)
    reader.start()
    try:
        lines = []
        for line in victim.stdout:   # its first epoch ended: both are in the training loop
            lines.append(line)
            if line.startswith("2/2 - "):
                break
        assert victim.poll() is None, "".join(lines)[-4000:]
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        try:
            chief.wait(timeout=SURVIVOR_LIMIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the chief still runs {SURVIVOR_LIMIT_S} s after its peer was killed")
        exited = time.monotonic() - killed
        reader.join(timeout=30)
    finally:
        _stop(processes)
    output = "".join(line for _, line in reported)
    assert chief.returncode not in (0, None), output[-4000:]
    error = "DistributedTrainingError: multi-worker training stopped on chief"
    assert error in output and "Another worker has probably stopped" in output
    said = next(at for at, line in reported if error in line) - killed
    print(f"the chief reported the failure {said:.0f} s and exited {exited:.0f} s after its "
          f"peer was killed")
