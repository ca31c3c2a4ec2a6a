"""`landmark_spread`, the per-landmark confidence of the exported signatures: each point's
distance between the last two stages over S0's box diagonal (stage_spread is its mean; zeros
for the one-stage AAN), in all three signatures, the metadata, the REST answers and the
clients; and models exported before it (model_fixtures.export_legacy_aan) keep working
everywhere."""
import base64
import csv

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

import facealign
from facealign.core import examples as names
from facealign.core import model_format
from facealign.core.config import AanConfig
from facealign.core.model_format import PREDICT_CANONICAL, SERVING_DEFAULT, SIGNATURES, TF_EXAMPLE
from serving import client, server
from tests import model_fixtures
from trainer import export
from trainer.aan_model import build_aan_model, inference_model

SIZE = model_fixtures.SIZE


@pytest.fixture(scope="module")
def faces(shared_data):
    """[(JPEG bytes, box float32 [4])] of three real AFW faces with their detector boxes."""
    root = shared_data / "300w"
    with open(root / "boxes" / "afw.csv") as handle:
        rows = list(csv.DictReader(handle))[:3]
    return [((root / row["image"]).read_bytes(),
             np.array([float(row[k]) for k in ("x0", "y0", "x1", "y1")], np.float32))
            for row in rows]


@pytest.fixture(scope="module")
def dan(shared_data, tmp_path_factory):
    """(S0, keras model, base folder, loaded version 1) of a tiny real 2-stage DAN."""
    base = tmp_path_factory.mktemp("spread-models")
    s0 = model_fixtures.afw_mean_shape(shared_data)
    model, path = model_fixtures.export_tiny_dan(base / "1", s0)
    return s0, model, base, tf.saved_model.load(path)


def default(loaded, faces):
    out = loaded.signatures[SERVING_DEFAULT](image_bytes=tf.constant([f[0] for f in faces]),
                                               box=tf.constant(np.stack([f[1] for f in faces])))
    return {name: value.numpy() for name, value in out.items()}


def tf_examples(faces):
    return [tf.train.Example(features=tf.train.Features(feature={
        names.RAW_IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        names.RAW_BOX: tf.train.Feature(float_list=tf.train.FloatList(value=box.tolist()))}))
        .SerializeToString() for image, box in faces]


# --- the signatures ----------------------------------------------------------------------------

def test_every_signature_returns_landmark_spread(dan, faces):
    _, _, _, loaded = dan
    for name in SIGNATURES:
        outputs = loaded.signatures[name].structured_outputs
        assert set(outputs) == {"landmarks", "stage_spread", "landmark_spread"}, name
        assert outputs["landmark_spread"].dtype == tf.float32
        assert outputs["landmark_spread"].shape.as_list() == [None, 68]
    photos = default(loaded, faces)
    examples = {name: value.numpy() for name, value in loaded.signatures[TF_EXAMPLE](
        examples=tf.constant(tf_examples(faces))).items()}
    assert photos["landmark_spread"].shape == (len(faces), 68)
    np.testing.assert_allclose(examples["landmark_spread"], photos["landmark_spread"],
                               rtol=1e-5, atol=1e-7)
    # stage_spread is the mean of landmark_spread over the landmarks
    for out in (photos, examples):
        np.testing.assert_allclose(out["landmark_spread"].mean(axis=1), out["stage_spread"],
                                   rtol=1e-5, atol=1e-9)
    # a per-point measure: the untrained stages disagree more on some points than on others
    assert np.all(photos["landmark_spread"] >= 0)
    assert np.all(np.ptp(photos["landmark_spread"], axis=1) > 0)


def test_landmark_spread_is_each_points_move_between_the_last_two_stages(dan):
    s0, model, _, loaded = dan
    crops = np.random.default_rng(3).integers(0, 256, (4, SIZE, SIZE, 1), np.uint8)
    out = loaded.signatures[PREDICT_CANONICAL](image=tf.constant(crops))
    stages = model(crops, training=False)
    diagonal = np.linalg.norm(s0.max(0) - s0.min(0))
    expected = np.linalg.norm(stages["stage_2"].numpy() - stages["stage_1"].numpy(),
                              axis=-1) / diagonal
    np.testing.assert_allclose(out["landmark_spread"].numpy(), expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out["landmark_spread"].numpy().mean(axis=1),
                               out["stage_spread"].numpy(), rtol=1e-5, atol=1e-9)


def test_a_one_stage_aan_gives_zeros(shared_data, faces, tmp_path):
    s0 = model_fixtures.afw_mean_shape(shared_data)
    flat = np.full((SIZE, SIZE), 120.0, np.float32)
    aan = inference_model(build_aan_model(s0, flat, flat / 2,
                                          AanConfig(base_filters=2, embedding_dim=8)))
    export.export_saved_model(aan, s0, str(tmp_path / "aan"))
    loaded = tf.saved_model.load(str(tmp_path / "aan"))
    out = default(loaded, faces)
    assert out["landmark_spread"].shape == (len(faces), 68)
    np.testing.assert_array_equal(out["landmark_spread"], np.zeros((len(faces), 68), np.float32))
    np.testing.assert_array_equal(out["stage_spread"], np.zeros(len(faces), np.float32))
    assert model_format.ModelMetadata.read(tmp_path / "aan").stages == 1


