"""Test-time flip averaging (trainer/flip_average.py): numpy references, the mirror round
trip on real faces, and the exported model rebuilt and warm-started from its metadata."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from facealign.core import landmarks68, model_format
from facealign.core.canonical import mirror_points
from facealign.core.config import AanConfig, ModelSection
from facealign.core.data import read_dataset
from tests import model_fixtures
from trainer import export, litert_export, warm_start
from trainer.flip_average import MirrorMean, MirrorPair, flip_averaged, mirror_permutation_for

SIZE = 112
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def s0(shared_data):
    return model_fixtures.afw_mean_shape(shared_data)


@pytest.fixture(scope="module")
def crops(shared_data, s0):
    """Canonical crops [4, 112, 112, 1] of four real AFW faces."""
    records, _ = read_dataset(shared_data / "300w" / "afw",
                              boxes=[shared_data / "300w" / "boxes" / "afw.csv"])
    return litert_export.calibration_crops(records[:4], s0, SIZE, 4).astype(np.float32)


AAN = ModelSection(name="aan", flip_average=True,
                   aan=AanConfig(base_filters=4, embedding_dim=16, units_per_block=[1, 1, 1, 1]))


def unmirror(points: np.ndarray, width: int = SIZE) -> np.ndarray:
    """numpy: points found on mirrored images, back on the images: mirroring again, as
    training mirrors them (facealign.core.canonical.mirror_points; the box is unused here)."""
    return np.stack([mirror_points(p, [0, 0, 1, 1], width)[0] for p in points])


def test_mirror_pair_appends_the_mirror_images():
    images = np.random.default_rng(1).uniform(0, 255, (3, 8, 8, 1)).astype(np.float32)
    pair = MirrorPair()(tf.constant(images)).numpy()
    np.testing.assert_array_equal(pair[:3], images)
    np.testing.assert_array_equal(pair[3:], images[:, :, ::-1])


def test_mirror_mean_matches_numpy():
    rng = np.random.default_rng(2)
    points = rng.uniform(0, SIZE - 1, (2 * 5, 68, 2)).astype(np.float32)
    found = MirrorMean(SIZE, landmarks68.mirror_permutation())(tf.constant(points)).numpy()
    np.testing.assert_allclose(found, (points[:5] + unmirror(points[5:])) / 2, atol=1e-5)


def test_mirror_mean_of_an_exact_mirror_answer_is_that_answer():
    """Points whose mirror-image answer is their exact mirror average to themselves."""
    rng = np.random.default_rng(3)
    points = rng.uniform(0, SIZE - 1, (4, 68, 2)).astype(np.float32)
    both = tf.constant(np.concatenate([points, unmirror(points)]))
    found = MirrorMean(SIZE, landmarks68.mirror_permutation())(both).numpy()
    np.testing.assert_allclose(found, points, atol=1e-4)


def test_averaged_model_is_the_mean_of_both_answers_on_real_faces(s0, crops):
    _, view = model_fixtures.tiny_aan(s0, AAN.aan)
    plain = view(tf.constant(crops))["landmarks"].numpy()
    on_mirror = view(tf.constant(crops[:, :, ::-1].copy()))["landmarks"].numpy()
    assert np.abs(unmirror(on_mirror) - plain).max() > 0.1   # not equivariant by itself
    averaged = flip_averaged(view)(tf.constant(crops))
    assert set(averaged) == {"stage_1", "landmarks"}
    np.testing.assert_allclose(averaged["landmarks"].numpy(), (plain + unmirror(on_mirror)) / 2,
                               atol=5e-3)


def test_averaged_model_is_mirror_equivariant(s0, crops):
    """Round trip: the answer on a mirrored face is the mirror of the answer on the face."""
    _, view = model_fixtures.tiny_aan(s0, AAN.aan, seed=4)
    averaged = flip_averaged(view)
    on_face = averaged(tf.constant(crops))["landmarks"].numpy()
    on_mirror = averaged(tf.constant(crops[:, :, ::-1].copy()))["landmarks"].numpy()
    np.testing.assert_allclose(unmirror(on_mirror), on_face, atol=5e-3)


def test_markups_without_a_mirror_permutation_are_refused_by_key():
    with pytest.raises(ValueError, match="model.flip_average"):
        mirror_permutation_for(98)


def test_export_rebuild_and_warm_start_keep_the_averaging(s0, crops, tmp_path):
    """The served signature averages; rebuilt from metadata the view averages too; its
    weights warm-start a plain model and the averaged export of those answers the same."""
    _, view = model_fixtures.tiny_aan(s0, AAN.aan, seed=5)
    served = warm_start.exported_view(view, AAN)
    folder = tmp_path / "flip"
    export.export_saved_model(served, s0, str(folder), metadata={
        "model": "aan", "config": {"model": AAN.model_dump(mode="json")}})
    canonical = tf.saved_model.load(str(folder)).signatures[model_format.PREDICT_CANONICAL]
    found = canonical(tf.constant(crops.astype(np.uint8)))["landmarks"].numpy()
    expected = served(tf.constant(crops.astype(np.uint8).astype(np.float32)))["landmarks"]
    np.testing.assert_allclose(found, expected.numpy(), atol=5e-3)

    _, rebuilt, _, _ = warm_start.rebuild(folder)
    assert rebuilt.name.endswith("flip_averaged")
    np.testing.assert_allclose(rebuilt(tf.constant(crops))["landmarks"].numpy(),
                               served(tf.constant(crops))["landmarks"].numpy(), atol=5e-3)

    plain_cfg = AAN.model_copy(update={"flip_average": False})
    fresh, fresh_view = model_fixtures.tiny_aan(s0, plain_cfg.aan, seed=6)
    warm_start.load_weights(fresh, fresh_view, str(folder),
                            plain_cfg.model_dump(mode="json"), s0)
    np.testing.assert_allclose(fresh_view(tf.constant(crops))["landmarks"].numpy(),
                               view(tf.constant(crops))["landmarks"].numpy(), atol=1e-4)
    assert warm_start.exported_view(fresh_view, plain_cfg) is fresh_view


@pytest.fixture(scope="module")
def averaged_export(s0, tmp_path_factory):
    """(the served Keras model, its SavedModel folder) of a random flip-averaged AAN."""
    _, view = model_fixtures.tiny_aan(s0, AAN.aan, seed=7)
    served = warm_start.exported_view(view, AAN)
    folder = tmp_path_factory.mktemp("averaged") / "flip"
    export.export_saved_model(served, s0, str(folder), metadata={
        "model": "aan", "config": {"model": AAN.model_dump(mode="json")}})
    return served, folder


def test_litert_export_keeps_the_averaging(averaged_export, crops, tmp_path):
    """`facealign export --format tflite` of an averaged model answers as its SavedModel."""
    from serving.litert import LiteRTModel

    served, folder = averaged_export
    summary = litert_export.export_tflite(folder, tmp_path / "flip.tflite")
    assert "REVERSE_V2" in summary["operators"]
    found = LiteRTModel(tmp_path / "flip.tflite").predict(crops.astype(np.uint8))["landmarks"]
    expected = served(tf.constant(crops.astype(np.uint8).astype(np.float32)))["landmarks"]
    np.testing.assert_allclose(found, expected.numpy(), atol=0.05)


def test_onnx_export_keeps_the_averaging(averaged_export, crops, tmp_path):
    import onnxruntime

    from trainer import onnx_export

    served, folder = averaged_export
    onnx_export.export_onnx(folder, tmp_path / "flip.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "flip.onnx"),
                                           providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    found = dict(zip(names, session.run(None, {"image": crops.astype(np.uint8)}), strict=True))
    expected = served(tf.constant(crops.astype(np.uint8).astype(np.float32)))["landmarks"]
    np.testing.assert_allclose(found["landmarks"], expected.numpy(), atol=0.05)


def test_a_bad_setting_names_the_key():
    from facealign.core import config

    with pytest.raises(config.ConfigError, match=r"model\.flip_average"):
        config.load(REPO / "configs" / "300w-aan.yaml", ["model.flip_average=maybe"])
