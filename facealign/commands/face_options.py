"""The face options `predict` and `track` share: --box, --detector, --face-cascade."""
from __future__ import annotations

from facealign.core.errors import UserError


def add_face_options(parser, box_help: str, cascade_help: str) -> None:
    parser.add_argument("--box", help=box_help)
    parser.add_argument("--detector", metavar="NAME",
                        help="face detector: blazeface (default: BlazeFace's short-range model, "
                             "then its back-camera model and tiles for small faces), "
                             "blazeface-short, blazeface-back, blazeface-full (one model alone) "
                             "or haar; see serving/detector.py")
    parser.add_argument("--face-cascade", help=cascade_help)


def checked_box(args):
    """--box as numbers (None when not given), after --detector was checked; UserError else."""
    from serving.boxes import parse_box
    from serving.detector import detector_name
    from serving.errors import BoxError, InputError

    try:
        box = parse_box(args.box) if args.box else None
    except BoxError as exc:
        raise UserError(f"--box {exc}") from None
    try:
        detector_name(args.detector, args.face_cascade)
    except InputError as exc:
        raise UserError(f"--detector: {exc}") from None
    return box
