"""`facealign train`: the pipeline's data preparation and training without TFX.

For people iterating on the model: pipeline/prepare.py prepares the data as
the components do (reused while unchanged), then the same
`train_and_export` as the TFX Trainer runs.
"""
from __future__ import annotations

import json
import pathlib

from facealign.commands.config import add_config_arguments
from facealign.core import config
from facealign.core.errors import UserError


def add_parser(sub) -> None:
    parser = sub.add_parser("train", help="train the configured model without the pipeline")
    add_config_arguments(parser)
    parser.add_argument("--work-dir", default="runs/train",
                        help="where prepared data, logs and the exported model go")
    parser.add_argument("--init-from", metavar="MODEL",
                        help="continue from this exported model (a SavedModel or a TF Serving "
                             "base folder: its newest version); default trainer.warm_start")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from pipeline.prepare import PrepareError, prepared_data
    from trainer import backup, distribution
    from trainer.run import train_and_export
    from trainer.warm_start import WarmStartError

    cfg = config.load(args.config, args.overrides)
    # a multi-worker strategy must exist before TensorFlow runs anything (the data preparation)
    distribution.strategy(cfg.trainer.distribution)
    work = pathlib.Path(args.work_dir)
    try:
        train_files, eval_files, frame = prepared_data(cfg, work)
    except PrepareError as exc:
        raise UserError(str(exc)) from None
    model_dir = work / "model"
    # a killed run, started again with the same settings, resumes from its last epoch
    resume = backup.keyed_folder(str(work / "resume"), {
        "config": config.component_config(cfg, config.TRAINER_SECTIONS),
        "data": train_files, "init_from": args.init_from})
    try:
        summary = train_and_export(cfg, train_files, eval_files, frame, str(model_dir),
                                   log_dir=str(work / "logs"), init_from=args.init_from,
                                   backup_dir=resume)
    except (WarmStartError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"train: model in {model_dir}; summary in {work / 'summary.json'}")
    distribution.end_process(0)   # multi-worker: TensorFlow can hang at exit (its docstring)
    return 0
