"""`facealign track`: follow one face through a video, as the DAN authors' demo code does.

The face is detected once (OpenCV's Haar cascade, serving/detector.py, or
the --box given for the first frame); every later frame starts from the
previous frame's landmarks instead of a new detection: its box is the
previous landmarks' bounding box mapped to the size and position a detector
box has relative to the landmarks. That relation (width and height ratios and
the centre offset, in landmark-box units) is measured once, on the first
detection, so the tracked box has the statistics the model saw at training.

The face counts as lost, and is re-detected on the same frame, when
- the cascade has not settled: stage_spread > --max-spread (the mean
  distance between the last two stages' points over the mean shape's box
  diagonal; the serving signature returns it). The default 0.05 comes from
  benchmarks/tracking_spread.py on the 100 held-out 300-W faces with
  pretrained/dan-300w: it flags 11% of correctly boxed faces (36% of which
  are failures, against 8% of the others) and catches 95% of faces whose box
  slid off by one face width; 0.08 caught only 51%. A one-stage model (AAN)
  has no spread (always 0): only the checks below apply to it; or
- the landmarks collapse or explode (their box shrinks below --min-face
  pixels, or changes size by more than 2x from one frame to the next), or
  their centre leaves the frame, or they are not finite.
Without a detector (no cascade file) the --box is reused for re-detection.

Writes the annotated video (.mp4/.avi: cv2.VideoWriter, mp4v/MJPG) or PNG
frames into a folder, and a JSON with one entry per frame: index, landmarks
(null while no face), stage_spread, the box used, whether it was
re-detected, whether the face was lost.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from facealign.errors import UserError

DEFAULT_MAX_SPREAD = 0.05   # calibration in the module docstring
VIDEO_SUFFIXES = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def add_parser(sub) -> None:
    parser = sub.add_parser("track", help="track face landmarks through a video")
    parser.add_argument("video", metavar="VIDEO", help="video file, or a folder of frames")
    parser.add_argument("--model", required=True,
                        help="SavedModel folder or http://host:port/v1/models/NAME")
    parser.add_argument("--out", required=True,
                        help="annotated video (.mp4, .avi) or a folder for PNG frames")
    parser.add_argument("--json", dest="json_out",
                        help="per-frame results (default: OUT.json, or OUT/track.json)")
    parser.add_argument("--box", help="the face's box x0,y0,x1,y1 in the first frame "
                                      "(default: detect it)")
    parser.add_argument("--max-spread", type=float, default=DEFAULT_MAX_SPREAD,
                        help="stage_spread above which the face counts as lost (default 0.05, "
                             "calibrated by benchmarks/tracking_spread.py)")
    parser.add_argument("--min-face", type=float, default=12.0,
                        help="landmark box side (pixels) below which the face is lost")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--face-cascade", help="face detector model; see serving/detector.py")
    parser.set_defaults(handler=run)


# --- frames in and out ----------------------------------------------------------------------

class Frames:
    """BGR frames of a video file or of a folder of images (sorted by name)."""

    def __init__(self, source: str):
        import cv2

        self.path = pathlib.Path(source)
        self.fps = 25.0
        self._files = None
        self._capture = None
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir()
                                 if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise UserError(f"{source}: no image files in this folder")
            self.count = len(self._files)
        elif self.path.is_file():
            self._capture = cv2.VideoCapture(str(self.path))
            if not self._capture.isOpened():
                raise UserError(f"{source}: OpenCV cannot open this video")
            self.count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            self.fps = self._capture.get(cv2.CAP_PROP_FPS) or 25.0
        else:
            raise UserError(f"{source}: no such video file or frame folder")

    def __iter__(self):
        import cv2

        if self._files is not None:
            for path in self._files:
                frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if frame is None:
                    raise UserError(f"{path}: not an image OpenCV can decode")
                yield frame
            return
        while True:
            ok, frame = self._capture.read()
            if not ok:
                break
            yield frame
        self._capture.release()


class FrameWriter:
    def __init__(self, out: str, fps: float):
        self.out = pathlib.Path(out)
        self.fps = fps
        self._writer = None
        self.codec = VIDEO_SUFFIXES.get(self.out.suffix.lower())
        if self.codec is None:
            if self.out.suffix and not self.out.is_dir():
                raise UserError(f"--out {out}: use a .mp4/.avi file or a folder for PNG frames")
            self.out.mkdir(parents=True, exist_ok=True)
        else:
            self.out.parent.mkdir(parents=True, exist_ok=True)

    def write(self, index: int, frame: np.ndarray) -> None:
        import cv2

        if self.codec is None:
            if not cv2.imwrite(str(self.out / f"frame_{index:06d}.png"), frame):
                raise UserError(f"--out {self.out}: cannot write frames there")
            return
        if self._writer is None:
            height, width = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self.out), cv2.VideoWriter_fourcc(*self.codec),
                                           self.fps, (width, height))
            if not self._writer.isOpened():
                raise UserError(f"--out {self.out}: OpenCV cannot write {self.codec} video")
        self._writer.write(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()

    def default_json(self) -> pathlib.Path:
        return self.out / "track.json" if self.codec is None else self.out.with_suffix(".json")


# --- the tracker -------------------------------------------------------------------------------

def landmark_box(landmarks) -> np.ndarray:
    points = np.asarray(landmarks, np.float64).reshape(-1, 2)
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def box_relation(box, landmarks) -> np.ndarray:
    """(width ratio, height ratio, centre offset x, y) of a detector box to its landmarks' box."""
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    lx0, ly0, lx1, ly1 = landmark_box(landmarks)
    width, height = max(lx1 - lx0, 1e-6), max(ly1 - ly0, 1e-6)
    return np.array([(x1 - x0) / width, (y1 - y0) / height,
                     ((x0 + x1) - (lx0 + lx1)) / 2 / width, ((y0 + y1) - (ly0 + ly1)) / 2 / height])


