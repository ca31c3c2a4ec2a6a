"""`facealign data check`: read a dataset and report accepted and rejected faces.

Exit code 0 whenever the data could be read, rejects or not (they are listed);
2 with one line for input that cannot be used at all (a missing root or CSV),
or for the first reject under --on-error fail.
"""
from __future__ import annotations

import pathlib

from facealign.core.data import FORMATS, DataError, read_dataset
from facealign.core.data.report import ON_ERROR_CHOICES


def add_parser(sub) -> None:
    parser = sub.add_parser("data", help="inspect datasets")
    parser.add_argument("action", choices=["check"])
    parser.add_argument("root",
                        help="dataset folder (for coco: the folder file_name is relative to)")
    parser.add_argument("--format", choices=FORMATS, default="300w",
                        help="300w: .pts beside images; ljson: Menpo .ljson beside images; "
                             "coco: COCO keypoint JSON (--annotations)")
    parser.add_argument("--annotations", metavar="JSON",
                        help="the COCO keypoint JSON (format coco)")
    parser.add_argument("--boxes", action="append", default=[], metavar="CSV",
                        help="face-box CSV image,x0,y0,x1,y1 (repeatable)")
    parser.add_argument("--name", help="dataset name in face ids (default: the root folder's name)")
    parser.add_argument("--on-error", choices=ON_ERROR_CHOICES, default="skip",
                        help="skip: report rejects and go on (default); fail: stop at the first")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from facealign.core.errors import UserError

    if args.format == "coco" and not args.annotations:
        raise UserError("--format coco needs --annotations JSON")
    if args.annotations and args.format != "coco":
        raise UserError(f"--annotations is only for --format coco (got --format {args.format})")
    try:
        records, report = read_dataset(args.root, format=args.format, boxes=args.boxes,
                                       annotations=args.annotations, name=args.name,
                                       on_error=args.on_error)
    except DataError as exc:
        raise UserError(str(exc)) from None
    root = pathlib.Path(args.root)
    print(f"{root} (format {args.format}"
          + (f", boxes from {len(args.boxes)} CSV file{'s' if len(args.boxes) != 1 else ''}"
             if args.boxes else "") + ")")
    for line in report.lines():
        print(line)
    return 0
