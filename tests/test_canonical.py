"""Canonical crops of real 300-W faces, augmentation, statistics and tf.Example round trips."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from facealign.core import canonical, canonical_example, crop, examples, geometry, landmarks68
from facealign.core.data.pts import read_pts


@pytest.fixture(scope="module")
def root(shared_data):
    return shared_data / "300w"


@pytest.fixture(scope="module")
def train_shapes(root):
    return np.stack([read_pts(p) for p in sorted((root / "afw").glob("*.pts"))])


@pytest.fixture(scope="module")
def frame(train_shapes):
    return canonical.CanonicalFrame.from_mean_shape(
        geometry.procrustes_mean(train_shapes), 112, 0.5)


@pytest.fixture(scope="module")
def faces(root):
    """A few real faces: (face_id, RGB image, landmarks, detector box)."""
    boxes = {}
    for table in sorted((root / "boxes").glob("*.csv")):
        with open(table) as f:
            for row in csv.DictReader(f):
                boxes[row["image"]] = np.array([row[k] for k in ("x0", "y0", "x1", "y1")],
                                               dtype=np.float64)
    chosen = (sorted((root / "afw").glob("*.jpg"))[:2]
              + sorted((root / "helen" / "trainset").glob("*.jpg"))[:1])
    result = []
    for path in chosen:
        key = path.relative_to(root).as_posix()
        image = np.asarray(Image.open(path).convert("RGB"))
        result.append((key, image, read_pts(path.with_suffix(".pts")), boxes[key]))
    return result


def luma(rgb) -> np.ndarray:
    return rgb.astype(np.float64) @ [0.299, 0.587, 0.114]


def source_image(rgb, sample):
    gray = luma(rgb)
    return gray[:, ::-1] if sample.mirrored else gray


def interior(points, image, margin=1.0):
    h, w = image.shape[:2]
    return ((points[:, 0] >= margin) & (points[:, 0] <= w - 1 - margin)
            & (points[:, 1] >= margin) & (points[:, 1] <= h - 1 - margin))


def bilinear(image, points):
    return ndimage.map_coordinates(image, [points[:, 1], points[:, 0]], order=1, mode="nearest")


def all_samples(faces, frame, config=None):
    if config is None:
        config = canonical.AugmentConfig()
    for face_id, image, landmarks, box in faces:
        yield image, canonical.eval_sample(image, landmarks, box, frame)
        for sample in canonical.training_samples(image, landmarks, box, face_id, frame, config):
            yield image, sample


# --- crops sit on the image ---------------------------------------------------------

def test_frame_places_s0_in_the_middle(frame):
    x0, y0, x1, y1 = geometry.bounding_box(frame.mean_shape)
    assert frame.size == 112
    assert np.isclose(max(x1 - x0, y1 - y0), 56, atol=1e-3)
    assert np.isclose((x0 + x1) / 2, 55.5, atol=1e-3) and np.isclose((y0 + y1) / 2, 55.5, atol=1e-3)
    assert (frame.mean_shape[36, 0] < frame.mean_shape[45, 0]
            and frame.mean_shape[8, 1] > frame.mean_shape[27, 1])


def test_every_crop_is_the_original_sampled_through_to_original(faces, frame):
    """Independent reference: canonical pixel p == bilinear(original, to_original(p)), mirrored
    image for mirrored samples."""
    grid = np.stack(np.meshgrid(np.arange(112.0), np.arange(112.0)), axis=-1).reshape(-1, 2)
    count = 0
    for rgb, sample in all_samples(faces, frame):
        assert sample.image.dtype == np.uint8 and sample.image.shape == (112, 112)
        original = source_image(rgb, sample)
        where = geometry.apply_transform(sample.to_original, grid)
        inside = interior(where, original)
        difference = np.abs(sample.image.reshape(-1)[inside] - bilinear(original, where[inside]))
        # cv2.warpAffine quantises sample positions to 1/32 px (INTER_BITS=5): up to
        # |gradient| / 64 grey levels at the sharpest edges (4 for a 0-255 step), plus
        # rounding; a half-pixel offset instead moves the mean by several levels.
        assert difference.max() <= 4.5 and difference.mean() < 0.6
        # black outside
        assert np.all(sample.image.reshape(-1)[~interior(where, original, -1.0)] == 0)
        count += 1
    assert count == 3 * 11


def test_landmarks_map_back_to_the_ground_truth(faces, frame):
    for (face_id, rgb, landmarks, box) in faces:
        for sample in canonical.training_samples(rgb, landmarks, box, face_id, frame):
            expected = (landmarks if not sample.mirrored
                        else canonical.mirror_face(rgb, landmarks, box)[1])
            np.testing.assert_allclose(sample.original_landmarks, expected)
            np.testing.assert_allclose(
                geometry.apply_transform(sample.to_original, sample.landmarks),
                sample.original_landmarks, atol=1e-3)


def test_patches_around_landmarks_match_the_original(faces, frame):
    """Sample 5x5 canonical-pixel patches around each landmark in both images; a 2-pixel slip
    must do much worse."""
    offsets = np.stack(np.meshgrid(np.arange(-2.0, 3.0), np.arange(-2.0, 3.0)),
                       axis=-1).reshape(-1, 2)

    def patch_error(sample, original, slip):
        errors = []
        for point in sample.landmarks.astype(np.float64):
            canonical_points = point + offsets
            original_points = geometry.apply_transform(sample.to_original, canonical_points + slip)
            if (interior(canonical_points, sample.image).all()
                    and interior(original_points, original).all()):
                canonical_values = bilinear(sample.image.astype(np.float64), canonical_points)
                errors.append(np.abs(canonical_values - bilinear(original, original_points)).mean())
        return np.mean(errors) if len(errors) >= 10 else None

    for rgb, sample in all_samples(faces, frame):
        original = source_image(rgb, sample)
        aligned = patch_error(sample, original, 0.0)
        if aligned is None:  # a perturbation that pushed most of the face out of the frame
            continue
        slipped = min(patch_error(sample, original, np.array(s))
                      for s in [(2.0, 0), (0, 2.0), (-2.0, 0), (0, -2.0)])
        assert aligned < 10 and aligned < 0.4 * slipped, (aligned, slipped)


def test_eval_crop_is_scale_and_translation_near_s0(faces, frame):
    for _, rgb, landmarks, box in faces:
        sample = canonical.eval_sample(rgb, landmarks, box, frame)
        scale, angle = geometry.scale_and_angle(sample.to_original)
        assert angle == 0 and scale > 0
        assert not sample.mirrored
        fitted = geometry.apply_transform(sample.to_canonical,
                                          geometry.fit_shape_to_box(frame.mean_shape, box))
        np.testing.assert_allclose(fitted, frame.mean_shape, atol=1e-3)
        # the detector box is on the face, so the ground truth lands near S0
        assert np.linalg.norm(sample.landmarks - frame.mean_shape, axis=1).mean() < 0.1 * 112


def test_crop_accepts_gray_and_colour(faces, frame):
    _, rgb, _, box = faces[0]
    to_original = geometry.invert_transform(canonical.eval_transform(frame, box))
    gray = np.round(luma(rgb)).astype(np.uint8)
    np.testing.assert_array_equal(crop.crops(gray[:, :, None], to_original, 64),
                                  crop.crops(gray, to_original, 64))
    # one grayscale conversion for every input: a colour image is not rounded to uint8 gray
    # before sampling, so its crop is within a grey level of the pre-rounded gray's
    difference = np.abs(crop.crops(rgb, to_original, 112).astype(int)
                        - crop.crops(gray, to_original, 112).astype(int))
    assert difference.max() <= 1
    with pytest.raises(ValueError, match="uint8"):
        crop.crops(gray.astype(np.float32), to_original, 112)


def test_the_exported_graph_decodes_and_crops_exactly_as_training(faces, frame, root):
    """Augment decodes the photo's bytes with crop.decode_gray, as the serving graph does."""
    key, _, landmarks, box = faces[0]
    encoded = (root / key).read_bytes()
    from_bytes = canonical.eval_sample(encoded, landmarks, box, frame)
    batch = crop.BoxFit(frame.mean_shape)
    scale, centre = batch.scale_and_centre(np.asarray([box], np.float32))
    in_graph = crop.warp(crop.decode_gray(encoded), batch.to_original(scale, centre), 112)
    # the same pixels up to the transform's float32 (graph) vs float64 (numpy) rounding, which
    # tips a rare bilinear value across a .5 grey level
    difference = np.abs(in_graph.numpy()[0, :, :, 0].astype(int) - from_bytes.image)
    assert difference.max() <= 1 and difference.mean() < 0.01, difference.mean()


