"""Hyperparameter sweeps with KerasTuner (1.4.8): `facealign tune` and the TFX Tuner.

The search space is `tuner.search_space` in pipeline.yaml (validated by
facealign.core.config: known names only, typed specs, ranges inside the schema).
Hyperparameter names are the dotted config keys (`trainer.learning_rate`), so
a trial is simply the configuration with those values set
(`config_with_hyperparameters`), trained by the same functions as the Trainer.
Only in-trial settings are tunable: the canonical data (augment.*, data.*) is
prepared once before the sweep.

A trial:
- DAN: the configured (or tuned) number of stages trained sequentially, as
  trainer.dan_training; `tuner.epochs_per_trial` is split over the stages
  (max(1, epochs // stages) epochs each), with early stopping
  (`tuner.early_stopping_patience`, best weights kept); the stages still train
  on eq. 4 (inter-pupil).
- AAN: one fit of `epochs_per_trial` epochs.
Objective of both, minimised: `val_nme_inter_ocular`, the final output's
validation NME normalised by the outer eye corners (the headline measure; the
box diagonal for other than 68 points). Hyperband gives a trial its epoch budget (`tuner/epochs`,
with epochs_per_trial as max_epochs); a trial always trains from scratch (no warm
start from the earlier bracket's weights). max_trials does not apply to it.

Resuming: the tuner lives in `<tuner.directory>/<project_name>` with
overwrite=False, so a killed sweep reloads the oracle and continues after its
finished trials; a sweep that reached max_trials runs nothing new.

Distributed sweeps (KerasTuner chief/worker): start the same command on
several machines (or processes) with the environment
    KERASTUNER_TUNER_ID=chief        on one (it runs the oracle, trains nothing)
    KERASTUNER_TUNER_ID=tuner0, tuner1, ...   on the workers
    KERASTUNER_ORACLE_IP=<chief's address>  KERASTUNER_ORACLE_PORT=<port>  on all
The chief serves the oracle over gRPC; each worker asks it for a trial, trains
it and reports back, so every trial runs once. Workers need the same prepared
data (a shared tuner.directory, or the same data prepared on each: it is
deterministic) and, for the CSV/PNG, the chief's directory.
"""
from __future__ import annotations

import copy
import csv
import math
import pathlib
import time

import keras_tuner as kt

from facealign.core import config as config_lib

OBJECTIVE = "val_nme_inter_ocular"


def distributed_role() -> str | None:
    """KERASTUNER_TUNER_ID in a chief/worker sweep (KERASTUNER_ORACLE_IP set), else None."""
    import os

    from keras_tuner.src.distribute import utils

    return os.environ["KERASTUNER_TUNER_ID"] if utils.has_chief_oracle() else None


def objective_name(cfg: config_lib.Config) -> str:
    return OBJECTIVE


def build_hyperparameters(cfg: config_lib.Config) -> kt.HyperParameters:
    """tuner.search_space as KerasTuner HyperParameters (names: dotted config keys)."""
    hp = kt.HyperParameters()
    for name, spec in cfg.tuner.search_space.items():
        if spec.type == "float":
            hp.Float(name, spec.min, spec.max, step=spec.step, sampling=spec.sampling)
        elif spec.type == "int":
            hp.Int(name, spec.min, spec.max, step=spec.step, sampling=spec.sampling)
        else:
            hp.Choice(name, list(spec.values))
    return hp


def config_with_hyperparameters(cfg: config_lib.Config, values: dict) -> config_lib.Config:
    """A new, validated Config with the hyperparameter values set (tuner/* keys ignored)."""
    raw = copy.deepcopy(cfg.model_dump(mode="json"))
    items = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
             for k, v in values.items() if k in config_lib.TUNABLE]
    new = config_lib.from_dict(config_lib.apply_overrides(raw, items), "hyperparameters")
    new._base_dir = cfg._base_dir
    return new


