"""serving/client.py: the REST client against the local server, its errors and timeouts;
the gRPC client's PredictRequest against the protos and over a real (in-process) gRPC
channel."""
import concurrent.futures
import socket

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from facealign import cli
from facealign.core import geometry
from facealign.core.data.pts import read_pts
from facealign.core.model_format import SERVING_DEFAULT
from serving import client, rest, server
from tests import model_fixtures

NAME = "dan"


@pytest.fixture(scope="module")
def faces(shared_data):
    out = []
    for name in ("samples/lfpw/image_0010.png", "300w/afw/1051618982_1.jpg"):
        path = shared_data / name
        out.append((path.read_bytes(), geometry.bounding_box(read_pts(path.with_suffix(".pts")))
                    .astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def running(shared_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("client-models")
    model_fixtures.export_tiny_dan(base / "3", model_fixtures.afw_mean_shape(shared_data))
    local = server.LocalServer(base, NAME, "127.0.0.1", 0, poll_seconds=5).start()
    yield local, tf.saved_model.load(str(base / "3")).signatures[SERVING_DEFAULT]
    local.stop()


def expected(signature, faces):
    out = signature(image_bytes=tf.constant([f[0] for f in faces]),
                    box=tf.constant(np.stack([f[1] for f in faces])))
    return out["landmarks"].numpy(), out["stage_spread"].numpy()


def test_rest_client_predicts_in_both_forms(running, faces):
    local, signature = running
    landmarks, spread = expected(signature, faces)
    rest = client.RestClient.from_url(local.model_url)
    for columnar in (False, True):
        result = rest.predict([f[0] for f in faces], [f[1] for f in faces], columnar=columnar)
        assert result.landmarks.shape == (2, 68, 2) and result.landmarks.dtype == np.float32
        np.testing.assert_allclose(result.landmarks, landmarks, atol=1e-3)
        np.testing.assert_allclose(result.stage_spread, spread, atol=1e-6)
    assert rest.status()["model_version_status"][0]["version"] == "3"
    assert client.RestClient.from_url(local.model_url + "/versions/3").metadata()[
        "model_spec"]["version"] == "3"


def test_rest_errors(running, faces):
    local, _ = running
    with pytest.raises(client.ServingError) as info:
        client.RestClient(local.url, "nobody").predict([faces[0][0]], faces[0][1])
    assert info.value.status == 404 and "nobody" in info.value.message
    with pytest.raises(client.ServingError) as info:
        client.RestClient(local.url, NAME).predict([b"\x89PNG broken"], faces[0][1])
    assert info.value.status == 400 and "image" in info.value.message.lower()
    with pytest.raises(client.ServingError) as info:
        client.RestClient(local.url, NAME, version=9).status()
    assert info.value.status == 404
    with pytest.raises(ValueError):
        client.RestClient(local.url, NAME).predict([faces[0][0]], [1, 2, 3])


def test_rest_transport_errors():
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        with pytest.raises(client.ServingError) as info:
            client.RestClient(f"http://127.0.0.1:{port}", NAME, timeout=0.5).status()
        assert info.value.status == "DEADLINE_EXCEEDED"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(client.ServingError) as info:
        client.RestClient(f"http://127.0.0.1:{port}", NAME, timeout=5).status()
    assert info.value.status == "UNAVAILABLE"


def test_parse_model_url():
    assert client.parse_model_url("http://h:8501/v1/models/dan") == ("http://h:8501", "dan", None)
    assert client.parse_model_url("https://h/v1/models/dan/versions/12/") == (
        "https://h", "dan", 12)
    for bad in ("http://h:8501/v1/models/", "h:8501/v1/models/dan", "http://h/v2/models/dan"):
        with pytest.raises(ValueError):
            client.parse_model_url(bad)


def test_grpc_predict_request_matches_the_protos(faces):
    request = client.build_predict_request(NAME, [f[0] for f in faces], [f[1] for f in faces],
                                           version=3)
    assert isinstance(request, predict_pb2.PredictRequest)
    assert request.model_spec.name == NAME and request.model_spec.version.value == 3
    assert request.model_spec.signature_name == "serving_default"
    images, boxes = request.inputs["image_bytes"], request.inputs["box"]
    assert images.dtype == tf.string.as_datatype_enum and boxes.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in images.tensor_shape.dim] == [2]
    assert [d.size for d in boxes.tensor_shape.dim] == [2, 4]
    assert list(images.string_val) == [f[0] for f in faces]
    np.testing.assert_allclose(tf.make_ndarray(boxes), np.stack([f[1] for f in faces]))
    unversioned = client.build_predict_request(NAME, [faces[0][0]], faces[0][1])
    assert not unversioned.model_spec.HasField("version")


class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TF Serving's Predict, in-process, over the same SavedModel signature."""

    def __init__(self, signature):
        self.signature = signature

    def Predict(self, request, context):
        if request.model_spec.name != NAME:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"Servable not found: {request.model_spec.name}")
        try:
            out = self.signature(**{k: tf.constant(tf.make_ndarray(v))
                                    for k, v in request.inputs.items()})
        except tf.errors.InvalidArgumentError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, rest.tf_error_summary(exc.message))
        response = predict_pb2.PredictResponse()
        for key, value in out.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response


def test_grpc_client_round_trip_and_errors(running, faces):
    _, signature = running
    grpc_server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(signature),
                                                                        grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        with client.GrpcClient(f"127.0.0.1:{port}", NAME, timeout=60) as remote:
            result = remote.predict([f[0] for f in faces], [f[1] for f in faces])
            landmarks, spread = expected(signature, faces)
            np.testing.assert_allclose(result.landmarks, landmarks, atol=1e-4)
            np.testing.assert_allclose(result.stage_spread, spread, atol=1e-6)
            with pytest.raises(client.ServingError) as info:
                remote.predict([b"garbage"], faces[0][1])
            assert info.value.status == "INVALID_ARGUMENT" and "image" in info.value.message
        with client.GrpcClient(f"127.0.0.1:{port}", "other", timeout=60) as remote:
            with pytest.raises(client.ServingError) as info:
                remote.predict([faces[0][0]], faces[0][1])
            assert info.value.status == "NOT_FOUND"
    finally:
        grpc_server.stop(0)


def test_predict_command_over_rest(running, shared_data, tmp_path, capsys):
    local, signature = running
    image = shared_data / "samples" / "lfpw" / "image_0010.png"
    box = geometry.bounding_box(read_pts(image.with_suffix(".pts")))
    out = tmp_path / "out.json"
    code = cli.main(["predict", "--model", local.model_url, str(image), "--json", str(out),
                     "--box", ",".join(f"{v:.2f}" for v in box)])
    assert code == 0
    import json

    (result,) = json.loads(out.read_text())["results"]
    landmarks, _ = expected(signature, [(image.read_bytes(), np.round(box, 2).astype(np.float32))])
    np.testing.assert_allclose(result["landmarks"], landmarks[0], atol=0.01)
    code = cli.main(["predict", "--model", local.url + "/v1/models/missing", str(image),
                     "--box", "1,1,50,50"])
    assert code == 2 and "404" in capsys.readouterr().err