def test_box_fit_in_tensorflow_matches_numpy(frame):
    rng = np.random.default_rng(4)
    corners = rng.uniform(0, 400, (20, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 300, (20, 2))], axis=1)
    fit = crop.BoxFit(frame.mean_shape)
    scale, centre = fit.scale_and_centre(boxes.astype(np.float32))
    ours = fit.to_original(scale, centre).numpy()
    for box, affine in zip(boxes, ours):
        np.testing.assert_allclose(affine, geometry.box_fit_transform(frame.mean_shape, box),
                                   rtol=1e-5, atol=1e-3)
    points = rng.uniform(0, 112, (20, 68, 2)).astype(np.float32)
    mapped = fit.points_to_original(points, scale, centre).numpy()
    for i, box in enumerate(boxes):
        np.testing.assert_allclose(
            mapped[i], geometry.apply_transform(geometry.box_fit_transform(frame.mean_shape, box),
                                                points[i].astype(np.float64)), atol=1e-3)


# --- mirroring ---------------------------------------------------------------------------

def test_mirror_face_flips_pixels_points_and_box(faces):
    _, rgb, landmarks, box = faces[0]
    gray = luma(rgb)
    flipped, flipped_landmarks, flipped_box = canonical.mirror_face(gray, landmarks, box)
    width = gray.shape[1]
    np.testing.assert_array_equal(flipped[:, 0], gray[:, width - 1])
    permutation = landmarks68.mirror_permutation()
    np.testing.assert_allclose(bilinear(flipped, flipped_landmarks.astype(np.float64)),
                               bilinear(gray, landmarks[permutation].astype(np.float64)), atol=1e-2)
    np.testing.assert_allclose(flipped_box,
                               [width - 1 - box[2], box[1], width - 1 - box[0], box[3]])
    for points in (landmarks, flipped_landmarks):
        assert (points[36, 0] < points[45, 0] and points[0, 0] < points[16, 0]
                and points[48, 0] < points[54, 0])


