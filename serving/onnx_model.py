"""Runs an ONNX landmark model written by `facealign export --format onnx`, on ONNX Runtime.

The twin of serving/litert.py's LiteRTModel for the other single-file export:
the same network on canonical crops (trainer/onnx_export.py), the same
``predict(crops) -> {landmarks, stage_spread, landmark_spread}``, on ONNX
Runtime's CPU execution provider.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from serving.errors import ModelError
from serving.litert import checked_crops


class OnnxModel:
    """A .onnx landmark model loaded in this process; predict() takes a batch of any size."""

    def __init__(self, path, num_threads: int | None = None):
        import onnxruntime

        self.path = os.fspath(path)
        if not pathlib.Path(self.path).is_file():
            raise ModelError(f"{self.path}: no such .onnx file")
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        try:
            self._session = onnxruntime.InferenceSession(
                self.path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
            raise ModelError(f"{self.path}: cannot load the ONNX model ({exc})") from None
        inputs = {i.name: i for i in self._session.get_inputs()}
        if "image" not in inputs:
            raise ModelError(f"{self.path}: not a facealign export (inputs {sorted(inputs)}, "
                             "expected 'image')")
        self.image_size = int(inputs["image"].shape[1])
        self._outputs = [o.name for o in self._session.get_outputs()]

    def predict(self, crops) -> dict[str, np.ndarray]:
        """The model's outputs (landmarks [B, N, 2], ...) for uint8 crops [B, S, S(, 1)]."""
        crops = checked_crops(crops, self.image_size, self.path)
        values = self._session.run(self._outputs, {"image": crops})
        return dict(zip(self._outputs, values, strict=True))
