"""Clients for a served facealign model: TF Serving's REST API and its gRPC PredictionService.

Both send encoded images (JPEG/PNG/BMP/GIF bytes) with one face box each
(x0, y0, x1, y1 pixels) to the ``serving_default`` signature and return a
:class:`Prediction` of numpy arrays: landmarks [B, N, 2] in image pixels,
stage_spread [B] and landmark_spread [B, N] (None from a model exported before
it had that output). They work against TF Serving itself and against
``facealign serve`` (serving/server.py), which speaks the same REST API.

Every failure is a :class:`ServingError` carrying ``status`` and the
server's ``message``: the HTTP status code (an int) for a REST answer, the
gRPC status code's name (a str, e.g. "INVALID_ARGUMENT") for gRPC; transport
problems use the gRPC names on both: "UNAVAILABLE" (cannot connect),
"DEADLINE_EXCEEDED" (timeout).

REST uses the standard library's urllib (no extra dependency); TensorFlow is
imported only by the gRPC client (for tf.make_tensor_proto / make_ndarray).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence

import numpy as np

from facealign.core.model_format import SERVING_DEFAULT

_MODEL_URL = re.compile(
    r"^(?P<base>https?://[^/]+)/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?/?$")


class ServingError(Exception):
    """A request the model server refused or could not answer."""

    def __init__(self, status, message: str, url: str | None = None):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.url = url


@dataclasses.dataclass
class Prediction:
    landmarks: np.ndarray     # float32 [B, N, 2], image pixels
    stage_spread: np.ndarray  # float32 [B]
    # float32 [B, N]: each point's move between the last two stages / face size (0: one
    # stage); None when the model predates the output
    landmark_spread: np.ndarray | None = None

    @classmethod
    def from_outputs(cls, outputs: dict) -> Prediction:
        """From a serving signature's outputs as numpy arrays (landmark_spread optional)."""
        landmarks = np.asarray(outputs["landmarks"], np.float32)
        spread = outputs.get("landmark_spread")
        return cls(landmarks, np.asarray(outputs["stage_spread"], np.float32).reshape(-1),
                   None if spread is None
                   else np.asarray(spread, np.float32).reshape(landmarks.shape[:2]))


def is_model_url(text: str) -> bool:
    return str(text).startswith(("http://", "https://"))


def parse_model_url(url: str) -> tuple[str, str, int | None]:
    """(base URL, model name, version or None) of http://host:port/v1/models/NAME[/versions/V]."""
    match = _MODEL_URL.match(str(url).strip())
    if not match:
        raise ValueError(f"{url!r} is not a model URL like http://host:8501/v1/models/NAME "
                         "[/versions/N]")
    version = match["version"]
    return match["base"], match["name"], int(version) if version is not None else None


def _as_boxes(boxes, count: int) -> np.ndarray:
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.shape != (count, 4):
        raise ValueError(f"need one box (x0, y0, x1, y1) per image: {count} images, boxes of "
                         f"shape {list(boxes.shape)}")
    return boxes


