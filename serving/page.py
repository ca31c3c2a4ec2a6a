"""The try-it page of `facealign serve` at `/`, and the server's own endpoints it calls.

- ``GET  /``                    the page (serving/static/index.html): choose or drop a photo,
                                see its faces' boxes and landmarks drawn as SVG
- ``GET  /facealign/v1/info``   the served model: name, version, kind, landmark count, the
                                body limit
- ``POST /facealign/v1/align``  an image file as the body (JPEG, PNG, BMP, GIF, PPM...) ->
                                every face the detector finds: box, landmarks,
                                landmark_spread, stage_spread, and a JPEG preview of the
                                photo that any browser shows

These are the server's own, beside TF Serving's REST API (which stays as it is): they
detect faces (serving/detector.py, BlazeFace) before calling the served version's
serving_default signature, as `facealign predict` does. Bad input is a 4xx answer with
TF Serving's ``{"error": ...}`` body naming the reason, which the page shows.
"""
from __future__ import annotations

import base64
import importlib.resources
import threading

import cv2
import numpy as np

from facealign.core.model_format import SERVING_DEFAULT
from serving import detector as face_detector
from serving.aligner import Aligner
from serving.errors import DetectorUnavailable, ImageError, ModelError
from serving.images import load_image
from serving.model import SignatureModel
from serving.rest import RequestError
from serving.versions import LoadedVersion

PAGE_PATH = "/"
INFO_PATH = "/facealign/v1/info"
ALIGN_PATH = "/facealign/v1/align"
PREVIEW_SIDE = 1600   # the preview's longer side at most (px); landmarks stay in photo pixels


def page_html() -> bytes:
    return importlib.resources.files("serving").joinpath("static/index.html").read_bytes()


def model_info(name: str, version: LoadedVersion, max_body_bytes: int) -> dict:
    """What the page says about the served model."""
    metadata = version.metadata or {}
    kind = metadata.get("model") or "unknown"
    stages = metadata.get("stages")
    return {"name": name, "version": version.version, "kind": kind,
            "stages": stages, "num_landmarks": metadata.get("num_landmarks"),
            # one stage (the AAN, a 1-stage DAN): the points' spread is zero by construction
            "spread_is_zero": kind == "aan" or stages == 1,
            "max_body_bytes": max_body_bytes}


class PageAligner:
    """Detection and alignment for the page's requests; the detector is created once."""

    def __init__(self, detector: str | None = None):
        self._detector_name = detector
        self._detector = None
        self._lock = threading.Lock()

    def _shared_detector(self):
        with self._lock:
            if self._detector is None:
                self._detector = face_detector.create(self._detector_name)
            return self._detector

    def align(self, name: str, version: LoadedVersion, body: bytes,
              max_body_bytes: int) -> dict:
        """The answer to POST /facealign/v1/align (blocking: run it in a worker thread)."""
        if not body:
            raise RequestError(400, "the request holds no image: send the photo's file as the "
                                    "body")
        try:
            image = load_image(body, ".png")
        except ImageError as exc:
            message = str(exc).replace("<bytes>: ", "")
            if "not an image OpenCV can decode" in message:
                message = ("the file is not an image (JPEG, PNG, BMP, GIF, WebP, PPM or TIFF "
                           "expected)")
            raise RequestError(400, message) from None
        try:
            model = SignatureModel(version.signatures[SERVING_DEFAULT])
            aligner = Aligner(model, detector=self._shared_detector())
            faces = aligner.align(image)
        except DetectorUnavailable as exc:
            raise RequestError(500, f"no face detector on this server: {exc}") from None
        except ModelError as exc:
            raise RequestError(400, str(exc).replace("<bytes>: ", "")) from None
        height, width = image.bgr.shape[:2]
        return {"model": model_info(name, version, max_body_bytes),
                "image": {"width": width, "height": height, "preview": _preview(image.bgr)},
                "faces": [{"box": face.box.round(2).tolist(),
                           "landmarks": face.landmarks.round(2).tolist(),
                           "stage_spread": round(float(face.stage_spread), 5),
                           "landmark_spread": None if face.landmark_spread is None
                           else face.landmark_spread.round(5).tolist()}
                          for face in faces],
                "message": "" if faces else "no face found in this image"}


def _preview(bgr: np.ndarray) -> str:
    """A JPEG data URL of the photo, its longer side at most PREVIEW_SIDE."""
    scale = PREVIEW_SIDE / max(bgr.shape[:2])
    if scale < 1:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RequestError(500, "the preview could not be encoded")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")
