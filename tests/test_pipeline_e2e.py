"""The whole TFX pipeline on the bundled demo faces with a tiny DAN: a real
LocalDagRunner run with SQLite MLMD, caching, the blessing gate and the push."""
import json
import os
import pathlib
import re
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from facealign.core.model_format import SERVING_DEFAULT, ModelMetadata

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["model.dan.base_filters=4", "model.dan.fc_units=16", "augment.copies=2",
        "trainer.max_epochs_per_stage=1", "trainer.batch_size=16", "data.eval_count=8"]
# Beam in the pipeline process. pipeline.yaml's default, two worker processes, costs each
# Beam component the workers' imports of TensorFlow and TFDV (a tiny run 141 s instead of
# 83 s on a 2-core Zen 3); test_a_killed_run_completes_when_started_again keeps it.
IN_MEMORY = "beam.args=[--direct_running_mode=in_memory]"


def pipeline_args(tmp_path, *overrides, beam_in_memory=True):
    args = [sys.executable, "-m", "facealign.cli", "run", "--config", str(REPO / "pipeline.yaml"),
            "--set", f"pipeline.root={tmp_path / 'root'}",
            "--set", f"serving.base_dir={tmp_path / 'serving'}"]
    for item in [*TINY, *([IN_MEMORY] if beam_in_memory else []), *overrides]:
        args += ["--set", item]
    return args


