"""The AAN end to end: Table 5's four variants (outputs, layers, keras round trip, the
exported model without heads), the summed intermediate losses plus the weight decay, and
overfitting a handful of real 300-W faces with a save/reload round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from real_faces import canonical_face, write_tfrecord

from facealign.core.config import AanConfig, TrainerSection
from trainer.aan_model import TABLE5, build_aan_model, inference_model
from trainer.aan_training import compile_aan, train_aan
from trainer.losses import normalized_mean_error
from trainer.run import validation_curve

SIZE = 112
NUM_FACES = 8
TINY = AanConfig(base_filters=2, embedding_dim=8, units_per_block=[1, 2, 1, 1])
HEADS = [f"head_{k}" for k in range(1, 5)]


@pytest.fixture(scope="module")
def faces(shared_data):
    paths = sorted((shared_data / "300w" / "afw").glob("*.pts"))[:NUM_FACES]
    images, shapes = zip(*(canonical_face(p) for p in paths), strict=True)
    return np.stack(images)[..., None], np.stack(shapes)


def _stats():
    return np.full((SIZE, SIZE), 120.0, np.float32), np.full((SIZE, SIZE), 60.0, np.float32)


def _randomise_outputs(model, rng):
    """Non-zero output layers, so every output predicts something of its own."""
    for layer in model.layers:
        if layer.name.endswith("_fc"):
            kernel, bias = layer.get_weights()
            layer.set_weights([rng.normal(0, 0.05, kernel.shape).astype(np.float32), bias])


def test_table5_rows_are_one_switch_each():
    assert list(TABLE5) == ["AAN", "w/o attention", "w/o NE layer", "w/o both"]
    rows = {row: AanConfig(**overrides) for row, overrides in TABLE5.items()}
    assert rows["AAN"].attention and rows["AAN"].intermediate_supervision
    assert rows["AAN"].embedding == "cosine"
    for row in ("w/o attention", "w/o both"):
        assert not rows[row].attention and not rows[row].intermediate_supervision
    for row in ("w/o NE layer", "w/o both"):
        assert rows[row].embedding == "none"


@pytest.mark.parametrize("row, num_points, precision", [
    ("AAN", 68, "float32"),
    ("w/o attention", 98, "mixed_bfloat16"),
    ("w/o NE layer", 29, "float32"),
    ("w/o both", 68, "float32"),
])
def test_table5_variant_builds_round_trips_and_exports_without_heads(
        tmp_path, row, num_points, precision):
    config = TINY.model_copy(update=TABLE5[row])
    rng = np.random.default_rng(num_points)
    mean_shape = rng.uniform(30, 80, (num_points, 2)).astype(np.float32)
    model = build_aan_model(mean_shape, *_stats(), config, precision=precision)
    images = rng.integers(0, 255, (2, SIZE, SIZE, 1)).astype(np.uint8)

    outputs = model(images, training=False)
    # zero-initialised output layers: the untrained network predicts S0
    np.testing.assert_allclose(outputs["stage_1"], np.broadcast_to(mean_shape, (2, num_points, 2)))
    attention = config.attention
    assert sorted(outputs) == sorted(["stage_1"] + (HEADS if attention else []))
    for value in outputs.values():
        assert value.shape == (2, num_points, 2) and value.dtype == tf.float32

    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("ConvStem") == 1 and kinds.count("MaxPooling2D") == 4
    assert kinds.count("BottleneckBlock") == sum(config.units_per_block)
    assert kinds.count("AttentionBlock") == kinds.count("HeadFeatures") == (4 if attention else 0)
    assert ("CosineEmbedding" in kinds) == (config.embedding == "cosine")
    names = [layer.name for layer in model.layers]
    assert ("embedding" in names) == (config.embedding != "none")
    assert model.get_layer("flatten").output.shape[1:] == (7 * 7 * 4 * 8 * 2,)
    assert model.get_layer("block2_unit2").output.shape[1:] == (56, 56, 4 * 4)
    if attention:
        assert model.get_layer("head1_features").output.shape[1:] == (7 * 7 * 16,)
    if config.embedding == "none":      # the features straight into the linear output layer
        assert model.get_layer("output_fc").input.shape[1:] == (7 * 7 * 4 * 8 * 2,)
        # ... scaled by 1 / sqrt(D): numpy reference of S0 + size * (x / sqrt(D)) W + b
        probe = keras.Model(model.inputs, model.get_layer("flatten").output)
        flat = np.asarray(probe(images, training=False), np.float64)
        rng_fc = np.random.default_rng(1)
        layer = model.get_layer("output_fc")
        kernel = rng_fc.normal(0, 0.05, layer.kernel.shape).astype(np.float32)
        bias = rng_fc.normal(0, 0.01, layer.bias.shape).astype(np.float32)
        layer.set_weights([kernel, bias])
        reference = mean_shape + SIZE * (flat / np.sqrt(flat.shape[1]) @ kernel + bias).reshape(
            2, num_points, 2)
        np.testing.assert_allclose(model(images, training=False)["stage_1"], reference,
                                   rtol=1e-4, atol=1e-3)

    _randomise_outputs(model, rng)
    expected = {k: np.asarray(v) for k, v in model(images, training=False).items()}
    saved = tmp_path / "aan.keras"
    model.save(saved)
    reloaded = keras.models.load_model(saved)
    again = reloaded(images, training=False)
    assert sorted(again) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(again[key]), value, rtol=1e-5, atol=1e-4)
    assert float(sum(reloaded.losses)) == pytest.approx(float(sum(model.losses)), rel=1e-5)

    exported = inference_model(model)
    result = exported(images, training=False)
    assert sorted(result) == ["landmarks", "stage_1"]
    np.testing.assert_array_equal(result["landmarks"], expected["stage_1"])
    assert not any(layer.name.startswith("head") for layer in exported.layers)
    assert ("block1_attention" in [layer.name for layer in exported.layers]) == attention


def test_attention_without_intermediate_supervision_has_maps_but_no_heads():
    config = TINY.model_copy(update={"intermediate_supervision": False})
    model = build_aan_model(np.full((68, 2), 56.0, np.float32), *_stats(), config)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("AttentionBlock") == 4 and "HeadFeatures" not in kinds
    assert list(model.output) == ["stage_1"]


def test_image_size_must_pool_four_times():
    with pytest.raises(ValueError, match="multiple of 16"):
        build_aan_model(np.full((68, 2), 50.0, np.float32), np.zeros((100, 100), np.float32),
                        np.ones((100, 100), np.float32), TINY)


def test_training_loss_is_the_sum_of_the_heads_nme_and_the_weight_decay(faces):
    images, shapes = faces
    rng = np.random.default_rng(3)
    model = build_aan_model(shapes.mean(0), *_stats(), TINY)
    _randomise_outputs(model, rng)
    compile_aan(model, TINY, 1e-3)
    assert type(model.optimizer) is keras.optimizers.Adam     # coupled decay, not AdamW's
    assert not model.optimizer.weight_decay
    targets = {key: shapes for key in model.output}
    predictions = model(images, training=False)
    heads = [np.mean(normalized_mean_error(shapes, predictions[k], "corners"))
             for k in sorted(predictions)]
    assert len(heads) == 5 and len(set(np.round(heads, 5))) == 5

    # (0.001 / 2) |W|^2 over every conv and dense kernel, the cosine embedding's W = V / sqrt(D)
    decay = 0.0
    for variable in model.trainable_weights:
        if variable.path.endswith("/kernel"):
            kernel = variable.numpy().astype(np.float64)
            if variable.path.startswith("embedding/"):
                kernel = kernel / np.sqrt(kernel.shape[0])
            decay += TINY.weight_decay / 2 * np.sum(kernel ** 2)
    assert decay > 0
    assert float(sum(model.losses)) == pytest.approx(decay, rel=1e-5)

    scores = model.evaluate(images, targets, batch_size=NUM_FACES, return_dict=True, verbose=0)
    assert scores["loss"] == pytest.approx(float(np.sum(heads)) + decay, rel=1e-4)
    # the loss is the inter-ocular (outer eye corners) NME of eq. 5
    corners = np.linalg.norm(shapes[:, 36] - shapes[:, 45], axis=-1)
    errors = np.linalg.norm(np.asarray(predictions["stage_1"]) - shapes, axis=-1).mean(-1)
    assert scores["stage_1_nme"] == pytest.approx(float(np.mean(errors / corners)), rel=1e-4)

    off = build_aan_model(shapes.mean(0), *_stats(), TINY.model_copy(update={"weight_decay": 0}))
    assert not off.losses


@pytest.mark.slow
def test_tiny_aan_overfits_real_faces_and_reloads(tmp_path, faces):
    images, shapes = faces
    mean_shape = shapes.mean(0)
    pixels = images[..., 0].astype(np.float32)
    path = write_tfrecord(tmp_path / "faces.tfrecord.gz", images, shapes)
    # the default architecture (stem, [2, 2, 2, 2] units, spatial heads, weight decay) at width 4
    config = AanConfig(base_filters=4, embedding_dim=64)
    trainer_cfg = TrainerSection(batch_size=NUM_FACES, learning_rate=0.002,
                                 max_epochs_per_stage=6, patience=6, steps_per_epoch=20)
    result = train_aan(path, path, mean_shape, pixels.mean(0), pixels.std(0), config,
                       trainer_cfg, verbose=0, seed=0)
    model = result.model
    assert sorted(model.output) == ["landmarks", "stage_1"]
    predictions = model.predict(images, verbose=0)["landmarks"]
    final_nme = float(np.mean(normalized_mean_error(shapes, predictions, "corners")))
    initial_nme = float(np.mean(normalized_mean_error(
        shapes, np.broadcast_to(mean_shape, shapes.shape), "corners")))
    assert result.initial_nme_inter_ocular == pytest.approx(initial_nme, rel=1e-4)
    assert final_nme == pytest.approx(result.nme_inter_ocular[0], rel=1e-3)
    assert final_nme < 0.5 * initial_nme, (final_nme, initial_nme)

    saved = tmp_path / "aan.keras"
    model.save(saved)
    reloaded = keras.models.load_model(saved)
    again = reloaded.predict(images, verbose=0)
    assert sorted(again) == ["landmarks", "stage_1"]
    np.testing.assert_allclose(again["landmarks"], predictions, rtol=1e-5, atol=1e-4)


def test_the_aan_without_attention_trains_and_reports_like_the_aan(tmp_path, faces):
    # one output, so Keras logs "nme", not "stage_1_nme": Table 5's "w/o attention" row once
    # failed after training, and its early stopping watched a metric that was never logged
    images, shapes = faces
    pixels = images[..., 0].astype(np.float32)
    path = write_tfrecord(tmp_path / "faces.tfrecord.gz", images, shapes)
    config = TINY.model_copy(update=TABLE5["w/o attention"])
    trainer_cfg = TrainerSection(batch_size=NUM_FACES, max_epochs_per_stage=2, patience=2,
                                 steps_per_epoch=2)
    result = train_aan(path, path, shapes.mean(0), pixels.mean(0), pixels.std(0), config,
                       trainer_cfg, verbose=0, seed=0)
    history = result.histories[0]
    assert {"val_stage_1_nme", "val_stage_1_nme_inter_pupil",
            "val_stage_1_nme_inter_ocular"} <= set(history)
    best = int(np.argmin(history["val_stage_1_nme"]))     # the weights kept
    assert result.nme_inter_ocular[0] == pytest.approx(
        history["val_stage_1_nme_inter_ocular"][best], rel=1e-4)
    predictions = result.model.predict(images, verbose=0)["landmarks"]
    assert float(np.mean(normalized_mean_error(shapes, predictions, "corners"))) == \
        pytest.approx(result.nme_inter_ocular[0], rel=1e-3)
    curve = validation_curve(result, {}, NUM_FACES)
    assert [point["nme_inter_pupil"] for point in curve] == pytest.approx(
        history["val_stage_1_nme_inter_pupil"], abs=1e-6)
