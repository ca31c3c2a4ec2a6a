"""The DAN model end to end on a handful of real 300-W faces: input, loss, training, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from real_faces import canonical_face, write_tfrecord

from facealign.core.config import DanConfig, TrainerSection
from trainer import dan_input
from trainer.dan_model import build_dan_model, build_stage_network, stage_model
from trainer.dan_training import train_dan
from trainer.losses import NormalizedLandmarkLoss, NormalizedMeanError, normalized_mean_error

SIZE = 112
NUM_FACES = 8
TINY = DanConfig(stages=2, base_filters=8, fc_units=64, dropout=0.1)


@pytest.fixture(scope="module")
def faces(shared_data):
    rng = np.random.default_rng(0)
    paths = sorted((shared_data / "300w" / "afw").glob("*.pts"))[:NUM_FACES]
    images, shapes = zip(*(canonical_face(p, SIZE, rng) for p in paths))
    return np.stack(images)[..., None], np.stack(shapes)


def statistics(images, shapes):
    pixels = images[..., 0].astype(np.float32)
    return shapes.mean(0), pixels.mean(0), pixels.std(0)


# --- loss and input ------------------------------------------------------------------

def test_loss_is_inter_pupil_normalised_with_diagonal_fallback():
    rng = np.random.default_rng(1)
    truth = rng.uniform(20, 90, (4, 68, 2)).astype(np.float32)
    prediction = truth + rng.normal(0, 2, truth.shape).astype(np.float32)
    errors = np.linalg.norm(prediction - truth, axis=-1).mean(-1)
    pupils = np.linalg.norm(truth[:, 36:42].mean(1) - truth[:, 42:48].mean(1), axis=-1)
    corners = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=-1)
    np.testing.assert_allclose(normalized_mean_error(truth, prediction), errors / pupils, rtol=1e-5)
    np.testing.assert_allclose(normalized_mean_error(truth, prediction, "corners"),
                               errors / corners, rtol=1e-5)
    graph_nme = tf.function(normalized_mean_error, input_signature=[
        tf.TensorSpec([None, 68, 2], tf.float32), tf.TensorSpec([None, 68, 2], tf.float32)])
    np.testing.assert_allclose(graph_nme(truth, prediction), errors / pupils, rtol=1e-5)
    loss = NormalizedLandmarkLoss()(truth, tf.cast(prediction, tf.bfloat16))
    assert loss.dtype == tf.float32
    assert float(loss) == pytest.approx(float(np.mean(errors / pupils)), rel=1e-2)
    metric = NormalizedMeanError()
    metric.update_state(truth[:2], prediction[:2])
    metric.update_state(truth[2:], prediction[2:])
    assert float(metric.result()) == pytest.approx(float(np.mean(errors / pupils)), rel=1e-5)

    few = truth[:, :5]   # not the 68-point markup: bounding-box diagonal
    diagonal = np.linalg.norm(few.max(1) - few.min(1), axis=-1)
    expected = np.linalg.norm(prediction[:, :5] - few, axis=-1).mean(-1) / diagonal
    np.testing.assert_allclose(normalized_mean_error(few, prediction[:, :5]), expected, rtol=1e-5)


def test_input_function_reads_canonical_tfrecords(tmp_path, faces):
    images, shapes = faces
    path = write_tfrecord(tmp_path / "train.tfrecord.gz", images, shapes)
    dataset = dan_input.make_dataset(path, num_landmarks=68, batch_size=3)
    batches = list(dataset)
    assert [len(b[0]) for b in batches] == [3, 3, 2]
    got_images = np.concatenate([b[0] for b in batches])
    got_shapes = np.concatenate([b[1] for b in batches])
    assert got_images.dtype == np.float32 and got_images.shape == (NUM_FACES, SIZE, SIZE, 1)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_shapes, shapes)
    shuffled = dan_input.make_dataset(str(tmp_path / "*.gz"), num_landmarks=68, batch_size=4,
                                      training=True, repeat=True, seed=1)
    assert next(iter(shuffled))[0].shape == (4, SIZE, SIZE, 1)


# --- model ---------------------------------------------------------------------------

def test_default_stage_is_table_1():
    stage = build_stage_network(1, 68)
    shapes = {layer.name: layer.output.shape[1:] for layer in stage.layers}
    assert shapes["conv1b"] == (112, 112, 64) and shapes["pool1"] == (56, 56, 64)
    assert shapes["conv2b"] == (56, 56, 128) and shapes["pool2"] == (28, 28, 128)
    assert shapes["conv3b"] == (28, 28, 256) and shapes["pool3"] == (14, 14, 256)
    assert shapes["conv4b"] == (14, 14, 512) and shapes["pool4"] == (7, 7, 512)
    assert shapes["fc1_relu"] == (256,) and shapes["fc2"] == (136,)
    kinds = [type(layer).__name__ for layer in stage.layers]
    assert kinds.count("Conv2D") == 8 and kinds.count("StageBatchNorm") == 9
    assert kinds.count("ReLU") == 9 and kinds.count("MaxPooling2D") == 4
    assert stage.get_layer("fc2").dtype_policy.name == "float32"


def test_model_outputs_every_stage_and_works_for_any_point_count():
    rng = np.random.default_rng(2)
    mean_shape = rng.uniform(30, 80, (7, 2)).astype(np.float32)
    model = build_dan_model(mean_shape, np.full((SIZE, SIZE), 120.0), np.full((SIZE, SIZE), 60.0),
                            DanConfig(stages=3, base_filters=4, fc_units=16),
                            precision="mixed_bfloat16")
    outputs = model(rng.integers(0, 255, (2, SIZE, SIZE, 1)).astype(np.uint8), training=False)
    assert sorted(outputs) == ["landmarks", "stage_1", "stage_2", "stage_3"]
    for value in outputs.values():
        assert value.shape == (2, 7, 2) and value.dtype == tf.float32
    np.testing.assert_array_equal(outputs["landmarks"], outputs["stage_3"])


@pytest.mark.slow
def test_two_stage_dan_overfits_real_faces_and_reloads(tmp_path, faces):
    images, shapes = faces
    mean_shape, pixel_mean, pixel_std = statistics(images, shapes)
    path = write_tfrecord(tmp_path / "faces.tfrecord.gz", images, shapes)
    trainer_cfg = TrainerSection(batch_size=NUM_FACES, learning_rate=0.002,
                                 max_epochs_per_stage=12, patience=12, steps_per_epoch=10)
    result = train_dan(path, path, mean_shape, pixel_mean, pixel_std, TINY, trainer_cfg,
                       log_dir=str(tmp_path / "logs"), verbose=0, seed=0)
    model = result.model
    assert len(result.nme_inter_pupil) == 2
    predictions = model.predict(images, verbose=0)
    final_nme = float(np.mean(normalized_mean_error(shapes, predictions["landmarks"])))
    initial_nme = float(np.mean(normalized_mean_error(shapes, np.broadcast_to(mean_shape,
                                                                              shapes.shape))))
    print(f"S0 NME {initial_nme:.4f}, per stage {result.nme_inter_pupil}, final {final_nme:.4f}")
    assert result.initial_nme_inter_pupil == pytest.approx(initial_nme, rel=1e-4)
    assert final_nme == pytest.approx(result.nme_inter_pupil[-1], rel=1e-3)
    assert result.nme_inter_pupil[0] < 0.6 * initial_nme
    assert result.nme_inter_pupil[1] < 0.5 * initial_nme
    assert result.nme_inter_pupil[1] < result.nme_inter_pupil[0] * 1.05
    assert (tmp_path / "logs" / "stage_2").is_dir()

    keras_path = tmp_path / "dan.keras"
    model.save(keras_path)
    reloaded = keras.models.load_model(keras_path)
    for key, value in reloaded.predict(images, verbose=0).items():
        np.testing.assert_array_equal(value, predictions[key])

    export_dir = str(tmp_path / "saved_model")
    model.export(export_dir, verbose=False)
    served_model = tf.saved_model.load(export_dir)
    served = served_model.serve(tf.constant(images, tf.float32))
    for key, value in served.items():
        np.testing.assert_array_equal(value.numpy(), predictions[key])
    np.testing.assert_array_equal(stage_model(reloaded, 1).predict(images, verbose=0),
                                  predictions["stage_1"])


def test_mixed_bfloat16_training_keeps_geometry_in_float32(tmp_path, faces):
    images, shapes = faces
    mean_shape, pixel_mean, pixel_std = statistics(images, shapes)
    path = write_tfrecord(tmp_path / "faces.tfrecord.gz", images, shapes)
    trainer_cfg = TrainerSection(batch_size=4, max_epochs_per_stage=1, patience=1,
                                 steps_per_epoch=2, precision="mixed_bfloat16")
    result = train_dan(path, path, mean_shape, pixel_mean, pixel_std, TINY, trainer_cfg,
                       verbose=0, seed=0)
    model = result.model
    assert model.get_layer("s1_network").get_layer("conv1a").compute_dtype == "bfloat16"
    for name in ("s2_transform", "s2_warped_image", "s2_heatmap", "s2_landmarks"):
        assert model.get_layer(name).compute_dtype == "float32"
    assert all(np.isfinite(result.nme_inter_pupil))
