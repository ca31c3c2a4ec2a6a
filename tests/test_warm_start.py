"""Warm start from an exported model: the committed 300-W DAN's weights land where they belong."""
import json
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf

from facealign.core import model_format, model_paths
from facealign.core.config import DanConfig
from facealign.core.model_format import PREDICT_CANONICAL
from tests.real_faces import canonical_face
from trainer import warm_start
from trainer.dan_model import build_dan_model

PRETRAINED = "pretrained/dan-300w"


@pytest.fixture(scope="module")
def parent():
    folder = model_paths.resolve_model_dir(PRETRAINED)
    return folder, model_format.ModelMetadata.read(folder).to_dict()


@pytest.fixture(scope="module")
def crops(shared_data):
    paths = sorted((shared_data / "300w" / "helen" / "trainset").glob("*.pts"))[:6]
    return np.stack([canonical_face(p)[0] for p in paths])[..., None]


def _model(metadata, **changes):
    config = DanConfig(**{**metadata["config"]["model"]["dan"], **changes})
    size = metadata["image_size"]
    zeros = np.zeros((size, size), np.float32)
    return build_dan_model(np.asarray(metadata["mean_shape"], np.float32), zeros, zeros + 1,
                           config, precision=metadata["precision"])  # as trained


def test_a_base_folder_resolves_to_its_newest_version(tmp_path, parent):
    (version,) = [p.name for p in pathlib.Path(PRETRAINED).iterdir() if p.name.isdigit()]
    assert model_paths.resolve_model_dir(PRETRAINED) == parent[0] == f"{PRETRAINED}/{version}"
    for version in ("7", "12"):
        shutil.copytree(parent[0], tmp_path / version, ignore=shutil.ignore_patterns("variables"))
    (tmp_path / "99").mkdir()      # no saved_model.pb: not a version
    assert model_paths.resolve_model_dir(str(tmp_path)) == str(tmp_path / "12")
    with pytest.raises(FileNotFoundError, match="not a SavedModel folder"):
        model_paths.resolve_model_dir(str(tmp_path / "99"))


def test_warm_started_model_answers_as_the_exported_one(parent, crops, tmp_path):
    folder, metadata = parent
    model = _model(metadata)
    lineage = warm_start.load_weights(model, model, PRETRAINED, metadata["config"]["model"],
                                      metadata["mean_shape"])
    plain = folder
    if metadata["config"]["model"].get("flip_average"):   # served averaged (generation 3):
        plain = warm_start.export_again(folder, str(tmp_path / "plain"), flip_average=False)
    loaded = tf.saved_model.load(plain)   # the plain network's answers to compare with
    served = loaded.signatures[PREDICT_CANONICAL](image=tf.constant(crops, tf.uint8))
    ours = model(tf.constant(crops, tf.float32), training=False)
    # to bfloat16 arithmetic (the parent computes in it): 0.01 px here; a misplaced weight
    # would move points by many pixels
    np.testing.assert_allclose(ours["landmarks"].numpy(), served["landmarks"].numpy(), atol=0.05)
    spread = np.linalg.norm(ours["stage_2"] - ours["stage_1"], axis=-1).mean(-1)
    assert np.ptp(spread) > 0     # stage 1 carries weights of its own, checked through the spread
    np.testing.assert_allclose(spread / served["stage_spread"].numpy(),
                               spread[0] / served["stage_spread"].numpy()[0], rtol=1e-2)
    # the child carries on the parent's own lineage
    assert lineage["parent"] == folder
    for key in ("generation", "cumulative_steps", "cumulative_samples", "cumulative_seconds"):
        assert lineage[key] == metadata["lineage"][key], key
    assert lineage["validation_curve"] == metadata["validation_curve"]


def test_a_parent_exported_before_lineage_counts_its_own_training():
    config = {"trainer": {"steps_per_epoch": 40, "batch_size": 64, "max_epochs_per_stage": 12}}
    recorded = warm_start.lineage_of("p", {"config": config, "epochs_per_stage": [11, 17],
                                           "training_seconds": 99.5, "stages": 2,
                                           "validation_nme_inter_pupil_per_stage": [0.14, 0.07]})
    assert recorded["generation"] == 1 and recorded["cumulative_steps"] == 28 * 40
    assert recorded["cumulative_samples"] == 28 * 40 * 64
    assert recorded["cumulative_seconds"] == 99.5
    # one point per stage where it ended
    assert [p["stage"] for p in recorded["validation_curve"]] == [1, 2]
    # epochs not recorded either (the first exporter): at most max_epochs_per_stage each
    unrecorded = warm_start.lineage_of("p", {"config": config, "stages": 2})
    assert unrecorded["cumulative_steps"] == 2 * 12 * 40


def test_an_architecture_mismatch_names_the_difference(parent):
    _, metadata = parent
    model = _model(metadata, base_filters=8, fc_units=32)
    config = json.loads(json.dumps(metadata["config"]["model"]))
    config["dan"].update(base_filters=8, fc_units=32)
    with pytest.raises(warm_start.WarmStartError,
                       match=r"model.dan.fc_units is 256 there, 32 here; "
                             r"model.dan.base_filters is 64 there, 8 here"):
        warm_start.load_weights(model, model, PRETRAINED, config, metadata["mean_shape"])
    config = {**config, "name": "aan"}
    with pytest.raises(warm_start.WarmStartError, match="model.name is 'dan' there, 'aan' here"):
        warm_start.load_weights(model, model, PRETRAINED, config, metadata["mean_shape"])


def test_a_model_of_other_shapes_but_the_same_recorded_settings_is_refused(parent, tmp_path):
    """Weight shapes are checked pairwise even when the metadata agrees (a 1-stage model here)."""
    folder, metadata = parent
    model = _model(metadata, stages=1)
    config = json.loads(json.dumps(metadata["config"]["model"]))
    fake = tmp_path / "parent"
    shutil.copytree(folder, fake)
    info = model_format.ModelMetadata.read(str(fake)).to_dict()
    info["config"]["model"]["dan"]["stages"] = 1
    model_format.ModelMetadata.from_dict(info).write(fake)
    config["dan"]["stages"] = 1
    with pytest.raises(warm_start.WarmStartError, match="weights, this model"):
        warm_start.load_weights(model, model, str(fake), config, metadata["mean_shape"])


def test_a_dan_cut_short_keeps_its_first_stages(crops):
    """rebuild(stages=1): stage 1 alone, answering what the whole cascade's stage 1 answers
    (a weight read from stage 2 would move the points by pixels)."""
    fast = "pretrained/dan-300w-fast"
    whole, _, _, metadata = warm_start.rebuild(fast)
    cut, _, folder, _ = warm_start.rebuild(fast, stages=1)
    assert metadata["config"]["model"]["dan"]["stages"] == 2
    assert sorted(cut.output) == ["landmarks", "stage_1"]
    assert len(cut.weights) < len(whole.weights)
    images = tf.constant(crops, tf.float32)
    expected = whole(images, training=False)
    found = cut(images, training=False)
    np.testing.assert_allclose(found["landmarks"].numpy(), expected["stage_1"].numpy(),
                               atol=1e-3)
    assert np.abs(expected["landmarks"] - expected["stage_1"]).max() > 0.1   # stage 2 moves them
    for path, stages, what in ((fast, 3, "a 2-stage DAN"),
                               ("pretrained/aan-300w", 1, "model 'aan', not a DAN")):
        with pytest.raises(warm_start.WarmStartError,
                           match=f"cannot keep the first {stages} stage.*it is {what}"):
            warm_start.rebuild(path, stages=stages)
