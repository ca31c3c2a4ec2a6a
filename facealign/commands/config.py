"""`facealign config check`: validate a pipeline.yaml and print the result."""
from __future__ import annotations

import yaml

from facealign.core import config


def add_parser(sub) -> None:
    parser = sub.add_parser("config", help="validate and print a pipeline configuration")
    parser.add_argument("action", choices=["check"], help="check: validate and print")
    add_config_arguments(parser)
    parser.set_defaults(handler=run)


def add_config_arguments(parser) -> None:
    """--config and --set, shared by every subcommand that reads pipeline.yaml."""
    parser.add_argument("--config", default="pipeline.yaml", help="pipeline.yaml to read")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a value, e.g. trainer.batch_size=32")


def run(args) -> int:
    cfg = config.load(args.config, args.overrides)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    return 0
