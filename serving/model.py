"""One interface over a facealign model on disk or behind a server.

``open_model("path")`` loads the SavedModel in-process: a version folder, or
a TF Serving base folder whose newest version is taken (versions.py); a
``.tflite`` or ``.onnx`` file from `facealign export` is run by
serving/canonical_model.py without TensorFlow;
``open_model("http://host:8501/v1/models/NAME")`` sends the same request to
TF Serving (or ``facealign serve``) over REST. All have
``predict(images, boxes) -> client.Prediction`` (encoded images) and
``predict_image(image, boxes)`` (one decoded serving.images.Image), and raise
errors.ModelError naming the model when it cannot be opened or refuses the input.
"""
from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

from facealign.core import model_paths
from facealign.core.model_format import SERVING_DEFAULT
from serving import client
from serving.errors import ModelError
from serving.rest import tf_error_summary
from serving.versions import resolve_model_path


class _EncodedImages:
    """predict_image for models whose signature decodes the image itself."""

    def predict_image(self, image, boxes) -> client.Prediction:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        return self.predict([image.data] * len(boxes), boxes)


class SignatureModel(_EncodedImages):
    """A serving_default signature already loaded in this process (the local server's
    version, or LocalModel's); `label` starts its refusals' messages (none: no prefix)."""

    remote = False

    def __init__(self, fn, label: str | None = None):
        import tensorflow as tf

        self._fn, self._label, self._tf = fn, label, tf

    def predict(self, images: Sequence[bytes], boxes) -> client.Prediction:
        tf = self._tf
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        try:
            out = self._fn(image_bytes=tf.constant([bytes(i) for i in images], tf.string),
                           box=tf.constant(boxes))
        except tf.errors.InvalidArgumentError as exc:
            refused = f"the model refused the input: {tf_error_summary(exc.message)}"
            raise ModelError(f"{self._label}: {refused}" if self._label else refused) from None
        return client.Prediction.from_outputs({name: value.numpy() for name, value in out.items()})


class LocalModel(SignatureModel):
    """A facealign SavedModel loaded in this process (its serving_default signature)."""

    def __init__(self, path, signature_name: str = SERVING_DEFAULT):
        folder = resolve_model_path(path)  # before TensorFlow's import: a bad path fails fast
        self.path = str(folder)  # the version folder actually loaded
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(self.path)
            fn = loaded.signatures[signature_name]
        except KeyError:
            raise ModelError(f"{path}: the SavedModel has no {signature_name!r} signature") \
                from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot load the SavedModel ({exc})") from None
        self._loaded = loaded
        super().__init__(fn, self.path)


class RemoteModel(_EncodedImages):
    """A model behind TF Serving's REST API; ServingErrors become ModelErrors."""

    remote = True

    def __init__(self, url: str, timeout: float = 60.0):
        try:
            self._client = client.RestClient.from_url(url, timeout)
        except ValueError as exc:
            raise ModelError(str(exc)) from None
        self.path = url

    def predict(self, images: Sequence[bytes], boxes) -> client.Prediction:
        try:
            return self._client.predict(images, boxes)
        except client.ServingError as exc:
            raise ModelError(f"{exc.url or self.path}: {exc.status}: {exc.message}") from None


def open_model(spec, timeout: float = 60.0, num_threads: int | None = None):
    """A LocalModel for a folder, a CanonicalModel for a .tflite or .onnx file (on
    `num_threads` threads; None: the runtime's default), a RemoteModel for an http(s)://
    model URL."""
    if client.is_model_url(str(spec)):
        return RemoteModel(str(spec), timeout)
    if model_paths.is_model_file(spec):
        from serving.canonical_model import CanonicalModel

        return CanonicalModel(spec, num_threads)
    if not pathlib.Path(spec).exists():
        raise ModelError(f"{spec}: no such model folder or .tflite / .onnx file (or give "
                         "http://host:port/v1/models/NAME)")
    return LocalModel(spec)


def scored_model(spec):
    """What the Evaluator's scoring (evaluation.predict) takes for `spec`: the SavedModel
    folder of a version or base folder (its serving_tf_example signature), a .tflite or
    .onnx export as the function serving/canonical_model.py scores it with."""
    if model_paths.is_model_file(spec):
        from serving.canonical_model import CanonicalModel, example_landmarks

        return example_landmarks(CanonicalModel(spec))
    return str(resolve_model_path(spec))