def train_trial(cfg: config_lib.Config, train_files, eval_files, frame: dict,
                epochs: int) -> float:
    """Trains one candidate (cfg already has the trial's values); returns the objective."""
    from trainer.training import train_model

    stages = cfg.model.dan.stages if cfg.model.name == "dan" else 1
    trainer_cfg = cfg.trainer.model_copy(update={
        "max_epochs_per_stage": max(1, epochs // stages),
        "patience": cfg.tuner.early_stopping_patience})
    result = train_model(cfg.model, trainer_cfg, train_files, eval_files, frame,
                         seed=cfg.augment.seed, verbose=0)
    return float(result.nme_inter_ocular[-1])


class _FaceAlignTrials:
    """Mixin over a KerasTuner tuner: a trial is `train_trial` on the trial's config.

    search(train_files=..., eval_files=..., frame=...) passes the prepared data;
    search(prepare_data=fn) instead prepares it per trial: fn(trial config) ->
    (train_files, eval_files, frame), for sweeps over the augmentation sigmas.
    """

    def __init__(self, *args, facealign_cfg: config_lib.Config, **kwargs):
        self.facealign_cfg = facealign_cfg
        super().__init__(*args, **kwargs)

    def run_trial(self, trial, train_files=None, eval_files=None, frame=None,
                  prepare_data=None, **_):
        import keras

        cfg = self.facealign_cfg
        values = trial.hyperparameters.values
        epochs = int(values.get("tuner/epochs", cfg.tuner.epochs_per_trial))
        trial_cfg = config_with_hyperparameters(cfg, values)
        if prepare_data is not None:
            train_files, eval_files, frame = prepare_data(trial_cfg)
        elif any(name in config_lib.AUGMENT_TUNABLE for name in values):
            raise ValueError("augmentation sigmas are tuned, but the sweep was given fixed "
                             "data (search(prepare_data=...) prepares it per trial)")
        started = time.monotonic()
        scores = []
        for _ in range(self.executions_per_trial):
            keras.backend.clear_session()
            scores.append(train_trial(trial_cfg, train_files, eval_files, frame, epochs))
        seconds = time.monotonic() - started
        return {objective_name(cfg): float(sum(scores) / len(scores)), "seconds": seconds}

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        name = objective_name(self.facealign_cfg)
        metrics = trial.metrics
        value = metrics.get_last_value(name) if metrics.exists(name) else float("nan")
        seconds = metrics.get_last_value("seconds") if metrics.exists("seconds") else 0.0
        hps = {k: v for k, v in trial.hyperparameters.values.items()
               if not k.startswith("tuner/")}
        trials = getattr(self.oracle, "trials", None)   # None on a worker: the chief has them
        done = "?" if trials is None else len(
            [t for t in trials.values() if t.status in ("COMPLETED", "INVALID", "FAILED")])
        budget = getattr(self.oracle, "max_trials", None)
        worker = f" on {distributed_role()}" if distributed_role() else ""
        print(f"tune: trial {trial.trial_id} ({done}/{budget or '?'}){worker} {trial.status}: "
              f"{name} {value:.4f} in {seconds:.0f} s, {hps}", flush=True)

    # The trials train their own models; nothing is checkpointed per trial.
    def save_model(self, trial_id, model, step=0):
        pass


class _Random(_FaceAlignTrials, kt.RandomSearch):
    pass


class _Bayesian(_FaceAlignTrials, kt.BayesianOptimization):
    pass


class _Hyperband(_FaceAlignTrials, kt.Hyperband):
    pass


def make_tuner(cfg: config_lib.Config, directory: str | None = None,
               max_trials: int | None = None) -> kt.Tuner:
    """The configured KerasTuner tuner, resumable (overwrite=False) in a fixed folder."""
    t = cfg.tuner
    common = dict(
        facealign_cfg=cfg, hypermodel=None,
        objective=kt.Objective(objective_name(cfg), direction="min"),
        hyperparameters=build_hyperparameters(cfg), tune_new_entries=False,
        executions_per_trial=t.executions_per_trial, seed=t.seed, overwrite=False,
        directory=directory or str(cfg.resolve(t.directory)),
        project_name=cfg.sweep_name)
    trials = max_trials or t.max_trials
    if t.algorithm == "random":
        return _Random(max_trials=trials, **common)
    if t.algorithm == "bayesian":
        return _Bayesian(max_trials=trials, **common)
    return _Hyperband(max_epochs=max(2, t.epochs_per_trial), factor=3, **common)


def trial_rows(tuner: kt.Tuner, cfg: config_lib.Config) -> list[dict]:
    """One row per trial, in trial order: id, status, hyperparameters, NME, seconds."""
    name = objective_name(cfg)
    rows = []
    for trial_id in sorted(tuner.oracle.trials, key=lambda i: (len(i), i)):
        trial = tuner.oracle.trials[trial_id]
        m = trial.metrics
        row = {"trial_id": trial_id, "status": trial.status}
        row.update({k: trial.hyperparameters.values.get(k)
                    for k in cfg.tuner.search_space})
        row[name] = m.get_last_value(name) if m.exists(name) else None
        row["seconds"] = round(m.get_last_value("seconds"), 1) if m.exists("seconds") else None
        rows.append(row)
    return rows


def write_report(tuner: kt.Tuner, cfg: config_lib.Config, out_dir) -> tuple[pathlib.Path, ...]:
    """trials.csv and trials.png (NME by trial, best so far) in out_dir."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(tuner, cfg)
    name = objective_name(cfg)
    fields = ["trial_id", "status", *cfg.tuner.search_space, name, "seconds"]
    csv_path, png_path = out_dir / "trials.csv", out_dir / "trials.png"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    done = [(i, r[name]) for i, r in enumerate(rows) if r[name] is not None
            and math.isfinite(r[name])]
    fig, ax = plt.subplots(figsize=(6, 4))
    if done:
        xs, ys = zip(*done)
        ax.plot(xs, ys, "o", label="trial")
        best = [min(ys[:k + 1]) for k in range(len(ys))]
        ax.step(xs, best, where="post", label="best so far")
        ax.legend()
    ax.set_xlabel("trial (in order)")
    ax.set_ylabel(f"{name} (validation NME)")
    ax.set_title(f"{cfg.tuner.algorithm} search, {cfg.model.name}")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return csv_path, png_path


def best_hyperparameters(tuner: kt.Tuner) -> dict:
    best = tuner.get_best_hyperparameters(1)
    return {k: v for k, v in best[0].values.items() if not k.startswith("tuner/")} if best \
        else {}


def tuner_fn(fn_args):
    """TFX Tuner entry point: the configured tuner and the prepared data to search on."""
    from tfx import v1 as tfx

    from facealign.core import frame_io

    cfg = config_lib.from_custom_config(fn_args.custom_config, "Tuner")
    frame = frame_io.read_frame(fn_args.transform_graph_path)
    tuner = make_tuner(cfg, directory=fn_args.working_dir)
    return tfx.components.TunerFnResult(
        tuner=tuner, fit_kwargs={"train_files": fn_args.train_files,
                                 "eval_files": fn_args.eval_files, "frame": frame})


def apply_best_hyperparameters(cfg: config_lib.Config, hyperparameters) -> config_lib.Config:
    """The Trainer's config with the Tuner's best values (a HyperParameters, its config
    dict as TFX passes it, or a plain dict); unchanged when there are none."""
    if not hyperparameters:
        return cfg
    if isinstance(hyperparameters, dict) and "space" in hyperparameters:
        hyperparameters = kt.HyperParameters.from_config(hyperparameters)
    values = hyperparameters.values if isinstance(hyperparameters, kt.HyperParameters) \
        else dict(hyperparameters)
    return config_with_hyperparameters(cfg, values)
