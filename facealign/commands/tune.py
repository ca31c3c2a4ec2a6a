"""`facealign tune`: a KerasTuner hyperparameter sweep without the pipeline.

The data is prepared exactly as `facealign train` does (same readers, split,
crops and augmentation, reused while unchanged): once, before the sweep, or,
when the augmentation sigmas are swept, once per distinct value. Each trial
trains a candidate from `tuner.search_space` (trainer/tuning.py).
Resumable: the sweep lives in tuner.directory and a re-run continues after the
finished trials. At the end: trials.csv and trials.png in the sweep's folder
and the best hyperparameters. For chief/worker sweeps see trainer/tuning.py.
"""
from __future__ import annotations

import json

from facealign.commands.config import add_config_arguments
from facealign.core import config
from facealign.core.errors import UserError


def add_parser(sub) -> None:
    parser = sub.add_parser("tune", help="hyperparameter sweep (KerasTuner) without the pipeline")
    add_config_arguments(parser)
    parser.add_argument("--trials", type=int, default=None,
                        help="trial budget, overrides tuner.max_trials")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from pipeline.prepare import PrepareError, prepared_data

    cfg = config.load(args.config, args.overrides)
    if not cfg.tuner.search_space:
        raise UserError("tuner.search_space is empty: name at least one hyperparameter")
    if args.trials is not None and args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    from trainer import tuning

    try:
        role = tuning.distributed_role()
    except RuntimeError as exc:          # KERASTUNER_ORACLE_IP without the port or the id
        raise UserError(f"distributed sweep: {exc}") from None
    root = cfg.resolve(cfg.tuner.directory)

    def prepare_data(trial_cfg):
        try:
            return prepared_data(trial_cfg, root)
        except PrepareError as exc:
            raise UserError(str(exc)) from None

    chief = role is not None and "chief" in role     # KerasTuner's own test of the id
    if not chief and not any(name in config.AUGMENT_TUNABLE for name in cfg.tuner.search_space):
        prepare_data(cfg)        # once, before the first trial (the chief trains nothing)
    tuner = tuning.make_tuner(cfg, directory=str(root), max_trials=args.trials)
    print(f"tune: {cfg.tuner.algorithm} search over {list(cfg.tuner.search_space)}, "
          f"objective {tuning.objective_name(cfg)} (min), in {tuner.project_dir}", flush=True)
    if role:
        print(f"tune: distributed sweep, this process is {role}", flush=True)
    tuner.search(prepare_data=prepare_data)
    if role is not None and not chief:   # a worker: the chief holds the trials and reports
        print(f"tune: worker {role} done: no trial left")
        return 0
    csv_path, png_path = tuning.write_report(tuner, cfg, tuner.project_dir)
    best = tuning.best_hyperparameters(tuner)
    print(f"tune: trials in {csv_path}, plot in {png_path}")
    print(f"tune: best hyperparameters {json.dumps(best)}")
    print("tune: apply with " + " ".join(f"--set {k}={v}" for k, v in best.items()))
    return 0