def test_mirrored_samples_keep_anatomy_on_the_right_side(faces, frame):
    for face_id, rgb, landmarks, box in faces:
        samples = canonical.training_samples(rgb, landmarks, box, face_id, frame)
        mirrored = [s for s in samples if s.mirrored]
        assert len(mirrored) == 5 and not any(s.mirrored for s in samples[:5])
        for sample in mirrored:
            # point 36 (outer corner of the subject's right eye) stays on the image's left, in
            # the mirrored image
            assert sample.original_landmarks[36, 0] < sample.original_landmarks[45, 0]
            eyes = landmarks68.pupils(sample.original_landmarks)
            assert eyes[0, 0] < eyes[1, 0]
            # and it is the original's point 45, flipped
            assert np.isclose(sample.original_landmarks[36, 0], rgb.shape[1] - 1 - landmarks[45, 0])


def test_mirroring_other_markups_needs_a_permutation():
    image = np.zeros((50, 60), np.uint8)
    points = np.random.default_rng(0).uniform(5, 45, (98, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="needs 68 landmarks, got 98"):
        canonical.mirror_face(image, points, [5, 5, 45, 45])
    reverse = np.arange(98)[::-1]
    _, flipped, _ = canonical.mirror_face(image, points, [5, 5, 45, 45], permutation=reverse)
    np.testing.assert_allclose(flipped[0], [59 - points[97, 0], points[97, 1]])
    frame = canonical.CanonicalFrame.from_mean_shape(points, 32)
    with pytest.raises(ValueError, match="needs 68 landmarks, got 98"):
        canonical.training_samples(image, points, [5, 5, 45, 45], "x", frame)
    config = canonical.AugmentConfig(copies=4, mirror=False)
    assert len(canonical.training_samples(image, points, [5, 5, 45, 45], "x", frame, config)) == 4
    assert len(canonical.training_samples(image, points, [5, 5, 45, 45], "x", frame,
                                          canonical.AugmentConfig(copies=4),
                                          permutation=reverse)) == 4


# --- determinism and statistics ---------------------------------------------------------

def test_same_seed_and_face_give_identical_samples(faces, frame):
    face_id, rgb, landmarks, box = faces[0]
    first = canonical.training_samples(rgb, landmarks, box, face_id, frame)
    second = canonical.training_samples(rgb, landmarks, box, face_id, frame)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.to_original, b.to_original)
    other_face = canonical.training_samples(rgb, landmarks, box, face_id + "#2", frame)
    other_seed = canonical.training_samples(rgb, landmarks, box, face_id, frame,
                                            canonical.AugmentConfig(seed=1))
    for a, b, c in zip(first, other_face, other_seed):
        assert not np.allclose(a.to_original, b.to_original)
        assert not np.allclose(a.to_original, c.to_original)
    fewer = canonical.training_samples(rgb, landmarks, box, face_id, frame,
                                       canonical.AugmentConfig(copies=10, mirror=False))
    for a, b in zip(first[:5], fewer[:5]):  # sample k depends only on (seed, face, k)
        np.testing.assert_array_equal(a.to_original, b.to_original)


