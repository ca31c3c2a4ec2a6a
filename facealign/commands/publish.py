"""`facealign publish`: a pushed version into pretrained/<name> with its model card.

Only when it is at least --min-improvement better than the version published
there, on the run's held-out faces (pipeline/publish.py); --remeasure scores a
published model again in place.

  facealign publish --config configs/300w.yaml --out pretrained/dan-300w
  facealign publish --config configs/300w.yaml --remeasure pretrained/aan-300w
"""
from __future__ import annotations

from facealign.core import config
from facealign.core.errors import UserError


def add_parser(sub) -> None:
    parser = sub.add_parser("publish", help="copy a pushed version into pretrained/<name> with "
                                            "its model card, if it is better")
    parser.add_argument("--config", required=True, help="the run's configuration file")
    parser.add_argument("--out", help="pretrained/<name> folder to (re)write")
    parser.add_argument("--version", help="the pushed version to publish (default: newest)")
    parser.add_argument("--note", default="", help="a paragraph for the card (Markdown)")
    parser.add_argument("--min-improvement", type=float, default=0.03,
                        help="relative NME gain over the published model needed to replace it "
                             "(default 0.03: 3%%)")
    parser.add_argument("--re-export", action="store_true",
                        help="export the model again with this checkout's exporter (newer "
                             "serving graph, the configuration's model.flip_average), keeping "
                             "its weights")
    parser.add_argument("--remeasure", metavar="FOLDER",
                        help="re-score this published model in place instead of publishing")
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        metavar="KEY=VALUE", help="configuration override, as facealign run")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from pipeline import publish

    cfg = config.load(args.config, args.overrides)
    if args.remeasure:
        publish.remeasure(cfg, args.remeasure)
        return 0
    if not args.out:
        raise UserError("--out is required (or --remeasure FOLDER)")
    publish.publish(cfg, args.config, args.out, version=args.version, note=args.note,
                    min_improvement=args.min_improvement, re_export=args.re_export)
    return 0
