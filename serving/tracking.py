"""Following one face through a video, as the DAN authors' demo code does.

The face is detected once (OpenCV's Haar cascade, detector.py, or a box given
for the first frame); every later frame starts from the previous frame's
landmarks instead of a new detection: its box is the previous landmarks'
bounding box mapped to the size and position a detector box has relative to
the landmarks. That relation (width and height ratios and the centre offset,
in landmark-box units) is measured once, on the first detection, so the
tracked box has the statistics the model saw at training.

The face counts as lost, and is re-detected on the same frame, when
- the cascade has not settled: stage_spread > max_spread (the mean distance
  between the last two stages' points over the mean shape's box diagonal;
  the serving signature returns it). The default 0.05 comes from
  benchmarks/tracking_spread.py on the 100 held-out 300-W faces with
  pretrained/dan-300w: it flags 11% of correctly boxed faces (36% of which
  are failures, against 8% of the others) and catches 95% of faces whose box
  slid off by one face width; 0.08 caught only 51%. A one-stage model (AAN)
  has no spread (always 0): only the checks below apply to it; or
- the landmarks collapse or explode (their box shrinks below min_face
  pixels, or changes size by more than 2x from one frame to the next), or
  their centre leaves the frame, or they are not finite.
Without a detector (no cascade file) the first box is reused for re-detection.

OpenCV (images.py) is imported with the first frame, so that the CLI can read
this module's defaults without loading it.
"""
from __future__ import annotations

import numpy as np

from serving.errors import DetectorUnavailable, ModelError

DEFAULT_MAX_SPREAD = 0.05   # calibration in the module docstring
DEFAULT_MIN_FACE = 12.0
TRACKED_COLOUR, LOST_COLOUR = (0, 255, 0), (0, 0, 255)  # BGR


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
    """One face through consecutive frames; `step` gives each frame's JSON-ready entry.

    `aligner` is a serving.aligner.Aligner (its model and its detector);
    `first_box` the face's box in the first frame (default: detect it).
    DetectorUnavailable propagates when a detection is needed and there is no
    first box to restart from, or the aligner's cascade file was named explicitly.
    """

    def __init__(self, aligner, first_box=None, max_spread: float = DEFAULT_MAX_SPREAD,
                 min_face: float = DEFAULT_MIN_FACE, encoding: str | None = None):
        self.aligner = aligner
        self.first_box = None if first_box is None else np.asarray(first_box, np.float32)
        self.max_spread = max_spread
        self.min_face = min_face
        # a lossy JPEG is enough for a frame sent over the network; BMP in-process is fastest
        self.encoding = encoding or (".jpg" if getattr(aligner.model, "remote", False)
                                     else ".bmp")
        self.relation = None
        self.previous = None
        self._no_detector = False

    def detect(self, frame, first: bool):
        """A box for a fresh start, or None."""
        if (first or self._no_detector) and self.first_box is not None:
            return self.first_box
        try:
            detector = self.aligner.detector
        except DetectorUnavailable:
            if self.first_box is None or self.aligner.face_cascade:
                raise
            self._no_detector = True  # no detector: restart from the first box
            return self.first_box
        boxes = detector.detect(frame)
        return boxes[0] if len(boxes) else None

    def _predict(self, image, box):
        result = self.aligner.model.predict_image(image, box[None])
        return result.landmarks[0], float(result.stage_spread[0])

    def step(self, index: int, frame) -> dict:
        from serving.images import from_bgr

        entry = {"frame": index, "landmarks": None, "stage_spread": None, "box": None,
                 "redetected": False, "lost": False}
        image = from_bgr(frame, self.encoding)
        attempts = []
        if self.previous is not None and self.relation is not None:
            attempts.append(("tracked", box_from_landmarks(self.previous, self.relation)))
        for kind, box in attempts + [("detected", None)]:
            if kind == "detected":
                box = self.detect(frame, first=self.relation is None)
                if box is None:
                    break
            try:
                landmarks, spread = self._predict(image, np.asarray(box, np.float32))
            except ModelError as exc:
                if kind != "tracked":
                    raise
                # the model refuses a tracked box that slid off the frame or collapsed:
                # the face is lost, and the detector gets the frame
                entry.update(lost=True, lost_reason=f"tracked box refused: {exc}")
                continue
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


def track_video(frames, tracker: Tracker, writer, max_frames: int | None = None,
                on_frame=None) -> list[dict]:
    """Runs the tracker over `frames` (video.Frames), writing each frame with its points
    drawn (green: tracked, red: lost) to `writer` (video.FrameWriter); the entries."""
    from serving.images import draw

    entries = []
    for index, frame in enumerate(frames):
        if max_frames is not None and index >= max_frames:
            break
        entry = tracker.step(index, frame)
        entries.append(entry)
        picture = frame
        if entry["landmarks"] is not None:
            picture = draw(frame, entry["landmarks"], entry["box"],
                           LOST_COLOUR if entry["lost"] else TRACKED_COLOUR)
        writer.write(index, picture)
        if on_frame is not None:
            on_frame(entry)
    return entries
