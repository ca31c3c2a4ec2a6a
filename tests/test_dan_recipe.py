"""The official-code recipe switches (issue #13): mirrored copies, stage-2 input BatchNorm,
earlier stages in training mode, and a warm start that grows the cascade."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from real_faces import canonical_face, write_tfrecord

from facealign.core import canonical, model_format
from facealign.core.config import ConfigError, DanConfig, TrainerSection
from facealign.core.config import load as load_config
from trainer import export, warm_start
from trainer.dan_model import StageBatchNorm, StageDropout, build_dan_model
from trainer.dan_training import train_dan

SIZE = 112
NUM_FACES = 8
TINY = dict(base_filters=8, fc_units=32, dropout=0.1)


@pytest.fixture(scope="module")
def faces(shared_data):
    rng = np.random.default_rng(0)
    paths = sorted((shared_data / "300w" / "afw").glob("*.pts"))[:NUM_FACES]
    images, shapes = zip(*(canonical_face(p, SIZE, rng) for p in paths))
    images, shapes = np.stack(images)[..., None], np.stack(shapes)
    pixels = images[..., 0].astype(np.float32)
    return images, shapes, (shapes.mean(0), pixels.mean(0), pixels.std(0))


# --- mirrored copies -------------------------------------------------------------------

def test_extra_mirror_copies_add_a_mirrored_copy_per_copy(shared_data):
    import cv2

    from facealign.core.data.pts import read_pts

    pts = sorted((shared_data / "300w" / "afw").glob("*.pts"))[0]
    image, landmarks = cv2.imread(str(pts.with_suffix(".jpg"))), read_pts(pts)
    box = np.array([*landmarks.min(0), *landmarks.max(0)], np.float64)
    frame = canonical.CanonicalFrame.from_mean_shape(landmarks, 112)
    half = canonical.AugmentConfig(copies=4, mirror_copies="half")
    extra = canonical.AugmentConfig(copies=4, mirror_copies="extra")
    assert (half.samples_per_face, half.mirrored_copies) == (4, 2)
    assert (extra.samples_per_face, extra.mirrored_copies) == (8, 4)
    a = canonical.training_samples(image, landmarks, box, "f", frame, half)
    b = canonical.training_samples(image, landmarks, box, "f", frame, extra)
    assert [s.mirrored for s in a] == [False] * 2 + [True] * 2
    assert [s.mirrored for s in b] == [False] * 4 + [True] * 4
    # sample k draws from generator k: the unmirrored samples they share are the same
    for x, y in zip(a[:2], b[:2]):
        np.testing.assert_array_equal(x.image, y.image)
    # without mirroring both give `copies` unmirrored samples
    plain = canonical.AugmentConfig(copies=4, mirror=False, mirror_copies="extra")
    assert (plain.samples_per_face, plain.mirrored_copies) == (4, 0)
    with pytest.raises(ValueError, match="mirror_copies must be one of"):
        canonical.AugmentConfig(mirror_copies="both")


def test_recipe_switches_are_validated_by_name(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("model:\n  name: dan\n")
    for key, bad in (("augment.mirror_copies", "both"), ("model.dan.frozen_stages", "train"),
                     ("model.dan.input_batchnorm", "maybe")):
        with pytest.raises(ConfigError, match=key.split(".")[-1]):
            load_config(path, [f"{key}={bad}"])


# --- frozen stages in training mode: numpy references ---------------------------------

def test_frozen_batchnorm_in_training_mode_uses_batch_statistics():
    layer = StageBatchNorm(momentum=0.9, epsilon=1e-4)
    x = np.random.default_rng(0).normal(3.0, 2.0, (16, 4, 4, 3)).astype(np.float32)
    layer.build(x.shape)
    layer.gamma.assign([1.0, 2.0, 0.5])
    layer.beta.assign([0.0, 1.0, -1.0])
    layer.moving_mean.assign([0.5, 0.5, 0.5])
    layer.moving_variance.assign([4.0, 4.0, 4.0])
    layer.trainable = False
    # frozen, inference mode (the default): moving statistics, nothing updated
    out = layer(x, training=True).numpy()
    np.testing.assert_allclose(out, (x - 0.5) / np.sqrt(4.0 + 1e-4) * [1, 2, .5] + [0, 1, -1],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.5)
    # frozen, training mode: batch statistics, moving ones updated, gamma/beta as they were
    layer.frozen_mode = "training"
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    out = layer(x, training=True).numpy()
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-4) * [1, 2, .5] + [0, 1, -1],
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.9 * 0.5 + 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 * 4 + 0.1 * var, rtol=1e-4)
    # at inference it is the moving statistics again
    out = layer(x, training=False).numpy()
    np.testing.assert_allclose(
        out, (x - layer.moving_mean.numpy()) / np.sqrt(layer.moving_variance.numpy() + 1e-4)
        * [1, 2, .5] + [0, 1, -1], rtol=1e-4, atol=1e-4)


def test_frozen_dropout_drops_only_in_training_mode():
    layer = StageDropout(0.5, seed=1)
    x = np.ones((4, 1000), np.float32)
    layer.trainable = False
    np.testing.assert_array_equal(layer(x, training=True).numpy(), x)
    layer.frozen_mode = "training"
    dropped = layer(x, training=True).numpy()
    assert 0.4 < np.mean(dropped == 0) < 0.6
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)


def _weights(model, stage: int, moving: bool) -> list:
    """One stage's network weights: its BatchNorm moving statistics, or the rest."""
    return [w.numpy() for w in model.get_layer(f"s{stage}_network").weights
            if ("moving" in w.name) == moving]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_training_stage_2_never_changes_stage_1_weights(tmp_path, faces, mode):
    from trainer.dan_training import train_stage

    images, shapes, stats = faces
    path = write_tfrecord(tmp_path / "faces.tfrecord.gz", images, shapes)
    trainer_cfg = TrainerSection(batch_size=4, max_epochs_per_stage=1, patience=1,
                                 steps_per_epoch=3)
    model = train_dan(path, path, *stats, DanConfig(stages=2, **TINY), trainer_cfg, verbose=0,
                      seed=0).model
    before = _weights(model, 1, moving=False), _weights(model, 1, moving=True)
    stage2 = _weights(model, 2, moving=False)
    dataset = tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float32), shapes)).batch(4).repeat()
    train_stage(model, 2, dataset, dataset.take(2), trainer_cfg, verbose=0, frozen_mode=mode)
    after = _weights(model, 1, moving=False), _weights(model, 1, moving=True)
    for old, new in zip(before[0], after[0]):
        np.testing.assert_array_equal(new, old)
    moved = [not np.array_equal(new, old) for old, new in zip(before[1], after[1])]
    assert moved and (all(moved) if mode == "training" else not any(moved))
    assert any(not np.array_equal(a, b) for a, b in zip(stage2, _weights(model, 2, False)))
    # and the stage's layers are back in inference mode for export
    assert all(layer.frozen_mode == "inference"
               for layer in model.get_layer("s1_network").layers
               if isinstance(layer, (StageBatchNorm, StageDropout)))


