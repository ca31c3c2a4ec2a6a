"""facealign/core/crop.py's numpy twin against its TensorFlow crop: the same pixels on real photos
(but for a rare one grey level where float rounding lands on .5),
for the box fits serving uses and for arbitrary affines, and its box checks against the
serving graph's."""
import cv2
import numpy as np
import pytest
from test_litert import random_affines

from facealign.core import crop, geometry
from facealign.core.data import read_dataset


@pytest.fixture(scope="module")
def faces(shared_data):
    records, _ = read_dataset(shared_data / "300w" / "afw",
                              boxes=[shared_data / "300w" / "boxes" / "afw.csv"])
    return records[:4]


def box_fits(record, rng) -> np.ndarray:
    """S0 (here: the face's own annotation) fitted to its box and to boxes grown, shrunk and
    moved off the photo's edges: the axis-aligned transforms every serving crop uses."""
    x0, y0, x1, y1 = record.box
    boxes = [record.box, [x0 - 400, y0 - 300, x1 + 500, y1 + 600],
             [x0 + 30, y0 + 30, x0 + 60, y0 + 55], [x0 - 1000, y0, x1 - 1000, y1]]
    boxes += [record.box + rng.normal(0, 20, 4) for _ in range(3)]
    return np.stack([geometry.box_fit_transform(record.landmarks, box) for box in boxes])


def test_same_pixels_as_tensorflow_on_real_photos(faces):
    rng = np.random.default_rng(0)
    compared = outside = mismatched = 0
    for record in faces:
        rgb = cv2.cvtColor(cv2.imread(str(record.image_path)), cv2.COLOR_BGR2RGB)
        height, width = rgb.shape[:2]
        transforms = np.concatenate([box_fits(record, rng),
                                     random_affines(rng, 6, width, height)])
        for image, order in ((rgb, "rgb"), (rgb[..., ::-1].copy(), "bgr"), (rgb[..., 1], "rgb"),
                             (rgb[..., 1:2], "rgb")):
            expected = crop.crops(image if order == "rgb" else rgb, transforms, 112)
            found = crop.crops_numpy(image, transforms, 112, order)
            assert found.dtype == np.uint8 and found.shape == expected.shape == (13, 112, 112)
            # the same arithmetic in float32, but TensorFlow's kernel may fuse or order it
            # otherwise: where a value lands on .5 the rounding can differ by one grey level
            # (seen: 1 pixel in 163,072 in a test worker; none in a plain process)
            differ = found.astype(int) - expected
            assert np.abs(differ).max() <= 1 and np.count_nonzero(differ) <= 1e-4 * found.size
            mismatched += np.count_nonzero(differ)
            compared += found.size
            outside += np.sum(expected == 0)
    assert compared == 4 * 4 * 13 * 112 * 112 and mismatched <= 1e-5 * compared
    assert 0.05 < outside / compared < 0.8      # the constant fill was exercised, and the photo


def test_one_transform_and_a_batch_agree(faces):
    record = faces[0]
    rgb = cv2.cvtColor(cv2.imread(str(record.image_path)), cv2.COLOR_BGR2RGB)
    transforms = box_fits(record, np.random.default_rng(1))
    batch = crop.crops_numpy(rgb, transforms, 64)
    np.testing.assert_array_equal(crop.crops_numpy(rgb, transforms[2], 64)[0], batch[2])


@pytest.mark.parametrize("image, message", [
    (np.zeros((8, 8), np.float32), "must be uint8"),
    (np.zeros((8, 8, 4), np.uint8), "HxWx3"),
    (np.zeros((8,), np.uint8), "HxWx3")])
def test_bad_images_are_named(image, message):
    with pytest.raises(ValueError, match=message):
        crop.crops_numpy(image, np.eye(2, 3), 16)


def test_bad_channel_order_is_named():
    with pytest.raises(ValueError, match="channel_order"):
        crop.crops_numpy(np.zeros((8, 8, 3), np.uint8), np.eye(2, 3), 16, "rgba")


@pytest.mark.parametrize("box, reason", [
    ([10, 10, float("nan"), 50], "is not finite"),
    ([50, 10, 10, 50], "is inverted (x1 < x0)"),
    ([10, 50, 50, 10], "is inverted (y1 < y0)"),
    ([10, 10, 10, 50], "is empty (x1 = x0 or y1 = y0)"),
    ([10, 10, 13, 50], "is too small (3 x 40 px; the least is 4 x 4)"),
    ([700, 10, 800, 50], "does not overlap the 640 x 480 image"),
    ([-3000, -3000, 3000, 3000], "is too large for the 640 x 480 image (6000 px; the most is 8 "
                                 "times its longer side)"),
    ([100, 100, 104, 104], None),                  # the least a box may be
    ([-2240, -2240, 2880, 2880], None)])           # the most: 8 x 640
def test_box_problem_words_the_graphs_refusals(box, reason):
    assert crop.box_problem(box, (480, 640, 3)) == reason
