"""Hyperparameter sweeps (trainer/tuning.py, `facealign tune`): search-space
validation, the KerasTuner search space, and a tiny resumable sweep on the demo faces."""
import copy
import csv
import pathlib

import keras_tuner as kt
import pytest

from facealign import cli, config
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
    ({"augment.scale_sigma": {"type": "float", "min": 0.1, "max": 0.2}},
     "tuner.search_space.augment.scale_sigma: unknown hyperparameter (augment.*"),
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
    assert tuning.objective_name(cfg) == "val_stage_1_nme"
    assert [p.name for p in tuning.build_hyperparameters(cfg).space] == ["model.aan.weight_decay"]


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
                            "val_nme", "seconds"}
    assert all(r["status"] == "COMPLETED" and 0 < float(r["val_nme"]) < 10 for r in rows)
    assert (project / "trials.png").stat().st_size > 1000
    assert "best hyperparameters" in out
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
    assert result.tuner.oracle.objective.name == "val_nme"
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
