"""`facealign data check`: read a dataset and report accepted and rejected faces."""
from __future__ import annotations


def add_parser(sub) -> None:
    parser = sub.add_parser("data", help="inspect datasets")
    parser.add_argument("action", choices=["check"])
    parser.add_argument("root", help="dataset folder (300-W layout)")
    parser.add_argument("--boxes", action="append", default=[], help="face-box CSV (repeatable)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    raise NotImplementedError("data check: readers not yet written")