# --- stage-2 input BatchNorm -----------------------------------------------------------

def test_input_batchnorm_belongs_to_stage_2(faces):
    _, _, stats = faces
    plain = build_dan_model(*stats, DanConfig(stages=2, **TINY))
    normed = build_dan_model(*stats, DanConfig(stages=2, input_batchnorm=True, **TINY))
    layer = normed.get_layer("s2_input_bn")
    assert isinstance(layer, StageBatchNorm) and layer.gamma.shape == (3,)
    assert len(normed.weights) == len(plain.weights) + 4
    with pytest.raises(ValueError):
        plain.get_layer("s2_input_bn")


# --- a warm start that grows the cascade -----------------------------------------------

def _export(model, mean_shape, folder, stages, **dan):
    metadata = {"config": {"model": {"name": "dan", "dan": DanConfig(stages=stages,
                                                                      **dan).model_dump()}},
                "lineage": {"cumulative_steps": 5, "cumulative_samples": 20,
                            "cumulative_seconds": 1.0, "generation": 1}}
    export.export_saved_model(model, mean_shape, str(folder), metadata=metadata,
                              image_size=SIZE)
    return str(folder)


def test_a_one_stage_parent_grows_into_two_stages(tmp_path, faces):
    images, shapes, stats = faces
    parent_model = build_dan_model(*stats, DanConfig(stages=1, **TINY))
    parent = _export(parent_model, stats[0], tmp_path / "parent", 1, **TINY)
    served = tf.saved_model.load(parent).signatures[model_format.PREDICT_CANONICAL](
        image=tf.constant(images, tf.uint8))["landmarks"].numpy()

    path = write_tfrecord(tmp_path / "faces.tfrecord.gz", images, shapes)
    trainer_cfg = TrainerSection(batch_size=4, max_epochs_per_stage=1, patience=1,
                                 steps_per_epoch=3)
    # inference mode: stage 1 stays exactly the parent's (training mode would move its
    # BatchNorm statistics, as the official code does)
    cfg = DanConfig(stages=2, input_batchnorm=True, frozen_stages="inference", **TINY)
    model_cfg = {"name": "dan", "dan": cfg.model_dump()}
    lineage = {}

    def init(model):
        lineage.update(warm_start.load_weights(model, model, parent, model_cfg, stats[0]))
        return lineage["kept_stages"]

    result = train_dan(path, path, *stats, cfg, trainer_cfg, verbose=0, seed=0, init=init)
    assert lineage["kept_stages"] == 1 and lineage["generation"] == 1
    assert result.stop_reasons[0] == "kept from the parent" and result.steps[0] == 0
    assert result.steps[1] == 3
    # stage 1 is the parent's, untouched by stage 2's training
    ours = result.model(tf.constant(images, tf.float32), training=False)
    np.testing.assert_allclose(ours["stage_1"].numpy(), served, atol=1e-3)
    assert not np.allclose(ours["stage_2"].numpy(), ours["stage_1"].numpy(), atol=1e-3)


def test_a_parent_with_more_stages_is_refused(tmp_path, faces):
    _, _, stats = faces
    parent = _export(build_dan_model(*stats, DanConfig(stages=2, **TINY)), stats[0],
                     tmp_path / "parent", 2, **TINY)
    child = build_dan_model(*stats, DanConfig(stages=1, **TINY))
    config = {"name": "dan", "dan": DanConfig(stages=1, **TINY).model_dump()}
    with pytest.raises(warm_start.WarmStartError, match="model.dan.stages is 2 there, 1 here"):
        warm_start.load_weights(child, child, parent, config, stats[0])
    # a parent exported before input_batchnorm existed was built without it
    info = json.loads(json.dumps(model_format.ModelMetadata.read(parent).to_dict()))
    del info["config"]["model"]["dan"]["input_batchnorm"]
    config = {"name": "dan", "dan": DanConfig(stages=2, input_batchnorm=True, **TINY).model_dump()}
    assert warm_start.architecture_differences(info, config, len(stats[0]), SIZE) == [
        "model.dan.input_batchnorm is False there, True here"]


def test_stage_layers_survive_keras_saving(tmp_path, faces):
    _, _, stats = faces
    model = build_dan_model(*stats, DanConfig(stages=2, input_batchnorm=True, **TINY))
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(again.get_layer("s2_input_bn"), StageBatchNorm)