def test_perturbations_do_not_depend_on_the_process_hash_seed():
    code = ("from facealign.core import canonical; "
            "print(canonical.perturbation_rng(3, 'afw/1_1', 2).normal())")
    outputs = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        outputs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                   text=True, check=True).stdout)
    assert outputs == {f"{canonical.perturbation_rng(3, 'afw/1_1', 2).normal()}\n"}


def test_perturbation_statistics_match_the_sigmas():
    config = canonical.AugmentConfig()
    draws = [canonical.draw_perturbation(canonical.perturbation_rng(0, f"face{i}", i % 10), config)
             for i in range(4000)]
    angles = np.array([d.angle for d in draws])
    scales = np.array([d.scale for d in draws])
    shifts = np.array([d.shift for d in draws])
    assert abs(np.rad2deg(angles.std()) - 20) < 1.0 and abs(np.rad2deg(angles.mean())) < 1.5
    assert abs(scales.std() - 0.25) < 0.015 and abs(scales.mean() - 1) < 0.02
    assert scales.min() >= config.min_scale
    np.testing.assert_allclose(shifts.std(axis=0), [0.2, 0.2], atol=0.012)
    np.testing.assert_allclose(shifts.mean(axis=0), [0, 0], atol=0.012)


@pytest.mark.parametrize("unit", canonical.TRANSLATION_UNITS)
def test_samples_apply_the_drawn_perturbation(faces, frame, unit):
    """Eval crop -> training crop is the inverse of the perturbation, read in canonical units
    about S0's centre; the shift is a fraction of the face (face) or S0's canonical size
    taken as original-image pixels (frame_pixels)."""
    config = canonical.AugmentConfig(copies=6, mirror=False, translation_unit=unit)
    s0 = frame.mean_shape.astype(np.float64)
    x0, y0, x1, y1 = geometry.bounding_box(s0)
    centre = s0.mean(axis=0)
    for face_id, rgb, landmarks, box in faces:
        base = canonical.eval_sample(rgb, landmarks, box, frame)
        for index, sample in enumerate(canonical.training_samples(rgb, landmarks, box, face_id,
                                                                  frame, config)):
            drawn = canonical.draw_perturbation(
                canonical.perturbation_rng(config.seed, face_id, index), config)
            eval_to_train = geometry.compose(sample.to_canonical, base.to_original)
            scale, angle = geometry.scale_and_angle(eval_to_train)
            assert np.isclose(scale, 1 / drawn.scale) and np.isclose(angle, -drawn.angle)
            moved = geometry.apply_transform(eval_to_train, centre) - centre
            shift = -geometry.apply_transform(geometry.similarity(drawn.scale, drawn.angle), moved)
            # frame_pixels: original pixels, so in canonical units times the crop's scale
            per_pixel = 1.0 if unit == "face" else geometry.scale_and_angle(base.to_canonical)[0]
            np.testing.assert_allclose(shift / [x1 - x0, y1 - y0], drawn.shift * per_pixel,
                                       atol=1e-6)
            np.testing.assert_allclose(sample.landmarks,
                                       geometry.apply_transform(eval_to_train, base.landmarks),
                                       atol=1e-3)


# --- accumulators ---------------------------------------------------------------

def test_pixel_stats_merge_equals_all_at_once():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 16, 16), dtype=np.uint8)
    images[:, 0, 0] = 7  # a constant pixel gets the floor, not zero
    whole = canonical.PixelStats().add_batch(images)
    parts = [canonical.PixelStats() for _ in range(3)]
    for i, image in enumerate(images):
        parts[i % 3].add(image if i % 2 else image[:, :, None])
    merged = (canonical.PixelStats().merge(parts[0]).merge(canonical.PixelStats())
              .merge(parts[1]).merge(parts[2]))
    (mean, std), (mean2, std2) = whole.extract(), merged.extract()
    np.testing.assert_allclose(mean, mean2, rtol=1e-6)
    np.testing.assert_allclose(std, std2, rtol=1e-5)
    mean, std = merged.extract(min_std=1.0)
    np.testing.assert_allclose(mean, images.mean(axis=0), rtol=1e-6)
    expected = np.maximum(images.astype(np.float64).std(axis=0), 1.0)
    np.testing.assert_allclose(std, expected, rtol=1e-5)
    assert std[0, 0] == 1.0 and merged.count == 37
    with pytest.raises(ValueError):
        canonical.PixelStats().extract()


