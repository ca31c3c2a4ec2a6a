"""Hyperparameter sweeps (trainer/tuning.py, `facealign tune`): search-space
validation, the KerasTuner search space, and a tiny resumable sweep on the demo faces."""
import copy
import csv
import json
import pathlib
import re

import keras_tuner as kt
import pytest

from facealign import cli
from facealign.core import config
from trainer import tuning

REPO = pathlib.Path(__file__).resolve().parents[1]
SPACE = {"trainer.learning_rate": {"type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log"},
         "model.dan.dropout": {"type": "float", "min": 0.0, "max": 0.6, "step": 0.1},
         "trainer.batch_size": {"type": "int", "min": 8, "max": 32, "step": 8},
         "model.dan.stages": {"type": "choice", "values": [1, 2]}}


def _cfg(space, **changes):
    raw = copy.deepcopy(config.load(REPO / "pipeline.yaml").model_dump(mode="json"))
    raw["tuner"]["search_space"] = space
    for section, values in changes.items():
        raw[section].update(values)
    return config.from_dict(raw)


@pytest.mark.parametrize("space, message", [
    ({"trainer.learnin_rate": {"type": "float", "min": 0.1, "max": 0.2}},
     "tuner.search_space.trainer.learnin_rate: unknown hyperparameter"),
    ({"augment.copies": {"type": "int", "min": 1, "max": 2}},
     "tuner.search_space.augment.copies: unknown hyperparameter (data.* and augment.*"),
    ({"augment.scale_sigma": {"type": "float", "min": 0.1, "max": 2.0}},
     "tuner.search_space.augment.scale_sigma: value 2.0 is out of range"),
    ({"model.dan.stages": {"type": "float", "min": 1, "max": 3}},
     "tuner.search_space.model.dan.stages: is an int hyperparameter"),
    ({"model.dan.stages": {"type": "int", "min": 1, "max": 5}},
     "tuner.search_space.model.dan.stages: value 5 is out of range"),
    ({"model.dan.dropout": {"type": "float", "min": 0.5, "max": 0.1}},
     "tuner.search_space.model.dan.dropout"),
    ({"trainer.learning_rate": {"type": "float", "min": 0, "max": 0.1, "sampling": "log"}},
     "log sampling needs min > 0"),
    ({"trainer.batch_size": {"type": "choice", "values": [8, 16.5]}},
     "tuner.search_space.trainer.batch_size: choice values must be ints"),
    ({"model.aan.embedding_dim": {"type": "int", "min": 64, "max": 256}},
     "tuner.search_space.model.aan.embedding_dim: applies to model aan, not dan"),
    ({"trainer.learning_rate": {"type": "float", "min": 0.1, "max": 0.2, "extra": 1}},
     "extra: unknown key"),
])
def test_search_space_errors_name_the_key(space, message):
    with pytest.raises(config.ConfigError) as err:
        _cfg(space)
    assert message in str(err.value)


def test_hyperparameters_have_the_declared_types_and_ranges():
    cfg = _cfg(SPACE)
    hp = tuning.build_hyperparameters(cfg)
    by_name = {p.name: p for p in hp.space}
    assert set(by_name) == set(SPACE)
    lr = by_name["trainer.learning_rate"]
    assert isinstance(lr, kt.engine.hyperparameters.Float)
    assert (lr.min_value, lr.max_value, lr.sampling) == (1e-4, 1e-2, "log")
    batch = by_name["trainer.batch_size"]
    assert isinstance(batch, kt.engine.hyperparameters.Int)
    assert (batch.min_value, batch.max_value, batch.step) == (8, 32, 8)
    assert by_name["model.dan.dropout"].step == 0.1
    assert by_name["model.dan.stages"].values == [1, 2]
    # A trial's values become a validated config.
    trial = tuning.config_with_hyperparameters(
        cfg, {"trainer.learning_rate": 0.003, "model.dan.stages": 1, "tuner/epochs": 2})
    assert trial.trainer.learning_rate == 0.003 and trial.model.dan.stages == 1
    assert tuning.apply_best_hyperparameters(cfg, hp.get_config()).trainer.batch_size == 8


