"""Frames in and out for tracking: a video file or a folder of images, through OpenCV.

Output is a video (.mp4/.m4v/.mov: mp4v, .avi: MJPG, the codecs every
opencv-python-headless wheel writes) or PNG frames in a folder, lossless,
for when the video codecs are not available.
"""
from __future__ import annotations

import pathlib

import cv2
import numpy as np

from serving.errors import VideoError

VIDEO_SUFFIXES = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


class Frames:
    """BGR frames of a video file or of a folder of images (sorted by name)."""

    def __init__(self, source):
        self.path = pathlib.Path(source)
        self.fps = 25.0
        self._files = None
        self._capture = None
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir()
                                 if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise VideoError(f"{source}: no image files in this folder")
            self.count = len(self._files)
        elif self.path.is_file():
            self._capture = cv2.VideoCapture(str(self.path))
            if not self._capture.isOpened():
                raise VideoError(f"{source}: OpenCV cannot open this video")
            self.count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            self.fps = self._capture.get(cv2.CAP_PROP_FPS) or 25.0
        else:
            raise VideoError(f"{source}: no such video file or frame folder")

    def __iter__(self):
        if self._files is not None:
            for path in self._files:
                frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if frame is None:
                    raise VideoError(f"{path}: not an image OpenCV can decode")
                yield frame
            return
        while True:
            ok, frame = self._capture.read()
            if not ok:
                break
            yield frame
        self._capture.release()


class FrameWriter:
    """Writes frames to a video file or, for a folder, as frame_NNNNNN.png."""

    def __init__(self, out, fps: float):
        self.out = pathlib.Path(out)
        self.fps = fps
        self._writer = None
        self.codec = VIDEO_SUFFIXES.get(self.out.suffix.lower())
        if self.codec is None:
            if self.out.suffix and not self.out.is_dir():
                raise VideoError(f"{out}: use a .mp4/.avi file or a folder for PNG frames")
            self.out.mkdir(parents=True, exist_ok=True)
        else:
            self.out.parent.mkdir(parents=True, exist_ok=True)

    def write(self, index: int, frame: np.ndarray) -> None:
        if self.codec is None:
            if not cv2.imwrite(str(self.out / f"frame_{index:06d}.png"), frame):
                raise VideoError(f"{self.out}: cannot write frames there")
            return
        if self._writer is None:
            height, width = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self.out), cv2.VideoWriter_fourcc(*self.codec),
                                           self.fps, (width, height))
            if not self._writer.isOpened():
                raise VideoError(f"{self.out}: OpenCV cannot write {self.codec} video")
        self._writer.write(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()

    def default_json(self) -> pathlib.Path:
        """Where the per-frame results go by default: beside the video, or in the folder."""
        return self.out / "track.json" if self.codec is None else self.out.with_suffix(".json")
