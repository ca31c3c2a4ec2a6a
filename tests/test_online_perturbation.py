"""trainer.online_perturbation: each training batch warped again, every epoch, on real faces.

References: OpenCV's warpAffine for the pixels, numpy's geometry for the landmarks,
the sampled spread of many draws for the configured sigmas.
"""
import pathlib

import cv2
import numpy as np
import pytest
import tensorflow as tf
from real_faces import canonical_face, write_tfrecord
from scipy import ndimage

from facealign.core import config, geometry
from facealign.core.config import OnlinePerturbationSection, TrainerSection
from trainer import dan_input, online_perturbation

SIZE = 112
NUM_FACES = 6


@pytest.fixture(scope="module")
def faces(shared_data):
    paths = sorted((shared_data / "300w" / "afw").glob("*.pts"))[:NUM_FACES]
    images, shapes = zip(*(canonical_face(p, SIZE) for p in paths))
    return np.stack(images), np.stack(shapes)


def _draw(settings, batch, seeds=(3, 4)):
    return online_perturbation.random_similarities(tf.constant(seeds, tf.int64), batch, SIZE,
                                                   settings).numpy()


def test_the_warp_is_opencvs_and_the_landmarks_follow_it(faces):
    images, shapes = faces
    transforms = _draw(OnlinePerturbationSection(rotation_sigma_deg=15, scale_sigma=0.1,
                                                 translation_px=4), NUM_FACES)
    warped, moved = online_perturbation.perturb(
        tf.constant(images[..., None], tf.float32), tf.constant(shapes), tf.constant(transforms))
    for image, shape, transform, got, got_shape in zip(images, shapes, transforms,
                                                        warped.numpy(), moved.numpy()):
        expected = cv2.warpAffine(image.astype(np.float32), transform.astype(np.float32),
                                  (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        inner = (slice(4, -4), slice(4, -4))   # OpenCV's fixed-point weights differ at edges
        assert np.abs(got[..., 0][inner] - expected[inner]).mean() < 0.5
        np.testing.assert_allclose(got_shape, geometry.apply_transform(transform, shape),
                                   atol=1e-3)
        # the face moved with its landmarks: the same pixels under them as before
        before = ndimage.map_coordinates(image.astype(np.float64), shape[:, ::-1].T, order=1)
        after = ndimage.map_coordinates(got[..., 0], got_shape[:, ::-1].T, order=1)
        still = ndimage.map_coordinates(got[..., 0], shape[:, ::-1].T, order=1)
        assert np.abs(after - before).mean() < 0.35 * np.abs(still - before).mean()


def test_draws_are_similarities_about_the_centre_with_the_configured_spread():
    settings = OnlinePerturbationSection(rotation_sigma_deg=10, scale_sigma=0.08,
                                         translation_px=3)
    transforms = _draw(settings, 20000)
    linear = transforms[:, :, :2]
    np.testing.assert_allclose(linear[:, 0, 0], linear[:, 1, 1], atol=1e-6)
    np.testing.assert_allclose(linear[:, 0, 1], -linear[:, 1, 0], atol=1e-6)
    scales = np.hypot(linear[:, 0, 0], linear[:, 1, 0])
    angles = np.degrees(np.arctan2(linear[:, 1, 0], linear[:, 0, 0]))
    centre = np.full(2, (SIZE - 1) / 2)
    shifts = np.einsum("bij,j->bi", linear, centre) + transforms[:, :, 2] - centre
    assert np.std(angles) == pytest.approx(10, rel=0.05)
    assert np.std(scales) == pytest.approx(0.08, rel=0.05)
    assert np.mean(scales) == pytest.approx(1.0, abs=0.005)
    assert np.std(shifts, axis=0) == pytest.approx([3, 3], rel=0.05)
    assert scales.min() >= online_perturbation.MIN_SCALE
    still = _draw(OnlinePerturbationSection(rotation_sigma_deg=0, scale_sigma=0,
                                            translation_px=0), 5)
    np.testing.assert_allclose(still, np.broadcast_to(geometry.similarity(), (5, 2, 3)),
                               atol=1e-5)


def test_training_batches_are_new_every_pass_and_held_out_ones_untouched(tmp_path, faces):
    images, shapes = faces
    path = write_tfrecord(tmp_path / "faces.tfrecord.gz", images, shapes)
    plain = TrainerSection(batch_size=NUM_FACES, shuffle_buffer=1)
    moving = TrainerSection(batch_size=NUM_FACES, shuffle_buffer=1,
                            online_perturbation={"rotation_sigma_deg": 10})
    train, evaluation = dan_input.training_datasets(path, path, 68, SIZE, moving, seed=0)
    (first_images, first_shapes), = list(train)
    (second_images, second_shapes), = list(train)   # the next epoch: new draws
    assert first_images.shape == (NUM_FACES, SIZE, SIZE, 1)
    assert not np.allclose(first_shapes, second_shapes, atol=0.1)
    for got_shapes in (first_shapes, second_shapes):
        # shuffled: every face's landmarks are a similarity of one original's
        for shape in got_shapes.numpy():
            fits = [np.abs(geometry.apply_transform(geometry.estimate_similarity(s, shape), s)
                           - shape).max() for s in shapes]
            assert min(fits) < 1e-2
    (held_images, held_shapes), = list(evaluation)
    np.testing.assert_array_equal(held_images.numpy()[..., 0], images)
    np.testing.assert_array_equal(held_shapes.numpy(), shapes)
    (unmoved_images, _), = list(dan_input.training_datasets(path, None, 68, SIZE, plain,
                                                            seed=0)[0])
    assert sorted(unmoved_images.numpy().sum((1, 2, 3))) == sorted(images.sum((1, 2)))


def test_the_section_is_validated_naming_the_key():
    good = config.load(config_path(), ["trainer.online_perturbation.rotation_sigma_deg=8"])
    assert good.trainer.online_perturbation.rotation_sigma_deg == 8
    assert good.trainer.online_perturbation.translation_px == 2.0
    assert config.load(config_path()).trainer.online_perturbation is None
    with pytest.raises(config.ConfigError, match=r"trainer\.online_perturbation\.scale_sigma"):
        config.load(config_path(), ["trainer.online_perturbation.scale_sigma=-1"])
    with pytest.raises(config.ConfigError, match=r"trainer\.online_perturbation\.shear"):
        config.load(config_path(), ["trainer.online_perturbation.shear=1"])


def config_path():
    return pathlib.Path(__file__).resolve().parents[1] / "pipeline.yaml"