class RestClient:
    """TF Serving's REST API: status, metadata and predict of one model."""

    def __init__(self, base_url: str, model_name: str, version: int | None = None,
                 timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.version = version
        self.timeout = float(timeout)

    @classmethod
    def from_url(cls, url: str, timeout: float = 30.0) -> RestClient:
        base, name, version = parse_model_url(url)
        return cls(base, name, version, timeout)

    @property
    def model_url(self) -> str:
        url = f"{self.base_url}/v1/models/{self.model_name}"
        return url if self.version is None else f"{url}/versions/{self.version}"

    def status(self) -> dict:
        """GET /v1/models/NAME[/versions/V]: {"model_version_status": [...]}."""
        return self._call("GET", self.model_url)

    def metadata(self) -> dict:
        """GET .../metadata: the model spec and its signature defs."""
        return self._call("GET", self.model_url + "/metadata")

    def predict_json(self, body: dict) -> dict:
        """POST .../:predict with any TF Serving request body; the decoded JSON answer."""
        return self._call("POST", self.model_url + ":predict", body)

    def predict(self, images: Sequence[bytes], boxes, signature_name: str = SERVING_DEFAULT,
                columnar: bool = False) -> Prediction:
        """Landmarks of one face per image; `columnar` sends TF Serving's "inputs" form."""
        images = [bytes(image) for image in images]
        boxes = _as_boxes(boxes, len(images))
        encoded = [{"b64": base64.b64encode(image).decode("ascii")} for image in images]
        if columnar:
            body = {"signature_name": signature_name,
                    "inputs": {"image_bytes": encoded, "box": boxes.tolist()}}
        else:
            body = {"signature_name": signature_name,
                    "instances": [{"image_bytes": image, "box": box}
                                  for image, box in zip(encoded, boxes.tolist())]}
        return parse_rest_prediction(self.predict_json(body), len(images))

    def _call(self, method: str, url: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise ServingError(exc.code, _error_message(exc), url) from None
        except TimeoutError as exc:
            raise ServingError("DEADLINE_EXCEEDED",
                               f"no answer within {self.timeout:g} s ({exc})", url) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise ServingError("DEADLINE_EXCEEDED",
                                   f"no answer within {self.timeout:g} s", url) from None
            raise ServingError("UNAVAILABLE", f"cannot reach {url}: {exc.reason}", url) from None
        except (ConnectionError, OSError) as exc:
            raise ServingError("UNAVAILABLE", f"connection to {url} failed: {exc}", url) from None
        try:
            return json.loads(text)
        except ValueError:
            raise ServingError(200, f"the server's answer is not JSON: {text[:200]!r}",
                               url) from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    """TF Serving's {"error": "..."} message, else the body's start, else the reason."""
    try:
        body = exc.read()
    except OSError:
        body = b""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip()
        return text[:500] or str(exc.reason)


def parse_rest_prediction(answer: dict, count: int | None = None) -> Prediction:
    """A Prediction from a REST predict answer, row ("predictions") or columnar ("outputs")."""
    try:
        if "predictions" in answer:
            rows = answer["predictions"]
            landmarks = np.array([row["landmarks"] for row in rows], np.float32)
            spread = np.array([row["stage_spread"] for row in rows], np.float32)
            per_point = ([row["landmark_spread"] for row in rows]
                         if rows and all("landmark_spread" in row for row in rows) else None)
        else:
            outputs = answer["outputs"]
            landmarks = np.array(outputs["landmarks"], np.float32)
            spread = np.array(outputs["stage_spread"], np.float32)
            per_point = outputs.get("landmark_spread")
        if per_point is not None:
            per_point = np.array(per_point, np.float32)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        keys = sorted(answer) if isinstance(answer, dict) else answer
        raise ServingError(200, f"unexpected predict answer ({type(exc).__name__}: {exc}); "
                                f"keys: {keys!r}") from None
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2 or (count is not None
                                                          and len(landmarks) != count):
        raise ServingError(200, f"unexpected landmarks of shape {list(landmarks.shape)}")
    if per_point is not None and per_point.shape != landmarks.shape[:2]:
        raise ServingError(200, f"unexpected landmark_spread of shape {list(per_point.shape)} "
                                f"for landmarks of shape {list(landmarks.shape)}")
    return Prediction(landmarks, spread.reshape(-1), per_point)


# --- gRPC ----------------------------------------------------------------------------------

def build_predict_request(model_name: str, images: Sequence[bytes], boxes,
                          signature_name: str = SERVING_DEFAULT, version: int | None = None):
    """The PredictRequest for serving_default: image_bytes DT_STRING [B], box DT_FLOAT [B, 4]."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    images = [bytes(image) for image in images]
    boxes = _as_boxes(boxes, len(images))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs["image_bytes"].CopyFrom(
        tf.make_tensor_proto(images, dtype=tf.string, shape=[len(images)]))
    request.inputs["box"].CopyFrom(tf.make_tensor_proto(boxes, dtype=tf.float32))
    return request


def parse_predict_response(response) -> Prediction:
    import tensorflow as tf

    try:
        return Prediction.from_outputs({name: tf.make_ndarray(response.outputs[name])
                                        for name in response.outputs})
    except (KeyError, ValueError, TypeError) as exc:
        raise ServingError("INTERNAL", f"unexpected PredictResponse ({exc}); outputs: "
                                       f"{sorted(response.outputs)}") from None


class GrpcClient:
    """TF Serving's gRPC PredictionService (port 8500 by default)."""

    def __init__(self, target: str, model_name: str, version: int | None = None,
                 timeout: float = 30.0, max_message_bytes: int = 64 * 2**20):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.target = target
        self.model_name = model_name
        self.version = version
        self.timeout = float(timeout)
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def predict(self, images: Sequence[bytes], boxes,
                signature_name: str = SERVING_DEFAULT) -> Prediction:
        import grpc

        request = build_predict_request(self.model_name, images, boxes, signature_name,
                                        self.version)
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise ServingError(code.name if code is not None else "UNKNOWN", details or "",
                               self.target) from None
        return parse_predict_response(response)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