def test_mean_shape_accumulator_merges_and_matches_iterative_procrustes(train_shapes):
    rng = np.random.default_rng(1)
    moved = np.stack([geometry.apply_transform(
        geometry.similarity(rng.uniform(0.5, 2), rng.normal(0, 0.2), rng.uniform(-100, 100, 2)), s)
        for s in train_shapes])
    whole = canonical.ProcrustesMeanAccumulator()
    for shape in moved:
        whole.add(shape)
    parts = [canonical.ProcrustesMeanAccumulator() for _ in range(4)]
    for i, shape in enumerate(moved):
        parts[i % 4].add(shape)
    merged = (parts[3].merge(parts[1]).merge(canonical.ProcrustesMeanAccumulator())
              .merge(parts[0]).merge(parts[2]))
    assert merged.count == len(moved)
    np.testing.assert_allclose(merged.extract(), whole.extract(), atol=1e-10)
    np.testing.assert_allclose(whole.extract(), geometry.procrustes_mean(moved), atol=1e-7)
    mean = whole.extract()
    assert mean[36, 0] < mean[45, 0] and mean[8, 1] > mean[27, 1]  # upright, not mirrored


# --- tf.Example ----------------------------------------------------------------------

def test_tf_example_round_trip(faces, frame):
    import tensorflow as tf

    face_id, rgb, landmarks, box = faces[0]
    samples = canonical.training_samples(rgb, landmarks, box, face_id, frame,
                                         canonical.AugmentConfig(copies=2))
    serialized = [canonical_example.encode_canonical_example(s, face_id, "300w", "afw")
                  .SerializeToString()
                  for s in samples]

    for sample, data in zip(samples, serialized):
        record = canonical_example.decode_canonical_example(data)
        assert (record.face_id, record.dataset, record.subset) == (face_id, "300w", "afw")
        np.testing.assert_array_equal(record.sample.image, sample.image)
        np.testing.assert_allclose(record.sample.landmarks, sample.landmarks)
        np.testing.assert_allclose(record.sample.to_original, sample.to_original, rtol=1e-6,
                                   atol=1e-4)
        np.testing.assert_allclose(record.sample.original_landmarks, sample.original_landmarks)
        np.testing.assert_allclose(record.sample.box, sample.box)
        assert record.sample.mirrored == sample.mirrored

        parsed = canonical_example.parse_canonical_example(tf.constant(data), 68, 112)
        assert (parsed[examples.IMAGE].dtype == tf.uint8
                and parsed[examples.IMAGE].shape == (112, 112, 1))
        assert (parsed[examples.LANDMARKS].dtype == tf.float32
                and parsed[examples.LANDMARKS].shape == (68, 2))
        np.testing.assert_array_equal(parsed[examples.IMAGE].numpy()[:, :, 0], sample.image)
        np.testing.assert_allclose(parsed[examples.LANDMARKS].numpy(), sample.landmarks)
        np.testing.assert_allclose(parsed[examples.TO_ORIGINAL].numpy(), sample.to_original,
                                   rtol=1e-6, atol=1e-4)
        assert int(parsed[examples.MIRRORED]) == int(sample.mirrored)
        assert parsed[examples.FACE_ID].numpy().decode() == face_id

    dataset = tf.data.Dataset.from_tensor_slices(serialized).batch(2).map(
        lambda batch: canonical_example.parse_canonical_examples(batch, 68, 112))
    batch = next(iter(dataset))
    assert (batch[examples.IMAGE].shape == (2, 112, 112, 1)
            and batch[examples.LANDMARKS].shape == (2, 68, 2))
    np.testing.assert_array_equal(batch[examples.IMAGE].numpy()[..., 0], [s.image for s in samples])
    np.testing.assert_allclose(batch[examples.ORIGINAL_LANDMARKS].numpy(),
                               [s.original_landmarks for s in samples])
    np.testing.assert_array_equal(batch[examples.MIRRORED].numpy(), [0, 1])
