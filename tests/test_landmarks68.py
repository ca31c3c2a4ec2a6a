"""The 68-point markup helpers, checked against real 300-W annotations."""
import numpy as np
import pytest

from facealign.core import geometry, landmarks68
from facealign.core.data.pts import read_pts


@pytest.fixture(scope="module")
def afw_shapes(shared_data):
    files = sorted((shared_data / "300w" / "afw").glob("*.pts"))[:120]
    return np.stack([read_pts(p) for p in files])


def mirror(shape, width, permutation=None):
    flipped = shape.copy()
    flipped[:, 0] = width - 1 - flipped[:, 0]
    return flipped if permutation is None else flipped[permutation]


# pairs that must read left-to-right on the image for an upright face
LEFT_OF = [(0, 16), (17, 26), (21, 22), (31, 35), (36, 45), (39, 42), (37, 44), (41, 46),
           (48, 54), (49, 53), (59, 55), (60, 64), (67, 65)]


def test_permutation_is_an_involution_over_all_points():
    p = landmarks68.mirror_permutation()
    assert sorted(p.tolist()) == list(range(68))
    np.testing.assert_array_equal(p[p], np.arange(68))


def test_only_midline_points_map_to_themselves():
    p = landmarks68.mirror_permutation()
    assert set(np.flatnonzero(p == np.arange(68)).tolist()) == {8, 27, 28, 29, 30, 33, 51, 57,
                                                                 62, 66}


def test_known_pairs():
    p = landmarks68.mirror_permutation()
    for i, j in [(0, 16), (17, 26), (21, 22), (31, 35), (36, 45), (39, 42), (37, 44), (38, 43),
                 (40, 47), (41, 46), (48, 54), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63),
                 (65, 67)]:
        assert p[i] == j and p[j] == i


def test_mirrored_real_faces_keep_anatomical_order(afw_shapes):
    p = landmarks68.mirror_permutation()
    width = 1000
    upright = [s for s in afw_shapes if s[45, 0] - s[36, 0] > 2 * abs(s[45, 1] - s[36, 1])]
    assert len(upright) > 50
    for shape in upright:
        for original in (shape, mirror(shape, width, p)):
            for i, j in LEFT_OF:
                assert original[i, 0] < original[j, 0], (i, j)
        unpermuted = mirror(shape, width)
        # the control: without the permutation the eyes swap sides
        assert unpermuted[36, 0] > unpermuted[45, 0]


def test_mirror_then_permute_matches_every_point_of_the_mean_face(afw_shapes):
    """The mean of many faces is nearly symmetric, so a single wrongly paired point stands out."""
    mean = geometry.procrustes_mean(afw_shapes)
    iod = landmarks68.inter_ocular_distance(mean)
    mirrored = mirror(mean, 0, landmarks68.mirror_permutation())
    residual = np.linalg.norm(geometry.fit_shape_to_shape(mirrored, mean) - mean, axis=1) / iod
    assert residual.max() < 0.06
    swapped = landmarks68.mirror_permutation()
    swapped[[40, 41]] = swapped[[41, 40]]  # a plausible mistake in the lower eyelid
    residual = np.linalg.norm(geometry.fit_shape_to_shape(mirror(mean, 0, swapped), mean) - mean,
                              axis=1) / iod
    assert residual.max() > 0.08


def test_pupils_and_corners(afw_shapes):
    shape = afw_shapes[0]
    eyes = landmarks68.pupils(shape)
    np.testing.assert_allclose(eyes[0], shape[36:42].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(eyes[1], shape[42:48].mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(landmarks68.outer_eye_corners(shape), shape[[36, 45]])
    assert np.isclose(landmarks68.inter_pupil_distance(shape), np.linalg.norm(eyes[0] - eyes[1]))
    assert np.isclose(landmarks68.inter_ocular_distance(shape),
                      np.linalg.norm(shape[36] - shape[45]))
    left, right = landmarks68.eye_contours(shape)
    assert left.shape == right.shape == (6, 2)


def test_batched_shapes(afw_shapes):
    batch = afw_shapes[:5]
    assert landmarks68.pupils(batch).shape == (5, 2, 2)
    np.testing.assert_allclose(landmarks68.inter_ocular_distance(batch),
                               [landmarks68.inter_ocular_distance(s) for s in batch], rtol=1e-6)


@pytest.mark.parametrize("function", [
    landmarks68.pupils, landmarks68.outer_eye_corners, landmarks68.eye_contours,
    landmarks68.inter_pupil_distance, landmarks68.inter_ocular_distance, landmarks68.check_68])
def test_other_point_counts_are_refused(function):
    with pytest.raises(ValueError, match="needs 68 landmarks, got 98"):
        function(np.zeros((98, 2), np.float32))


def test_permutation_for_other_counts_is_refused():
    with pytest.raises(ValueError, match="needs 68 landmarks, got 98"):
        landmarks68.mirror_permutation(98)
