"""The `facealign` command: one entry point, one subcommand per job.

Each subcommand lives in its own module and registers itself through
``add_parser(subparsers)``; its handler returns the process exit code.
Expected problems print one clear line and exit 2, never a traceback: the
layers below raise their own types for them (ConfigError, DataError,
serving.errors.InputError), the commands UserError; this is the one place
that turns them into messages.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from facealign import installation
from facealign.core.config import ConfigError
from facealign.core.data.report import DataError
from facealign.core.errors import UserError

# module path -> registers one or more subcommands
_COMMAND_MODULES = (
    "facealign.commands.data",
    "facealign.commands.config",
    "facealign.commands.pipeline",
    "facealign.commands.evaluate",
    "facealign.commands.train",
    "facealign.commands.tune",
    "facealign.commands.serve",
    "facealign.commands.predict",
    "facealign.commands.track",
    "facealign.commands.export",
    "facealign.commands.publish",
    "facealign.commands.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facealign", description="Face alignment (DAN, AAN) as a TFX pipeline.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:   # before anything imports the shadowed packages' modules
        installation.check_packages()
    except ImportError as exc:
        print(f"facealign: error: {exc}", file=sys.stderr)
        return 2
    from serving.errors import InputError

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, DataError, InputError, UserError) as exc:
        print(f"facealign {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
