"""The LiteRT (TFLite) export: a builtin-op warp with ImageProjectiveTransformV3's pixels, the
committed 300-W DAN converted with builtin ops only and run by the ai-edge-litert interpreter,
quantisation, the ONNX export and `facealign export`'s errors."""
import json

import cv2
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from facealign import cli
from facealign.core import crop, model_format
from facealign.core.config import AanConfig, DanConfig, ModelSection
from facealign.core.data import read_dataset
from facealign.core.model_format import SERVING_DEFAULT
from serving.litert import LiteRTModel
from tests import model_fixtures
from trainer import export, litert_export
from trainer.dan_layers import ImageTransform

PRETRAINED = "pretrained/dan-300w"


def run(args, capsys):
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr()


def random_affines(rng, count: int, width: int, height: int) -> np.ndarray:
    """[count, 2, 3] canonical -> image affines: rotation, scale, shear, and translations that
    put part (or all) of the output outside the image."""
    angle, scale = rng.uniform(-np.pi, np.pi, count), rng.uniform(0.3, 5.0, count)
    matrices = np.zeros((count, 2, 3), np.float32)
    matrices[:, 0, 0], matrices[:, 0, 1] = scale * np.cos(angle), -scale * np.sin(angle)
    matrices[:, 1, 0], matrices[:, 1, 1] = scale * np.sin(angle), scale * np.cos(angle)
    matrices[:, 0, 1] += rng.normal(0, 0.3, count)
    matrices[:, 0, 2] = rng.uniform(-0.5 * width, width, count)
    matrices[:, 1, 2] = rng.uniform(-0.5 * height, height, count)
    return matrices


def test_builtin_warp_gives_image_projective_transform_pixels(shared_data):
    rng = np.random.default_rng(0)
    filled = []
    for path in sorted((shared_data / "300w" / "afw").glob("*.jpg"))[:3]:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        images = np.repeat(gray[None, ..., None], 12, axis=0)
        affines = random_affines(rng, 12, gray.shape[1], gray.shape[0])
        expected = crop.sample_bilinear(images, affines, 112).numpy()
        for size in (112, tf.constant([112, 112])):   # static and tensor output sizes
            found = crop.sample_bilinear_builtin(images, affines, size).numpy()
            assert found.shape == expected.shape == (12, 112, 112, 1)
            np.testing.assert_allclose(found, expected, atol=1e-4)
        filled.append(np.mean(expected == 0))
    # the constant fill was exercised, and so were the pixels inside
    assert 0.2 < np.mean(filled) < 0.9


def test_dan_image_transform_layer_with_builtin_ops(shared_data):
    """The layer option: same warp of the standardised multi-channel stage input, and the
    default layer's config is unchanged (old saved configs load, new ones read the same)."""
    paths = sorted((shared_data / "300w" / "helen" / "trainset").glob("*.jpg"))[:4]
    faces = np.stack([cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (112, 112))
                      for p in paths]).astype(np.float32)
    images = np.stack([(faces - 128) / 64, faces / 255, np.flip(faces, 1) / 255], axis=-1)
    transforms = random_affines(np.random.default_rng(1), 4, 112, 112)
    transforms[:, :, :2] /= np.abs(np.linalg.det(transforms[:, :, :2]))[:, None, None] ** 0.5
    default, builtin = ImageTransform(), ImageTransform(builtin_ops=True)
    np.testing.assert_allclose(builtin([images, transforms]).numpy(),
                               default([images, transforms]).numpy(), atol=1e-5)
    assert "builtin_ops" not in default.get_config()
    assert ImageTransform.from_config(builtin.get_config()).builtin_ops


