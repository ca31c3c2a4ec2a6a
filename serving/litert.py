"""Runs a LiteRT (.tflite) landmark model written by `facealign export --format tflite`.

The model is the SavedModel's predict_canonical (trainer/litert_export.py):
uint8 canonical crops [B, S, S, 1] in; ``landmarks`` [B, N, 2] in canonical
pixels, ``stage_spread`` [B] and ``landmark_spread`` [B, N] out. It runs on the ai-edge-litert
interpreter (the standalone LiteRT runtime, not TensorFlow's deprecated
tf.lite.Interpreter), whose CPU default is the XNNPACK delegate.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from serving.errors import ModelError


class LiteRTModel:
    """A .tflite landmark model loaded in this process; predict() takes a batch of any size."""

    def __init__(self, path, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = os.fspath(path)
        if not pathlib.Path(self.path).is_file():
            raise ModelError(f"{self.path}: no such .tflite file")
        try:
            self._interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
            self._runner = self._interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.path}: cannot load the LiteRT model ({exc})") from None
        image = self._runner.get_input_details()["image"]
        self.image_size = int(image["shape_signature"][1])

    def predict(self, crops) -> dict[str, np.ndarray]:
        """The model's outputs (landmarks [B, N, 2], ...) for uint8 crops [B, S, S(, 1)]."""
        crops = checked_crops(crops, self.image_size, self.path)
        return {key: np.asarray(value) for key, value in self._runner(image=crops).items()}


def checked_crops(crops, size: int, path: str) -> np.ndarray:
    """uint8 [B, size, size, 1] from [B, size, size(, 1)], the input every export takes
    (serving/onnx_model.py's too); ModelError naming `path` otherwise."""
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[..., None]
    if crops.dtype != np.uint8 or crops.shape[1:] != (size, size, 1):
        raise ModelError(f"{path}: expects uint8 crops [B, {size}, {size}, 1], got "
                         f"{crops.dtype} {list(crops.shape)}")
    return crops

