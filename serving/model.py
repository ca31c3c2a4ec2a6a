"""One interface over a facealign model on disk or behind a server, and image helpers.

``open_model("path/to/savedmodel")`` loads the SavedModel in-process;
``open_model("http://host:8501/v1/models/NAME")`` sends the same request to
TF Serving (or ``facealign serve``) over REST. Both have
``predict(images, boxes) -> client.Prediction``.
"""
from __future__ import annotations

import pathlib
from typing import Sequence

import cv2
import numpy as np

from facealign.errors import UserError
from serving import client

# formats tf.io.decode_image reads; anything else OpenCV reads is sent re-encoded as PNG
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def read_image(path) -> tuple[bytes, np.ndarray]:
    """(bytes the model can decode, BGR uint8 image) of an image file; UserError if unreadable."""
    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise UserError(f"{path}: not an image OpenCV can decode")
    if not data.startswith(_MAGIC):
        data = encode_image(image, ".png")
    return data, image


def encode_image(image: np.ndarray, ext: str = ".bmp", quality: int = 95) -> bytes:
    """BGR/gray uint8 -> encoded bytes (.bmp: lossless and fastest; .jpg: smallest)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"OpenCV cannot encode an image as {ext}")
    return encoded.tobytes()


def parse_box(text: str) -> np.ndarray:
    """'x0,y0,x1,y1' -> float32 [4]; UserError unless 4 numbers with x1 > x0 and y1 > y0."""
    try:
        values = [float(v) for v in str(text).replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not np.all(np.isfinite(values)):
        raise UserError(f"--box {text!r}: give four numbers x0,y0,x1,y1 (pixels)")
    if values[2] <= values[0] or values[3] <= values[1]:
        raise UserError(f"--box {text!r}: x1 must exceed x0 and y1 must exceed y0")
    return np.asarray(values, np.float32)


class LocalModel:
    """A facealign SavedModel loaded in this process (its serving_default signature)."""

    def __init__(self, path, signature_name: str = client.DEFAULT_SIGNATURE):
        import tensorflow as tf

        self.path = str(path)
        if not (pathlib.Path(path) / "saved_model.pb").is_file():
            hint = ""
            versions = sorted((p for p in pathlib.Path(path).glob("*")
                               if p.name.isdigit() and (p / "saved_model.pb").is_file()),
                              key=lambda p: int(p.name))
            if versions:
                hint = f" (it holds model versions: use {versions[-1]})"
            raise UserError(f"{path}: not a SavedModel folder{hint}")
        try:
            loaded = tf.saved_model.load(self.path)
            self._fn = loaded.signatures[signature_name]
        except KeyError:
            raise UserError(f"{path}: the SavedModel has no {signature_name!r} signature") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: cannot load the SavedModel ({exc})") from None
        self._loaded = loaded
        self._tf = tf

    def predict(self, images: Sequence[bytes], boxes) -> client.Prediction:
        tf = self._tf
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        try:
            out = self._fn(image_bytes=tf.constant([bytes(i) for i in images], tf.string),
                           box=tf.constant(boxes))
        except tf.errors.InvalidArgumentError as exc:
            from serving.server import tf_error_summary

            raise UserError(f"the model refused the input: {tf_error_summary(exc.message)}") \
                from None
        return client.Prediction(out["landmarks"].numpy(), out["stage_spread"].numpy())


class RemoteModel:
    """A model behind TF Serving's REST API; ServingErrors become UserErrors."""

    def __init__(self, url: str, timeout: float = 60.0):
        try:
            self._client = client.RestClient.from_url(url, timeout)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        self.path = url

    def predict(self, images: Sequence[bytes], boxes) -> client.Prediction:
        try:
            return self._client.predict(images, boxes)
        except client.ServingError as exc:
            raise UserError(f"{exc.url or self.path}: {exc.status}: {exc.message}") from None


def open_model(spec: str, timeout: float = 60.0):
    """A LocalModel for a folder, a RemoteModel for an http(s):// model URL."""
    if client.is_model_url(spec):
        return RemoteModel(spec, timeout)
    if not pathlib.Path(spec).exists():
        raise UserError(f"{spec}: no such model folder (or give http://host:port/v1/models/NAME)")
    return LocalModel(spec)


def draw(image: np.ndarray, landmarks, box=None, colour=(0, 255, 0)) -> np.ndarray:
    """A copy of the BGR image with the points (and the box) drawn on it."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    radius = max(1, round(max(out.shape[:2]) / 300))
    if box is not None:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 128, 0), max(1, radius))
    for x, y in np.asarray(landmarks, np.float64).reshape(-1, 2):
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(out, (int(round(x)), int(round(y))), radius, colour, -1, cv2.LINE_AA)
    return out