def run_pipeline(tmp_path, *overrides, check=True, beam_in_memory=True):
    result = subprocess.run(pipeline_args(tmp_path, *overrides, beam_in_memory=beam_in_memory),
                            capture_output=True, text=True, cwd=REPO, timeout=900)
    if check and result.returncode != 0:
        pytest.fail(f"pipeline run failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def executions(tmp_path):
    """(component type, state) of every execution in the MLMD store, in order."""
    with sqlite3.connect(tmp_path / "root" / "metadata.sqlite") as db:
        rows = db.execute(
            "SELECT e.id, e.last_known_state, t.name FROM Execution e "
            "JOIN Type t ON t.id = e.type_id ORDER BY e.id").fetchall()
    return [(name.rsplit(".", 1)[-1], state) for _, state, name in rows]


def node_executions(tmp_path):
    """(node id, state) of every execution in the MLMD store, in order.

    TFX associates each execution with a context of type "node" named
    "<pipeline name>.<node id>". States: 3 COMPLETE (it ran), 5 CACHED.
    """
    with sqlite3.connect(tmp_path / "root" / "metadata.sqlite") as db:
        rows = db.execute(
            "SELECT e.id, e.last_known_state, c.name FROM Execution e "
            "JOIN Association a ON a.execution_id = e.id "
            "JOIN Context c ON c.id = a.context_id "
            "JOIN Type t ON t.id = c.type_id WHERE t.name = 'node' ORDER BY e.id").fetchall()
    return [(name.split(".", 1)[-1], state) for _, state, name in rows]


def versions(tmp_path):
    base = tmp_path / "serving" / "facealign-demo"
    return sorted(p.name for p in base.iterdir()) if base.exists() else []


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("e2e")
    result = run_pipeline(tmp_path)
    return tmp_path, result


def test_pipeline_pushes_a_blessed_servable_model(first_run, shared_data):
    tmp_path, result = first_run
    assert "ExampleGen: 60 faces used" in result.stdout
    assert "Evaluator: BLESSED" in result.stdout
    [version] = versions(tmp_path)
    model = tf.saved_model.load(str(tmp_path / "serving" / "facealign-demo" / version))
    image = (shared_data / "300w" / "afw" / "1051618982_1.jpg").read_bytes()
    out = model.signatures[SERVING_DEFAULT](
        image_bytes=tf.constant([image, image]),
        box=tf.constant([[108.53, 108.84, 324.42, 324.74]] * 2))
    assert out["landmarks"].shape == (2, 68, 2)
    assert out["stage_spread"].shape == (2,)
    points = out["landmarks"].numpy()
    assert np.isfinite(points).all()
    # A tiny model after one epoch still starts from S0 in the box: points near the face.
    assert (points[..., 0] > 60).all() and (points[..., 0] < 380).all()


def test_rerun_of_an_unchanged_pipeline_executes_nothing(first_run):
    tmp_path, _ = first_run
    before = len(executions(tmp_path))
    run_pipeline(tmp_path)
    new = executions(tmp_path)[before:]
    assert new, "the second run recorded no executions"
    # COMPLETE means it ran again (CACHED is 5); resolvers only query MLMD.
    completed = [name for name, state in new if state == 3 and name != "Resolver"]
    assert completed == [], f"re-executed: {completed}"
    assert {name for name, _ in new} >= {"LandmarkExampleGen", "Trainer", "Pusher"}


def test_a_model_above_the_threshold_is_not_pushed(first_run):
    tmp_path, _ = first_run
    pushed = versions(tmp_path)
    result = run_pipeline(tmp_path, "evaluator.max_nme=0.01")
    assert "Evaluator: NOT blessed: NME" in result.stdout
    assert "above the threshold" in result.stdout
    assert versions(tmp_path) == pushed


def test_a_missing_dataset_stops_the_run_with_its_reason(tmp_path):
    result = run_pipeline(tmp_path, "data.sources.0.root=/nonexistent/folder", check=False)
    assert result.returncode != 0
    assert "/nonexistent/folder: dataset root does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_command_scores_the_pushed_model(first_run, tmp_path):
    root, _ = first_run
    [version] = versions(root)[:1]
    out, plot = tmp_path / "eval.json", tmp_path / "ced.png"
    result = subprocess.run(
        [sys.executable, "-m", "facealign.cli", "evaluate", "--model",
         str(root / "serving" / "facealign-demo" / version), "--data",
         str(REPO / "demo_data" / "300w"),
         "--boxes", str(REPO / "demo_data" / "300w" / "boxes.csv"),
         "--json", str(out), "--plot", str(plot)],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["count"] == 60
    assert set(figures) == {"count", "nme_inter_ocular", "nme_inter_pupil", "nme_box_diagonal",
                            "auc_0.08", "failure_rate_0.08"}
    assert 0 < figures["nme_inter_ocular"] < 100 and 0 <= figures["auc_0.08"] <= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_killed_run_completes_when_started_again(tmp_path):
    """With pipeline.yaml's Beam arguments (two worker processes): the kill takes the
    process group, Beam's workers included, and the restart reuses what finished."""
    process = subprocess.Popen(pipeline_args(tmp_path, beam_in_memory=False), cwd=REPO,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    trainer_dir = tmp_path / "root" / "Trainer"
    deadline = time.monotonic() + 600
    while not trainer_dir.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert process.poll() is None, "the run ended before the Trainer started"
    time.sleep(3)  # mid-training
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert versions(tmp_path) == []
    result = run_pipeline(tmp_path, beam_in_memory=False)
    assert "Evaluator: BLESSED" in result.stdout
    assert len(versions(tmp_path)) == 1
    states = executions(tmp_path)
    assert ("Augment", 5) in states  # the finished steps of the killed run were reused


def test_tuner_in_the_pipeline_feeds_the_trainer(first_run):
    """tuner.enabled: TFX's Tuner sweeps on the Augment output (cached from the first run)
    and the Trainer trains with the best trial's values."""
    tmp_path, _ = first_run
    before = len(executions(tmp_path))
    result = run_pipeline(tmp_path, "tuner.enabled=true", "tuner.max_trials=2",
                  "tuner.epochs_per_trial=1",
                  "tuner.search_space={trainer.learning_rate: {type: choice, "
                  "values: [0.0003, 0.003]}, model.dan.dropout: {type: choice, "
                  "values: [0.0, 0.5]}}")
    ran = {name: state for name, state in executions(tmp_path)[before:]}
    assert ran["Tuner"] == 3 and ran["Trainer"] == 3      # both executed (COMPLETE)
    assert ran["Augment"] == 5                             # the data came from the cache
    [best_file] = (tmp_path / "root").glob("Tuner/best_hyperparameters/*/best_hyperparameters.txt")
    best = json.loads(best_file.read_text())["values"]
    assert set(best) == {"trainer.learning_rate", "model.dan.dropout"}
    assert f"Trainer: tuned hyperparameters {best}" in result.stdout
    model_dirs = sorted((tmp_path / "root").glob("Trainer/model/*/Format-Serving"),
                        key=lambda p: int(p.parent.name))
    metadata = ModelMetadata.read(model_dirs[-1]).to_dict()
    assert metadata["config"]["trainer"]["learning_rate"] == best["trainer.learning_rate"]
    assert metadata["config"]["model"]["dan"]["dropout"] == best["model.dan.dropout"]


def test_the_trainer_continues_from_the_latest_blessed_model(first_run):
    """trainer.warm_start: latest_blessed hands the Trainer the blessed model (a Resolver)."""
    tmp_path, _ = first_run
    blessed = tmp_path / "serving" / "facealign-demo" / versions(tmp_path)[-1]
    parent = ModelMetadata.read(blessed).to_dict()
    result = run_pipeline(tmp_path, "trainer.warm_start=latest_blessed")
    assert "Trainer: warm start from the latest blessed model: " in result.stdout
    assert "warm start: " in result.stdout and " weights from " in result.stdout
    newest = tmp_path / "serving" / "facealign-demo" / versions(tmp_path)[-1]
    child = ModelMetadata.read(newest).to_dict()
    lineage = child["lineage"]
    assert lineage["generation"] == parent["lineage"]["generation"] + 1
    assert lineage["cumulative_steps"] == (parent["lineage"]["cumulative_steps"]
                                           + sum(child["steps_per_stage"]))
    assert "/Trainer/model/" in lineage["parent"]
    # the curve carries the parent's epochs, then this generation's
    assert child["validation_curve"][:len(parent["validation_curve"])] == \
        parent["validation_curve"]


def test_aan_goes_through_the_same_pipeline(first_run, shared_data):
    """model.name=aan: same cached data, the AAN trained, evaluated and (if blessed) pushed
    with the same serving signatures; its SavedModel has the final head only."""
    tmp_path, _ = first_run
    before = len(executions(tmp_path))
    result = run_pipeline(tmp_path, "model.name=aan", "model.aan.base_filters=4",
                  "model.aan.embedding_dim=16", "evaluator.compare_to_baseline=false")
    ran = {name: state for name, state in executions(tmp_path)[before:]}
    assert ran["Augment"] == 5 and ran["Trainer"] == 3 and ran["LandmarkEvaluator"] == 3
    assert "AAN: validation NME" in result.stdout
    model_dirs = sorted((tmp_path / "root").glob("Trainer/model/*/Format-Serving"),
                        key=lambda p: int(p.parent.name))
    metadata = ModelMetadata.read(model_dirs[-1]).to_dict()
    assert metadata["model"] == "aan" and metadata["stages"] == 1
    model = tf.saved_model.load(str(model_dirs[-1]))
    image = (shared_data / "300w" / "afw" / "1051618982_1.jpg").read_bytes()
    out = model.signatures[SERVING_DEFAULT](image_bytes=tf.constant([image]),
                                              box=tf.constant([[108.5, 108.8, 324.4, 324.7]]))
    assert set(out) == {"landmarks", "stage_spread", "landmark_spread"}
    assert out["landmarks"].shape == (1, 68, 2)
    assert np.isfinite(out["landmarks"].numpy()).all()


def test_publish_writes_the_model_card_from_the_run(first_run, tmp_path, capsys):
    from facealign import cli

    root, _ = first_run
    out = tmp_path / "demo-model"
    command = ["publish", "--config", str(REPO / "pipeline.yaml"), "--out", str(out),
               "--set", f"pipeline.root={root / 'root'}",
               "--set", f"serving.base_dir={root / 'serving'}"]
    assert cli.main(command) == 0
    [version] = [p for p in out.iterdir() if p.name.isdigit()]
    assert version.name == versions(root)[-1]
    metadata = ModelMetadata.read(version).to_dict()
    figures = metadata["evaluation"]["metrics"]["all"]
    assert figures["count"] == 8
    card = (out / "MODEL_CARD.md").read_text()
    assert f"| all | 8 | {figures['nme_inter_ocular']:.2f}% |" in card
    # The newest version may be the AAN test's (same root): its card has no stages.
    when = "After stage 1" if metadata["model"] == "dan" else "After training"
    assert f"- {when}: validation NME" in card
    assert (out / "ced.png").read_bytes()[:4] == b"\x89PNG"
    # the new card parts: lineage, the CPU and the training curve
    assert "- Lineage: generation " in card and "- Trained on: " in card
    assert (out / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    # publishing the same model again over itself is refused: it is not 3% better
    capsys.readouterr()
    assert cli.main(command) == 2
    assert re.search(r"facealign publish: error: not published: -?0.0% better, 3% needed",
                     capsys.readouterr().err)
    assert [p.name for p in out.iterdir() if p.name.isdigit()] == [version.name]