def box_from_landmarks(landmarks, relation) -> np.ndarray:
    """The detector-like box around landmarks, by a relation from box_relation."""
    lx0, ly0, lx1, ly1 = landmark_box(landmarks)
    width, height = lx1 - lx0, ly1 - ly0
    cx = (lx0 + lx1) / 2 + relation[2] * width
    cy = (ly0 + ly1) / 2 + relation[3] * height
    half_w, half_h = relation[0] * width / 2, relation[1] * height / 2
    return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h], np.float32)


def lost_reason(landmarks, spread: float, frame_shape, previous, max_spread: float,
                min_face: float) -> str | None:
    """Why these landmarks are not a tracked face (None: they are)."""
    if not np.all(np.isfinite(landmarks)) or not np.isfinite(spread):
        return "not finite"
    if spread > max_spread:
        return f"stage_spread {spread:.3f} > {max_spread:g}"
    x0, y0, x1, y1 = landmark_box(landmarks)
    if min(x1 - x0, y1 - y0) < min_face:
        return "landmarks collapsed"
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if not (0 <= cx < frame_shape[1] and 0 <= cy < frame_shape[0]):
        return "left the frame"
    if previous is not None:
        px0, py0, px1, py1 = landmark_box(previous)
        change = ((x1 - x0) * (y1 - y0)) / max((px1 - px0) * (py1 - py0), 1e-6)
        if not 0.25 <= change <= 4.0:
            return "landmark box changed size more than 2x"
    return None


class Tracker:
    def __init__(self, model, first_box=None, cascade=None, max_spread: float = DEFAULT_MAX_SPREAD,
                 min_face: float = 12.0, encoding: str = ".bmp"):
        self.model = model
        self.first_box = first_box
        self.cascade = cascade
        self.max_spread = max_spread
        self.min_face = min_face
        self.encoding = encoding
        self.relation = None
        self.previous = None
        self._detector = None

    def detect(self, frame, first: bool):
        """A box for a fresh start, or None."""
        if first and self.first_box is not None:
            return self.first_box
        if self._detector is None:
            from serving import detector

            try:
                self._detector = detector.FaceDetector(self.cascade)
            except detector.DetectorUnavailable as exc:
                if self.first_box is None or self.cascade:
                    raise UserError(f"{exc}; or pass --box for the first frame") from None
                self._detector = False  # no detector: restart from --box
        if self._detector is False:
            return self.first_box
        boxes = self._detector.detect(frame)
        return boxes[0] if len(boxes) else None

    def _predict(self, frame, box):
        from serving.model import encode_image

        result = self.model.predict([encode_image(frame, self.encoding)], box[None])
        return result.landmarks[0], float(result.stage_spread[0])

    def step(self, index: int, frame) -> dict:
        entry = {"frame": index, "landmarks": None, "stage_spread": None, "box": None,
                 "redetected": False, "lost": False}
        attempts = []
        if self.previous is not None and self.relation is not None:
            attempts.append(("tracked", box_from_landmarks(self.previous, self.relation)))
        for kind, box in attempts + [("detected", None)]:
            if kind == "detected":
                box = self.detect(frame, first=self.relation is None)
                if box is None:
                    break
            landmarks, spread = self._predict(frame, np.asarray(box, np.float32))
            reason = lost_reason(landmarks, spread, frame.shape, self.previous
                                 if kind == "tracked" else None, self.max_spread, self.min_face)
            if kind == "detected" and self.relation is None and reason is None:
                self.relation = box_relation(box, landmarks)  # measured once
            entry.update(landmarks=np.round(landmarks, 3).tolist(),
                         stage_spread=round(spread, 6),
                         box=np.round(np.asarray(box, np.float64), 2).tolist(),
                         redetected=kind == "detected", lost=reason is not None,
                         lost_reason=reason)
            if reason is None:
                self.previous = landmarks
                return entry
        self.previous = None
        entry["lost"] = True
        entry.setdefault("lost_reason", "no face detected")
        return entry


def run(args) -> int:
    from serving.model import parse_box

    first_box = parse_box(args.box) if args.box else None
    if args.face_cascade and not pathlib.Path(args.face_cascade).is_file():
        raise UserError(f"--face-cascade {args.face_cascade}: face detector model not found")
    if args.max_spread <= 0 or args.min_face < 0:
        raise UserError("--max-spread must be positive and --min-face not negative")
    frames = Frames(args.video)
    writer = FrameWriter(args.out, frames.fps)
    from tqdm import tqdm

    from serving import client
    from serving.model import draw, open_model

    model = open_model(args.model)
    tracker = Tracker(model, first_box, args.face_cascade, args.max_spread, args.min_face,
                      ".jpg" if client.is_model_url(args.model) else ".bmp")
    entries = []
    total = frames.count if args.max_frames is None else min(frames.count or args.max_frames,
                                                              args.max_frames)
    progress = tqdm(total=total, desc="track", unit="frame")
    try:
        for index, frame in enumerate(frames):
            if args.max_frames is not None and index >= args.max_frames:
                break
            entry = tracker.step(index, frame)
            entries.append(entry)
            picture = frame
            if entry["landmarks"] is not None:
                colour = (0, 0, 255) if entry["lost"] else (0, 255, 0)
                picture = draw(frame, entry["landmarks"], entry["box"], colour)
            writer.write(index, picture)
            progress.update(1)
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
