"""A .tflite or .onnx export as the model of a face aligner: crop, network, points back.

`facealign export` writes only the network on canonical crops (uint8
[B, S, S, 1] in, canonical landmarks out) and, beside it, a JSON sidecar
with the canonical S0 and the crop size (facealign.core.model_paths.read_sidecar).
What the SavedModel's serving signature does in its graph, this does in
numpy by the same definition (facealign/core/crop.py: S0 fitted to the box,
BT.601 grey, bilinear, black outside, rounded): it crops each face, runs the
file (serving/litert.py on ai-edge-litert, serving/onnx_model.py on ONNX
Runtime) and maps the canonical points back through the same affine. So
`facealign.load`, `facealign predict` and `facealign evaluate` take these
files as they take a SavedModel, with the same Face objects and metrics,
and no TensorFlow is imported.

It answers the two calls serving/model.py's models answer: ``predict(images:
encoded bytes, boxes)``, and ``predict_image(image, boxes)`` on an already
decoded serving.images.Image: the Aligner's call, which crops the decoded
pixels directly (no encoding, no decoding) so that at batch 1 the time is
the network's.
"""
from __future__ import annotations

import pathlib
from collections.abc import Sequence

import cv2
import numpy as np

from facealign.core import crop, geometry, model_paths
from serving.client import Prediction
from serving.errors import ModelError
from serving.images import DECODE_FLAGS, Image


def _runner(path: str, num_threads: int | None):
    if pathlib.Path(path).suffix.lower() == ".onnx":
        from serving.onnx_model import OnnxModel

        return OnnxModel(path, num_threads)
    from serving.litert import LiteRTModel

    return LiteRTModel(path, num_threads)


class CanonicalModel:
    """A single-file export and its sidecar, loaded in this process."""

    remote = False

    def __init__(self, path, num_threads: int | None = None):
        self.path = str(path)
        if not pathlib.Path(self.path).is_file():
            raise ModelError(f"{self.path}: no such model file")
        try:
            self.info = model_paths.read_sidecar(self.path)
        except (OSError, ValueError) as exc:
            raise ModelError(str(exc)) from None
        self.mean_shape = np.asarray(self.info["mean_shape"], np.float64)
        self.image_size = int(self.info["image_size"])
        self.runner = _runner(self.path, num_threads)
        if self.runner.image_size != self.image_size:
            raise ModelError(f"{self.path}: the model takes {self.runner.image_size}-pixel "
                             f"crops, its sidecar says image_size {self.image_size}")

    def to_original(self, boxes) -> np.ndarray:
        """[K, 2, 3] canonical -> image affines: S0 fitted to each box (crop.BoxFit's)."""
        return np.stack([geometry.box_fit_transform(self.mean_shape, box) for box in boxes])

    def _boxes(self, boxes) -> np.ndarray:
        """float64 [K, 4]; what a box holds is checked per instance by _crops, as the graph
        checks it (so the same refusal, in the same words)."""
        try:
            return np.asarray(boxes, np.float64).reshape(-1, 4)
        except (TypeError, ValueError):
            raise self._refuse("boxes: give numbers x0, y0, x1, y1, one box [4] or a list "
                               "[K, 4]") from None

    def _refuse(self, message: str):
        return ModelError(f"{self.path}: the model refused the input: {message}")

    def _crops(self, pixels, boxes, first: int, channel_order: str):
        """(crops [K, S, S], transforms [K, 2, 3]) of one image's boxes, checked as the
        serving graph checks them (instances numbered from `first`)."""
        for index, box in enumerate(boxes, first):
            problem = crop.box_problem(box, pixels.shape)
            if problem is not None:
                shown = " ".join(f"{float(v):g}" for v in box)   # as the graph prints it
                raise self._refuse(f"instance {index}: box [{shown}] {problem}")
        transforms = self.to_original(boxes)
        return crop.crops_numpy(pixels, transforms, self.image_size, channel_order), transforms

    def _run(self, crops, transforms) -> Prediction:
        """One call of the network on all crops; landmarks mapped back to their images."""
        outputs = self.runner.predict(crops)
        finite = (np.isfinite(outputs["landmarks"]).all(axis=(1, 2))
                  & np.isfinite(outputs["stage_spread"]).reshape(-1)
                  & np.isfinite(outputs["landmark_spread"]).all(axis=1))
        if not finite.all():
            raise self._refuse(f"instance {int(np.argmin(finite))}: the predicted landmarks are "
                               "not finite (NaN or infinity)")
        outputs["landmarks"] = geometry.apply_transform(
            transforms, np.asarray(outputs["landmarks"], np.float64)).astype(np.float32)
        return Prediction.from_outputs(outputs)

    def predict_pixels(self, pixels, boxes, channel_order: str = "rgb") -> Prediction:
        """Landmarks in the image's pixels for each box of one uint8 [H, W(, 3)] image."""
        pixels = np.asarray(pixels)
        return self._run(*self._crops(pixels, self._boxes(boxes), 0, channel_order))

    def predict_image(self, image: Image, boxes) -> Prediction:
        """predict_pixels on an Image's decoded pixels: the Aligner's call."""
        return self.predict_pixels(image.bgr, boxes, "bgr")

    def predict(self, images: Sequence[bytes], boxes) -> Prediction:
        """The serving signature's call: one encoded image and one box per face."""
        boxes = self._boxes(boxes)
        if len(images) != len(boxes) or not len(boxes):
            raise self._refuse(f"{len(images)} images and {len(boxes)} boxes: give one box "
                               "per image, at least one")
        decoded: dict[bytes, np.ndarray] = {}   # a photo repeated for its faces: one decode
        crops, transforms = [], []
        for index, (data, box) in enumerate(zip(images, boxes, strict=True)):
            data = bytes(data)
            if data not in decoded:
                pixels = cv2.imdecode(np.frombuffer(data, np.uint8), DECODE_FLAGS) \
                    if data else None
                if pixels is None:
                    raise self._refuse(f"instance {index}: image_bytes is not an image")
                decoded[data] = pixels
            one_crop, one_transform = self._crops(decoded[data], box[None], index, "bgr")
            crops.append(one_crop)
            transforms.append(one_transform)
        return self._run(np.concatenate(crops), np.concatenate(transforms))


def example_landmarks(model: CanonicalModel):
    """The Evaluator's scoring function (components/landmark_evaluator/evaluation.predict)
    for this model: serialized raw tf.Examples -> landmarks [B, N, 2] in the photos' pixels,
    from each example's photo bytes and detector box, as serving_tf_example does."""
    from facealign.core.raw_example import parse_example

    def landmarks(batch: list[bytes]) -> np.ndarray:
        faces = [parse_example(serialized) for serialized in batch]
        return model.predict([face["image"] for face in faces],
                             [face["box"] for face in faces]).landmarks

    return landmarks
