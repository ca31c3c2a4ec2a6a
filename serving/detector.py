"""Face detection for `facealign predict` and `facealign track`: a Viola-Jones Haar cascade.

DAN was trained and evaluated from face-detector boxes, and the DAN authors'
own demo code initialises with OpenCV's Haar cascade
(``haarcascade_frontalface_default.xml``, Lienhart's frontal face detector).
We use the same cascade, as shipped in the pinned ``opencv-python-headless``
4.x wheel (``cv2.data.haarcascades``; OpenCV 5.0 dropped both the files and
``cv2.CascadeClassifier``, hence the pin), so boxes have the size relation to
the face that the authors' tracking code expects. It is fast on a CPU and
needs nothing beyond the wheel. Another cascade XML can be given with
``--face-cascade`` or ``$FACEALIGN_FACE_CASCADE``, and a YuNet ``.onnx`` model
given there uses ``cv2.FaceDetectorYN`` instead.
"""
from __future__ import annotations

import os
import pathlib

import cv2
import numpy as np

CASCADE_NAME = "haarcascade_frontalface_default.xml"
ENV_VAR = "FACEALIGN_FACE_CASCADE"
SYSTEM_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades",
               "/usr/local/share/opencv4/haarcascades", "/usr/local/share/opencv/haarcascades")
MAX_SIDE = 800  # larger images are detected on a downscaled copy (faces < ~5% of it are lost)


class DetectorUnavailable(RuntimeError):
    """No usable face detector model could be found."""


def find_cascade(path: str | os.PathLike | None = None) -> pathlib.Path:
    """The detector model file: `path`, $FACEALIGN_FACE_CASCADE, cv2's data, system data."""
    explicit = path or os.environ.get(ENV_VAR)
    if explicit:
        explicit = pathlib.Path(explicit)
        if not explicit.is_file():
            raise DetectorUnavailable(f"face detector model {explicit} not found")
        return explicit
    folders = [getattr(getattr(cv2, "data", None), "haarcascades", ""), *SYSTEM_DIRS]
    for folder in folders:
        candidate = pathlib.Path(folder or "/nonexistent") / CASCADE_NAME
        if candidate.is_file():
            return candidate
    raise DetectorUnavailable(
        f"no face detector: {CASCADE_NAME} is neither in cv2.data.haarcascades nor in "
        f"{SYSTEM_DIRS[0]} (Debian: apt-get install opencv-data); give its path with "
        f"--face-cascade or ${ENV_VAR}, or pass the face box")


class FaceDetector:
    """Frontal faces in an image, largest first, as (x0, y0, x1, y1) float32 boxes."""

    def __init__(self, path: str | os.PathLike | None = None, min_size: int = 30):
        self.path = find_cascade(path)
        self.min_size = int(min_size)
        self._yunet = None
        self._opencv = None
        if self.path.suffix.lower() == ".onnx":
            if not hasattr(cv2, "FaceDetectorYN"):
                raise DetectorUnavailable("this OpenCV has no FaceDetectorYN for an ONNX model")
            self._yunet = cv2.FaceDetectorYN.create(str(self.path), "", (320, 320), 0.8, 0.3)
        else:
            self._opencv = cv2.CascadeClassifier(str(self.path))
            if self._opencv.empty():
                raise DetectorUnavailable(f"{self.path}: OpenCV cannot load this cascade")

    @property
    def name(self) -> str:
        engine = "cv2.FaceDetectorYN" if self._yunet is not None else "cv2.CascadeClassifier"
        return f"{self.path.name} ({engine})"

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Boxes [K, 4] float32 (x0, y0, x1, y1), largest first; `image` is gray or BGR uint8."""
        image = np.asarray(image)
        if self._yunet is not None:
            bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            self._yunet.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, faces = self._yunet.detect(bgr)
            rects = np.zeros((0, 4)) if faces is None else faces[:, :4]
            return _boxes(rects, 1.0)
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, MAX_SIDE / max(gray.shape))
        if scale < 1.0:
            gray = cv2.resize(gray, (round(gray.shape[1] * scale), round(gray.shape[0] * scale)),
                              interpolation=cv2.INTER_AREA)
        min_size = max(1, int(self.min_size * scale))
        rects = self._opencv.detectMultiScale(gray, 1.1, 3, minSize=(min_size, min_size))
        return _boxes(rects, scale)


def _boxes(rects, scale: float) -> np.ndarray:
    rects = np.asarray(rects, np.float32).reshape(-1, 4) / scale
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
    order = np.argsort(-(rects[:, 2] * rects[:, 3]), kind="stable")
    return boxes[order]