def test_metadata_lists_the_output(dan):
    _, _, base, _ = dan
    signatures = model_format.ModelMetadata.read(base / "1").signatures
    for name in SIGNATURES:
        assert signatures[name]["outputs"]["landmark_spread"] == {"dtype": "float32",
                                                                  "shape": [-1, 68]}


# --- REST, the clients and the Python API ----------------------------------------------------

@pytest.fixture(scope="module")
def running(dan):
    _, _, base, _ = dan
    local = server.LocalServer(base, "dan", "127.0.0.1", 0, poll_seconds=60, warmup=False).start()
    yield local
    local.stop()


def test_rest_answers_and_the_clients_carry_it(running, dan, faces):
    _, _, _, loaded = dan
    expected = default(loaded, faces)
    rest = client.RestClient.from_url(running.model_url)
    answer = rest.predict_json({"instances": [
        {"image_bytes": {"b64": base64.b64encode(f[0]).decode()},
         "box": f[1].tolist()} for f in faces]})
    assert set(answer["predictions"][0]) == {"landmarks", "stage_spread", "landmark_spread"}
    assert len(answer["predictions"][0]["landmark_spread"]) == 68
    for columnar in (False, True):
        result = rest.predict([f[0] for f in faces], [f[1] for f in faces], columnar=columnar)
        assert result.landmark_spread.shape == (len(faces), 68)
        assert result.landmark_spread.dtype == np.float32
        np.testing.assert_allclose(result.landmark_spread, expected["landmark_spread"],
                                   atol=1e-6)
    # the Python API over REST: one Face per box, with its points' spreads
    aligner = facealign.load(running.model_url)
    image, box = faces[0]
    (face,) = aligner.align(image, boxes=box)
    assert face.landmark_spread.shape == (68,) and face.landmark_spread.dtype == np.float32
    np.testing.assert_allclose(face.landmark_spread, expected["landmark_spread"][0], atol=1e-6)
    assert face.stage_spread == pytest.approx(float(face.landmark_spread.mean()), rel=1e-4)


def predict_response(outputs: dict):
    response = predict_pb2.PredictResponse()
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response


def test_grpc_response_parsing(dan, faces):
    _, _, _, loaded = dan
    out = default(loaded, faces)
    parsed = client.parse_predict_response(predict_response(out))
    np.testing.assert_array_equal(parsed.landmark_spread, out["landmark_spread"])
    np.testing.assert_array_equal(parsed.stage_spread, out["stage_spread"])
    old = client.parse_predict_response(predict_response(
        {k: v for k, v in out.items() if k != "landmark_spread"}))
    assert old.landmark_spread is None
    np.testing.assert_array_equal(old.landmarks, out["landmarks"])


# --- a model exported before landmark_spread and the input checks -------------------------------

@pytest.fixture(scope="module")
def old_model(shared_data, tmp_path_factory):
    """A base folder with version 1 in the interface exported before landmark_spread and the
    input checks (a published model exported again by the current exporter, as publish.py
    --re-export does, has both)."""
    base = tmp_path_factory.mktemp("legacy")
    model_fixtures.export_legacy_aan(base / "1", model_fixtures.afw_mean_shape(shared_data))
    return base


@pytest.fixture(scope="module")
def old_server(old_model):
    local = server.LocalServer(old_model, "legacy-aan", "127.0.0.1", 0, poll_seconds=60,
                               warmup=False).start()
    yield local
    local.stop()


def test_a_model_without_the_output_keeps_working(old_model, old_server, faces):
    signature = old_server.repository.current.signatures[SERVING_DEFAULT]
    assert set(signature.structured_outputs) == {"landmarks", "stage_spread"}  # the premise
    rest = client.RestClient.from_url(old_server.model_url)
    images, boxes = [f[0] for f in faces], [f[1] for f in faces]
    for columnar in (False, True):
        result = rest.predict(images, boxes, columnar=columnar)
        assert result.landmarks.shape == (len(faces), 68, 2)
        assert np.isfinite(result.landmarks).all() and result.stage_spread.shape == (len(faces),)
        assert result.landmark_spread is None
    for aligner in (facealign.load(old_model), facealign.load(old_server.model_url)):
        (face,) = aligner.align(faces[0][0], boxes=faces[0][1])
        assert face.landmarks.shape == (68, 2) and face.landmark_spread is None
        assert 0 <= face.stage_spread < 0.05
    status = old_server.repository.status()[0]
    assert status["state"] == "AVAILABLE"


def test_an_unchecked_models_nan_answers_are_refused_by_the_server(old_server, faces):
    """The old graph has no input checks: a NaN box gives NaN landmarks, which the local
    server refuses instead of writing NaN into JSON."""
    rest = client.RestClient.from_url(old_server.model_url)
    with pytest.raises(client.ServingError) as info:
        rest.predict([faces[0][0]] * 2, [faces[0][1], [float("nan"), 1, 200, 200]])
    assert info.value.status == 400
    assert info.value.message == ("instance 1: the model's output 'landmarks' is not finite "
                                  "(NaN or infinity)")
