"""Images into the model and drawings out of it.

The serving signature takes encoded bytes and decodes JPEG, PNG, BMP and GIF
(tf.io.decode_image), so every input becomes such bytes: files and bytes in
those formats go as they are (the model sees exactly the file), other formats
OpenCV reads (PPM, TIFF, WebP...) and numpy arrays are encoded losslessly
(BMP: fastest; PNG: smaller, for a request over the network). Arrays are RGB,
as most Python image libraries give them; OpenCV's BGR order stays behind
:class:`Image` (the detector and the drawings use it).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib

import cv2
import numpy as np

from serving.errors import ImageError

# formats tf.io.decode_image reads; anything else OpenCV reads is sent re-encoded
_PNG = b"\x89PNG\r\n\x1a\n"
_MAGIC = (b"\xff\xd8\xff", _PNG, b"GIF87a", b"GIF89a", b"BM")
# tf.io.decode_image ignores a JPEG's EXIF orientation, so the detector (and the .tflite/.onnx
# models' crop) must see the pixels as stored too, or their boxes miss the model's face
DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
# The most pixels an encoded image may declare: a few bytes can declare 30000 x 30000 pixels
# (2.7 GB decoded), which OpenCV would try to allocate; no face photo needs more than this
MAX_IMAGE_PIXELS = 50_000_000


@dataclasses.dataclass(frozen=True)
class Image:
    """One image, for OpenCV (`bgr`) and for the model (`data`, encoded on first use)."""

    name: str            # the path, or "<bytes>" / "<array>": what error messages call it
    bgr: np.ndarray      # uint8 [H, W, 3], BGR
    encoded: bytes | None = None   # the file's own bytes, where the signature decodes them
    encoding: str = ".bmp"         # how `bgr` is encoded when there are none

    @functools.cached_property
    def data(self) -> bytes:
        """JPEG/PNG/BMP/GIF bytes the serving signature decodes: the file's own, or `bgr`
        encoded losslessly. Only a SavedModel or a server needs them: a .tflite or .onnx
        model (serving/canonical_model.py) crops `bgr` directly, and never pays for this."""
        return self.encoded if self.encoded is not None else encode_image(self.bgr, self.encoding)

    @property
    def shape(self) -> tuple[int, int]:
        return self.bgr.shape[:2]


def load_image(image, encoding: str = ".png") -> Image:
    """An Image from a path (str or os.PathLike), encoded bytes, or a uint8 numpy array
    ([H, W] gray, [H, W, 3] RGB or [H, W, 4] RGBA). ImageError names what is wrong."""
    if isinstance(image, Image):
        return image
    if isinstance(image, np.ndarray):
        return from_rgb(image, encoding)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _from_encoded(bytes(image), "<bytes>", encoding)
    if isinstance(image, (str, os.PathLike)):
        path = pathlib.Path(image)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return _from_encoded(data, str(path), encoding)
    raise ImageError(f"image of type {type(image).__name__}: give a path, encoded bytes or a "
                     "uint8 numpy array")


def check_declared_size(data: bytes, name: str) -> None:
    """ImageError when the encoded image's header declares more than MAX_IMAGE_PIXELS,
    read before anything decodes (and allocates) its pixels."""
    import io
    import struct

    if data.startswith(_PNG) and data[12:16] == b"IHDR" and len(data) >= 24:
        size = struct.unpack(">II", data[16:24])
    else:
        from PIL import Image as PilImage

        try:
            with PilImage.open(io.BytesIO(data)) as header:
                size = header.size
        except PilImage.DecompressionBombError:   # Pillow's own limit, far over ours
            over = 2 * PilImage.MAX_IMAGE_PIXELS / 1e6
            raise ImageError(f"{name}: the image declares over {over:.0f} MP; the most is "
                             f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP") from None
        except Exception:   # a format Pillow does not know: OpenCV may, and says if not
            return
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ImageError(f"{name}: the image declares {size[0]} x {size[1]} pixels "
                         f"({size[0] * size[1] / 1e6:.0f} MP); the most is "
                         f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP")


def _from_encoded(data: bytes, name: str, encoding: str) -> Image:
    if data:
        check_declared_size(data, name)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), DECODE_FLAGS) if data else None
    if bgr is None:
        raise ImageError(f"{name}: not an image OpenCV can decode")
    return Image(name, bgr, data if data.startswith(_MAGIC) else None, encoding)


def from_rgb(array: np.ndarray, encoding: str = ".bmp", name: str = "<array>") -> Image:
    """An Image from a uint8 [H, W], [H, W, 1], [H, W, 3] (RGB) or [H, W, 4] (RGBA) array."""
    array = np.asarray(array)
    channels = 1 if array.ndim == 2 else array.shape[-1] if array.ndim == 3 else 0
    if channels not in (1, 3, 4) or min(array.shape[:2], default=0) < 1:
        raise ImageError(f"{name} of shape {list(array.shape)}: give [H, W] gray, [H, W, 3] "
                         "RGB or [H, W, 4] RGBA pixels")
    if array.dtype != np.uint8:
        raise ImageError(f"{name} of dtype {array.dtype}: give uint8 pixels (0-255)")
    code = {1: cv2.COLOR_GRAY2BGR, 3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGR}[channels]
    return from_bgr(cv2.cvtColor(np.ascontiguousarray(array), code), encoding, name)


def from_bgr(bgr: np.ndarray, encoding: str = ".bmp", name: str = "<frame>") -> Image:
    """An Image from an OpenCV BGR uint8 [H, W, 3] array (a video frame)."""
    return Image(name, bgr, None, encoding)


def encode_image(image: np.ndarray, ext: str = ".bmp", quality: int = 95) -> bytes:
    """BGR/gray uint8 -> encoded bytes (.bmp: lossless and fastest; .jpg: smallest)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"OpenCV cannot encode an image as {ext}")
    return encoded.tobytes()


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