@pytest.fixture(scope="module")
def dan_tflite(tmp_path_factory):
    """pretrained/dan-300w exported by the command, float32."""
    out = tmp_path_factory.mktemp("litert") / "dan.tflite"
    code = cli.main(["export", "--model", PRETRAINED, "--format", "tflite", "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def helen_crops(shared_data):
    """Canonical crops of six real faces by the model's S0 and their detector boxes."""
    records, _ = read_dataset(shared_data / "300w" / "helen" / "trainset",
                              boxes=[shared_data / "300w" / "boxes" / "helen_trainset.csv"])
    _, metadata = litert_export.read_model(PRETRAINED)
    return litert_export.calibration_crops(records[:6], metadata["mean_shape"], 112, 6)


def test_dan_tflite_uses_builtin_ops_only(dan_tflite):
    ops = litert_export.operators(dan_tflite.read_bytes())
    info = json.loads(dan_tflite.with_name("dan.tflite.json").read_text())
    _, metadata = litert_export.read_model(PRETRAINED)
    averaged = metadata["config"]["model"].get("flip_average", False)   # generation 3 is
    assert not [name for name in ops if name.startswith("CUSTOM")]   # no Flex, no custom op
    # stage 2's warp: 4 neighbours; flip averaging re-orders the mirrored half's landmarks
    # and landmark spreads by the mirror permutation (2 more) and mirrors the crops
    assert ops["GATHER"] == (6 if averaged else 4) and ops["FLOOR"] == 2
    assert ("REVERSE_V2" in ops) == averaged
    assert ops["CONV_2D"] == 16                          # 8 convolutions per stage
    assert info["operators"] == ops and info["quantize"] == "float32"
    assert info["stages"] == 2 and len(info["mean_shape"]) == info["num_landmarks"] == 68
    assert info["inputs"]["image"] == {"dtype": "uint8", "shape": [-1, 112, 112, 1]}


def test_dan_tflite_answers_as_the_saved_model(dan_tflite, helen_crops):
    folder, _ = litert_export.read_model(PRETRAINED)
    loaded = tf.saved_model.load(folder)
    served = loaded.signatures[model_format.PREDICT_CANONICAL](image=tf.constant(helen_crops))
    model = LiteRTModel(dan_tflite)
    ours = model.predict(helen_crops)
    distance = np.linalg.norm(ours["landmarks"] - served["landmarks"].numpy(), axis=-1)
    # float32 here, bfloat16 arithmetic in the SavedModel: 0.04 px at most on these faces
    assert distance.max() < 0.5 and distance.mean() < 0.05
    np.testing.assert_allclose(ours["stage_spread"], served["stage_spread"].numpy(), atol=1e-3)
    assert ours["stage_spread"].min() > 0
    one = model.predict(helen_crops[2:3])    # the interpreter resized to batch 1
    np.testing.assert_allclose(one["landmarks"], ours["landmarks"][2:3], atol=1e-4)


def test_int8_and_float16_of_a_tiny_dan(shared_data, tmp_path, capsys):
    """int8: the conv/dense stacks quantised on real calibration crops, the geometry float."""
    s0 = model_fixtures.afw_mean_shape(shared_data)
    config = ModelSection(name="dan", dan=DanConfig(stages=2, base_filters=4, fc_units=16,
                                                    dropout=0.0))
    keras_model, path = model_fixtures.export_tiny_dan(
        tmp_path / "tiny", s0, metadata={"config": {"model": config.model_dump(mode="json")}})
    afw = shared_data / "300w" / "afw"
    records, _ = read_dataset(afw, boxes=[shared_data / "300w" / "boxes" / "afw.csv"])
    crops = litert_export.calibration_crops(records[-6:], s0, 112, 6)
    expected = keras_model(tf.constant(crops, tf.float32))["landmarks"].numpy()
    for quantize, tolerance in (("float16", 0.05), ("int8", 1.0)):
        out = tmp_path / f"tiny-{quantize}.tflite"
        code, printed = run(["export", "--model", path, "--format", "tflite", "--out", out,
                             "--quantize", quantize]
                            + (["--calibration-data", afw, "--boxes",
                                shared_data / "300w" / "boxes" / "afw.csv",
                                "--calibration-faces", 8] if quantize == "int8" else []), capsys)
        assert code == 0, printed.err
        found = LiteRTModel(out).predict(crops)["landmarks"]
        assert np.abs(found - expected).max() < tolerance, quantize
        ops = litert_export.operators(out.read_bytes())
        assert not [name for name in ops if name.startswith("CUSTOM")]
    assert "8 used" in printed.out
    interpreter = Interpreter(model_path=str(out))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    kinds = {}
    for op in interpreter._get_ops_details():
        kinds.setdefault(op["op_name"], set()).update(
            tensors[i]["dtype"] for i in op["inputs"] if i >= 0)
    assert np.int8 in kinds["CONV_2D"]
    assert kinds["GATHER"] >= {np.float32} and np.int8 not in kinds["GATHER"]
    assert np.int8 not in kinds["SQRT"] and np.int8 not in kinds["DIV"]


def test_onnx_of_a_tiny_dan(shared_data, tmp_path, capsys):
    """ONNX through tf2onnx with the builtin warp, run by onnxruntime."""
    import onnxruntime

    s0 = model_fixtures.afw_mean_shape(shared_data)
    config = ModelSection(name="dan", dan=DanConfig(stages=2, base_filters=4, fc_units=16,
                                                    dropout=0.0))
    keras_model, path = model_fixtures.export_tiny_dan(
        tmp_path / "tiny", s0, metadata={"config": {"model": config.model_dump(mode="json")}})
    out = tmp_path / "tiny.onnx"
    code, printed = run(["export", "--model", path, "--format", "onnx", "--out", out], capsys)
    assert code == 0, printed.err
    info = json.loads((tmp_path / "tiny.onnx.json").read_text())
    assert info["format"] == "onnx" and "Gather" in info["operators"]
    assert "ImageProjectiveTransformV3" not in info["operators"]
    records, _ = read_dataset(shared_data / "300w" / "afw",
                              boxes=[shared_data / "300w" / "boxes" / "afw.csv"])
    crops = litert_export.calibration_crops(records[:4], s0, 112, 4)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    found = dict(zip([o.name for o in session.get_outputs()],
                     session.run(None, {"image": crops}), strict=True))
    expected = keras_model(tf.constant(crops, tf.float32))["landmarks"].numpy()
    np.testing.assert_allclose(found["landmarks"], expected, atol=1e-3)
    code, printed = run(["export", "--model", path, "--format", "onnx", "--out", out,
                         "--quantize", "int8"], capsys)
    assert code == 2 and "format onnx is float32 only" in printed.err


def test_aan_round_trip(shared_data, tmp_path):
    """An AAN (cosine embedding, sigmoid attention) through the export, rebuilt from metadata."""
    s0 = model_fixtures.afw_mean_shape(shared_data)
    config = ModelSection(name="aan", aan=AanConfig(base_filters=4, embedding_dim=16))
    _, model = model_fixtures.tiny_aan(s0, config.aan)
    export.export_saved_model(model, s0, str(tmp_path / "aan"), metadata={
        "model": "aan", "config": {"model": config.model_dump(mode="json")}})
    summary = litert_export.export_tflite(tmp_path / "aan", tmp_path / "aan.tflite")
    assert summary["model"] == "aan" and "COS" in summary["operators"]
    records, _ = read_dataset(shared_data / "300w" / "afw",
                              boxes=[shared_data / "300w" / "boxes" / "afw.csv"])
    crops = litert_export.calibration_crops(records[:4], s0, 112, 4)
    expected = model(tf.constant(crops, tf.float32))["landmarks"].numpy()
    assert np.ptp(expected, axis=0).max() > 0.1        # the answer depends on the face
    found = LiteRTModel(tmp_path / "aan.tflite").predict(crops)["landmarks"]
    # float32 both, summed in other orders (0.004 px typically; the outputs are x 112)
    np.testing.assert_allclose(found, expected, atol=0.05)


def test_bad_requests_are_one_line_errors(tmp_path, capsys):
    plain = tf.Module()
    plain.f = tf.function(lambda x: {"y": x + 1.0},
                          input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(plain, str(tmp_path / "plain"), signatures={SERVING_DEFAULT: plain.f})
    out = tmp_path / "m.tflite"
    cases = [
        (["--model", tmp_path / "missing", "--format", "tflite"], "no such model folder"),
        (["--model", PRETRAINED, "--format", "coreml"],
         "unknown format 'coreml'; choose from tflite, onnx"),
        (["--model", PRETRAINED, "--format", "tflite", "--quantize", "int4"],
         "unknown quantisation 'int4'"),
        (["--model", tmp_path / "plain", "--format", "tflite"], "not a facealign model"),
        (["--model", PRETRAINED, "--format", "tflite", "--quantize", "int8"],
         "--quantize int8 needs --calibration-data"),
        (["--model", PRETRAINED, "--format", "tflite", "--calibration-data", tmp_path],
         "--calibration-data is only for --quantize int8"),
    ]
    for args, message in cases:
        code, printed = run(["export", *args, "--out", out], capsys)
        assert code == 2, args
        assert message in printed.err and len(printed.err.strip().splitlines()) == 1, printed.err
    assert not out.exists()
