"""`facealign track`: follow one face through a video (serving/tracking.py says how).

Writes the annotated video (.mp4/.avi) or PNG frames into a folder
(serving/video.py), and a JSON with one entry per frame: index, landmarks
(null while no face), stage_spread, the box used, whether it was
re-detected, whether the face was lost.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from facealign.commands.face_options import add_face_options, checked_box
from facealign.core.errors import UserError
from serving.tracking import DEFAULT_MAX_SPREAD, DEFAULT_MIN_FACE


def add_parser(sub) -> None:
    parser = sub.add_parser("track", help="track face landmarks through a video")
    parser.add_argument("video", metavar="VIDEO", help="video file, or a folder of frames")
    parser.add_argument("--model", required=True,
                        help="SavedModel folder, TF Serving base folder (newest version) or "
                             "http://host:port/v1/models/NAME")
    parser.add_argument("--out", required=True,
                        help="annotated video (.mp4, .avi) or a folder for PNG frames")
    parser.add_argument("--json", dest="json_out",
                        help="per-frame results (default: OUT.json, or OUT/track.json)")
    parser.add_argument("--max-spread", type=float, default=DEFAULT_MAX_SPREAD,
                        help="stage_spread above which the face counts as lost (default 0.05, "
                             "calibrated by benchmarks/tracking_spread.py)")
    parser.add_argument("--min-face", type=float, default=DEFAULT_MIN_FACE,
                        help="landmark box side (pixels) below which the face is lost")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    add_face_options(parser, "the face's box x0,y0,x1,y1 in the first frame (default: detect it)",
                     "face detector model for --detector haar")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from serving import tracking
    from serving.aligner import Aligner
    from serving.errors import DetectorUnavailable
    from serving.model import open_model
    from serving.video import Frames, FrameWriter

    first_box = checked_box(args)
    if args.face_cascade and not pathlib.Path(args.face_cascade).is_file():
        raise UserError(f"--face-cascade {args.face_cascade}: face detector model not found")
    if args.max_spread <= 0 or args.min_face < 0:
        raise UserError("--max-spread must be positive and --min-face not negative")
    frames = Frames(args.video)
    writer = FrameWriter(args.out, frames.fps)
    from tqdm import tqdm

    aligner = Aligner(open_model(args.model), args.face_cascade, args.detector)
    tracker = tracking.Tracker(aligner, first_box, args.max_spread, args.min_face)
    total = frames.count if args.max_frames is None else min(frames.count or args.max_frames,
                                                              args.max_frames)
    progress = tqdm(total=total, desc="track", unit="frame")
    try:
        entries = tracking.track_video(frames, tracker, writer, args.max_frames,
                                       on_frame=lambda entry: progress.update(1))
    except DetectorUnavailable as exc:
        raise UserError(f"{exc}; or pass --box for the first frame") from None
    finally:
        progress.close()
        writer.close()
    if not entries:
        raise UserError(f"{args.video}: no frame could be read")
    out_json = pathlib.Path(args.json_out) if args.json_out else writer.default_json()
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps({
        "video": str(args.video), "model": str(args.model), "max_spread": args.max_spread,
        "box_relation": (None if tracker.relation is None
                         else np.round(tracker.relation, 5).tolist()),
        "frames": entries}) + "\n")
    lost = sum(e["lost"] for e in entries)
    redetected = sum(e["redetected"] for e in entries)
    print(f"track: {len(entries)} frames, {redetected} detection(s), {lost} lost; "
          f"wrote {writer.out} and {out_json}", file=sys.stderr)
    return 0
