"""The AAN end to end: shapes for any N, the summed intermediate losses, the exported
outputs, and overfitting a handful of real 300-W faces with a save/reload round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from facealign.config import AanConfig, TrainerSection
from real_faces import canonical_face, write_tfrecord
from trainer.aan_model import build_aan_model, inference_model
from trainer.aan_training import compile_aan, train_aan
from trainer.losses import normalized_mean_error

SIZE = 112
NUM_FACES = 8
TINY = AanConfig(base_filters=2, embedding_dim=8)


@pytest.fixture(scope="module")
def faces(shared_data):
    paths = sorted((shared_data / "300w" / "afw").glob("*.pts"))[:NUM_FACES]
    images, shapes = zip(*(canonical_face(p) for p in paths))
    return np.stack(images)[..., None], np.stack(shapes)


def _stats():
    return np.full((SIZE, SIZE), 120.0, np.float32), np.full((SIZE, SIZE), 60.0, np.float32)


@pytest.mark.parametrize("num_points, config, precision", [
    (68, TINY, "float32"),
    (98, AanConfig(base_filters=2, embedding_dim=8, embedding="linear", attention=False),
     "mixed_bfloat16"),
    (29, AanConfig(base_filters=2, embedding_dim=8, intermediate_supervision=False), "float32"),
])
def test_outputs_for_any_point_count_and_export_has_no_heads(num_points, config, precision):
    rng = np.random.default_rng(num_points)
    mean_shape = rng.uniform(30, 80, (num_points, 2)).astype(np.float32)
    model = build_aan_model(mean_shape, *_stats(), config, precision=precision)
    images = rng.integers(0, 255, (2, SIZE, SIZE, 1)).astype(np.uint8)
    outputs = model(images, training=False)
    heads = [f"head_{k}" for k in range(1, 5)] if config.intermediate_supervision else []
    assert sorted(outputs) == sorted(["stage_1"] + heads)
    for value in outputs.values():
        assert value.shape == (2, num_points, 2) and value.dtype == tf.float32
    # zero-initialised output layers: the untrained network predicts S0
    np.testing.assert_allclose(outputs["stage_1"], np.broadcast_to(mean_shape, (2, num_points, 2)))
    assert model.get_layer("flatten").output.shape[1:] == (7 * 7 * 4 * 8 * 2,)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BottleneckBlock") == 4 and kinds.count("AttentionBlock") == 4
    assert kinds.count("MaxPooling2D") == 4
    assert ("CosineEmbedding" in kinds) == (config.embedding == "cosine")

    exported = inference_model(model)
    result = exported(images, training=False)
    assert sorted(result) == ["landmarks", "stage_1"]
    np.testing.assert_array_equal(result["landmarks"], outputs["stage_1"])
    assert not any(layer.name.startswith("head") for layer in exported.layers)


def test_training_loss_is_the_sum_of_the_heads_nme(faces):
    images, shapes = faces
    rng = np.random.default_rng(3)
    model = build_aan_model(shapes.mean(0), *_stats(), TINY)
    # non-zero output layers so every head predicts something different
    for layer in model.layers:
        if layer.name.endswith("_fc"):
            kernel, bias = layer.get_weights()
            layer.set_weights([rng.normal(0, 0.5, kernel.shape).astype(np.float32), bias])
    compile_aan(model, TINY, 1e-3)
    targets = {key: shapes for key in model.output}
    predictions = model(images, training=False)
    heads = [np.mean(normalized_mean_error(shapes, predictions[k], "corners"))
             for k in sorted(predictions)]
    assert len(heads) == 5 and len(set(np.round(heads, 5))) == 5
    scores = model.evaluate(images, targets, batch_size=NUM_FACES, return_dict=True, verbose=0)
    assert scores["loss"] == pytest.approx(float(np.sum(heads)), rel=1e-4)
    # the loss is the inter-ocular (outer eye corners) NME of eq. 5
    corners = np.linalg.norm(shapes[:, 36] - shapes[:, 45], axis=-1)
    errors = np.linalg.norm(np.asarray(predictions["stage_1"]) - shapes, axis=-1).mean(-1)
    assert scores["stage_1_nme"] == pytest.approx(float(np.mean(errors / corners)), rel=1e-4)


def test_tiny_aan_overfits_real_faces_and_reloads(tmp_path, faces):
    images, shapes = faces
    mean_shape = shapes.mean(0)
    pixels = images[..., 0].astype(np.float32)
    path = write_tfrecord(tmp_path / "faces.tfrecord.gz", images, shapes)
    config = AanConfig(base_filters=4, embedding_dim=64, weight_decay=0.0)
    trainer_cfg = TrainerSection(batch_size=NUM_FACES, learning_rate=0.002,
                                 max_epochs_per_stage=15, patience=15, steps_per_epoch=10)
    result = train_aan(path, path, mean_shape, pixels.mean(0), pixels.std(0), config,
                       trainer_cfg, verbose=0, seed=0)
    model = result.model
    assert sorted(model.output) == ["landmarks", "stage_1"]
    predictions = model.predict(images, verbose=0)["landmarks"]
    final_nme = float(np.mean(normalized_mean_error(shapes, predictions, "corners")))
    initial_nme = float(np.mean(normalized_mean_error(
        shapes, np.broadcast_to(mean_shape, shapes.shape), "corners")))
    assert result.initial_nme == pytest.approx(initial_nme, rel=1e-4)
    assert final_nme == pytest.approx(result.nme, rel=1e-3)
    assert final_nme < 0.5 * initial_nme, (final_nme, initial_nme)

    saved = tmp_path / "aan.keras"
    model.save(saved)
    reloaded = keras.models.load_model(saved)
    again = reloaded.predict(images, verbose=0)
    assert sorted(again) == ["landmarks", "stage_1"]
    np.testing.assert_allclose(again["landmarks"], predictions, rtol=1e-5, atol=1e-4)