def test_aan_objective_and_space():
    cfg = _cfg({"model.aan.weight_decay": {"type": "float", "min": 1e-4, "max": 1e-2}},
               model={"name": "aan"})
    assert tuning.objective_name(cfg) == "val_nme_inter_ocular"
    assert [p.name for p in tuning.build_hyperparameters(cfg).space] == ["model.aan.weight_decay"]


@pytest.mark.slow
def test_tiny_sweep_writes_table_and_plot_and_resumes(tmp_path, capsys):
    args = ["tune", "--config", str(REPO / "pipeline.yaml"), "--trials", "2"]
    for item in ["model.dan.base_filters=4", "model.dan.fc_units=16", "model.dan.stages=1",
                 "augment.copies=1", "data.eval_count=8", "trainer.batch_size=16",
                 "tuner.epochs_per_trial=1", f"tuner.directory={tmp_path}",
                 "tuner.search_space={trainer.learning_rate: {type: float, min: 0.0001, "
                 "max: 0.01, sampling: log}, model.dan.dropout: {type: choice, "
                 "values: [0.0, 0.5]}}"]:
        args += ["--set", item]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("tune: trial ") == 2
    project = tmp_path / "facealign-demo"
    with open(project / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert set(rows[0]) == {"trial_id", "status", "trainer.learning_rate", "model.dan.dropout",
                            "val_nme_inter_ocular", "seconds"}
    assert all(r["status"] == "COMPLETED" and 0 < float(r["val_nme_inter_ocular"]) < 10
               for r in rows)
    assert (project / "trials.png").stat().st_size > 1000
    assert "best hyperparameters" in out
    # The run report's sweeps section shows this sweep's trials table.
    from facealign.core import config
    from pipeline import run_history, run_report

    sweep_cfg = config.load(str(REPO / "pipeline.yaml"), [f"tuner.directory={tmp_path}"])
    [sweep] = run_history.read_sweeps(sweep_cfg, [])
    assert [row["trial_id"] for row in sweep.rows] == [row["trial_id"] for row in rows]
    section = run_report.sweeps_section(run_history.RunHistory(
        pipeline="p", store="s", runs=[], data=[], models=[], evaluations=[], pushes=[],
        serving=None, sweeps=[sweep]))
    assert section.count("<tr") == 3 and "val_nme_inter_ocular" in section
    # Re-run: the budget is spent, the finished trials are reloaded, nothing trains.
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "tune: trial " not in out
    with open(project / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    # The TFX Tuner's entry point on the same prepared data (no search run here).
    from types import SimpleNamespace
    [data_dir] = tmp_path.glob("data-*")
    cfg = _cfg({"trainer.learning_rate": {"type": "float", "min": 1e-4, "max": 1e-2}})
    result = tuning.tuner_fn(SimpleNamespace(
        custom_config={"facealign": cfg.model_dump(mode="json")},
        transform_graph_path=str(data_dir), working_dir=str(tmp_path / "tfx"),
        train_files=["t"], eval_files=["e"]))
    assert result.tuner.oracle.objective.name == "val_nme_inter_ocular"
    assert set(result.fit_kwargs) == {"train_files", "eval_files", "frame"}


def test_pipeline_adds_the_tuner_only_when_enabled():
    from pipeline.pipeline import create_components

    names = lambda nodes: [type(n).__name__ for n in nodes]  # noqa: E731
    assert "Tuner" not in names(create_components(_cfg(SPACE)))
    nodes = create_components(_cfg(SPACE, tuner={"enabled": True}))
    order = names(nodes)
    assert order.index("Tuner") < order.index("Trainer")
    trainer = nodes[order.index("Trainer")]
    assert "hyperparameters" in trainer.inputs
    assert nodes[order.index("Tuner")].exec_properties["tuner_fn"] == "trainer.tuning.tuner_fn"


@pytest.mark.parametrize("algorithm, oracle", [("random", "RandomSearchOracle"),
                                               ("bayesian", "BayesianOptimizationOracle"),
                                               ("hyperband", "HyperbandOracle")])
def test_make_tuner_per_algorithm(tmp_path, algorithm, oracle):
    cfg = _cfg(SPACE, tuner={"algorithm": algorithm, "max_trials": 3})
    tuner = tuning.make_tuner(cfg, directory=str(tmp_path))
    assert type(tuner.oracle).__name__ == oracle
    assert tuner.oracle.objective.direction == "min"
    assert tuner.project_dir == str(tmp_path / "facealign-demo")


def test_augmentation_sigmas_are_swept_by_tune_only():
    sigma = {"augment.rotation_sigma_deg": {"type": "choice", "values": [5.0, 20.0]}}
    assert "augment.rotation_sigma_deg" in _cfg(sigma).tuner.search_space
    with pytest.raises(config.ConfigError) as err:
        _cfg(sigma, tuner={"enabled": True})
    assert ("tuner.search_space.augment.rotation_sigma_deg: augmentation sigmas can be swept "
            "by `facealign tune` only") in str(err.value)


TINY = ["model.dan.base_filters=4", "model.dan.fc_units=16", "model.dan.stages=1",
        "augment.copies=1", "data.eval_count=8", "trainer.batch_size=16",
        "tuner.epochs_per_trial=1"]


@pytest.mark.slow
def test_sweep_over_an_augmentation_sigma_prepares_data_per_value(tmp_path, capsys):
    args = ["tune", "--config", str(REPO / "pipeline.yaml"), "--trials", "2"]
    for item in TINY + [f"tuner.directory={tmp_path}", "tuner.algorithm=random",
                        "tuner.search_space={augment.scale_sigma: {type: choice, "
                        "values: [0.05, 0.4]}}"]:
        args += ["--set", item]
    assert cli.main(args) == 0
    with open(tmp_path / "facealign-demo" / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    sigmas = {float(r["augment.scale_sigma"]) for r in rows}
    # one prepared folder per distinct value a trial used, each complete
    folders = sorted(tmp_path.glob("data-*"))
    assert len(folders) == len(sigmas) >= 1
    assert all((d / "done").exists() and not d.name.count(".tmp-") for d in folders)
    frames = [json.loads((d / "canonical_frame.json").read_text()) for d in folders]
    assert len({f["train_samples"] for f in frames}) == 1   # same faces, other perturbations


@pytest.mark.slow
def test_distributed_sweep_runs_every_trial_once(tmp_path):
    """KerasTuner's chief/worker mode on loopback: a chief (oracle only) and two workers
    running the same `facealign tune` command; each of the 3 trials runs on one worker."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "facealign.cli", "tune", "--config",
               str(REPO / "pipeline.yaml"), "--trials", "3"]
    for item in TINY + [f"tuner.directory={tmp_path}",
                        "tuner.search_space={trainer.learning_rate: {type: float, "
                        "min: 0.0001, max: 0.01, sampling: log}}"]:
        command += ["--set", item]
    processes = {}
    for role in ("chief", "tuner0", "tuner1"):
        env = dict(os.environ, KERASTUNER_TUNER_ID=role, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=str(port), TF_CPP_MIN_LOG_LEVEL="2")
        processes[role] = subprocess.Popen(command, env=env, cwd=tmp_path, text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    outputs = {}
    try:
        for role, process in processes.items():
            outputs[role] = process.communicate(timeout=900)[0]
    finally:
        for process in processes.values():
            process.kill()
    for role, process in processes.items():
        assert process.returncode == 0, f"{role} failed:\n{outputs[role][-3000:]}"
    ran = {role: re.findall(r"tune: trial (\d+) \(\?/3\) on " + role + " COMPLETED",
                            outputs[role]) for role in ("tuner0", "tuner1")}
    trial_ids = ran["tuner0"] + ran["tuner1"]
    assert sorted(trial_ids) == sorted(set(trial_ids)) and len(trial_ids) == 3, ran
    assert "tune: trial " not in outputs["chief"]          # the chief only runs the oracle
    with open(tmp_path / "facealign-demo" / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["trial_id"] for r in rows) == sorted(trial_ids)
    assert all(r["status"] == "COMPLETED" for r in rows)
    assert "best hyperparameters" in outputs["chief"]
