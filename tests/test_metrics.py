"""Error measures against hand-computed values."""
import pathlib

import numpy as np
import pytest
from PIL import Image

from facealign.core import metrics


def _face(scale=1.0):
    """A 68-point shape whose eye corners / pupils are at known places."""
    gt = np.zeros((68, 2))
    gt[36:42] = [0, 0]      # left eye contour, centroid (0, 0)
    gt[42:48] = [30, 0]     # right eye contour, centroid (30, 0)
    gt[36] = [-5, 0]        # outer left corner
    gt[45] = [35, 0]        # outer right corner
    gt[42:48] = [[30, 0], [30, 0], [30, 0], [35, 0], [30, 0], [30, 0]]
    gt[0] = [-20, -10]      # widest point of the box
    gt[8] = [40, 50]        # lowest point
    return gt * scale


def test_known_normalizing_distances():
    gt = _face()[None]
    # eye contours: left 36..41 has (-5,0) and five (0,0) -> centroid (-5/6, 0)
    left = np.array([-5 / 6, 0.0])
    right = np.array([30 + 5 / 6, 0.0])
    assert metrics.normalizing_distance(gt, "inter_ocular") == pytest.approx([40.0])
    assert metrics.normalizing_distance(gt, "inter_pupil") == pytest.approx(
        [np.linalg.norm(right - left)])
    assert metrics.normalizing_distance(gt, "box_diagonal") == pytest.approx([np.hypot(60, 60)])


def test_uniform_shift_gives_shift_over_distance():
    gt = _face()[None]
    pred = gt + [3.0, 4.0]      # every point 5 px off
    assert metrics.face_errors(pred, gt, "inter_ocular") == pytest.approx([5 / 40])
    assert metrics.face_errors(pred, gt, "box_diagonal") == pytest.approx([5 / np.hypot(60, 60)])


def test_only_some_points_off():
    gt = _face()[None]
    pred = gt.copy()
    pred[0, :34] += [8.0, 0]    # half the points 8 px off -> mean 4 px
    assert metrics.face_errors(pred, gt) == pytest.approx([4 / 40])


def test_auc_and_failure_by_hand():
    errors = np.array([0.0, 0.02, 0.04, 0.08, 0.2])
    # contributions max(0, 0.08 - e): 0.08, 0.06, 0.04, 0, 0 -> mean 0.036
    assert metrics.auc(errors, 0.08) == pytest.approx(0.036 / 0.08)
    assert metrics.failure_rate(errors, 0.08) == pytest.approx(2 / 5)  # 0.08 counts as failure


def test_auc_matches_numerical_integration_of_the_ced():
    rng = np.random.default_rng(0)
    errors = rng.gamma(2.0, 0.02, size=500)
    grid = np.linspace(0, 0.08, 200001)
    ced = np.searchsorted(np.sort(errors), grid, side="right") / len(errors)
    assert metrics.auc(errors) == pytest.approx(np.trapezoid(ced, grid) / 0.08, abs=1e-4)


def test_summary_percent_and_keys():
    gt = np.stack([_face(), _face(2.0)])
    pred = gt + [[[4.0, 0.0]], [[0.0, 0.0]]]
    result = metrics.summary(pred, gt)
    assert set(result) == {"count", "nme_inter_ocular", "nme_inter_pupil", "nme_box_diagonal",
                           "auc_0.08", "failure_rate_0.08"}
    assert result["count"] == 2
    assert result["nme_inter_ocular"] == pytest.approx(100 * (4 / 40 + 0) / 2)
    assert result["failure_rate_0.08"] == pytest.approx(50.0)
    assert result["auc_0.08"] == pytest.approx((0 + 1) / 2)


def test_other_point_counts_use_the_box_diagonal():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 100, size=(3, 29, 2))
    result = metrics.summary(gt + 1.0, gt)
    assert result["nme_inter_ocular"] is None and result["nme_inter_pupil"] is None
    assert result["nme_box_diagonal"] > 0
    with pytest.raises(ValueError, match="needs 68 landmarks, got 29"):
        metrics.face_errors(gt, gt, "inter_ocular")


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\[B, N, 2\]"):
        metrics.face_errors(np.zeros((2, 68, 2)), np.zeros((2, 67, 2)))


def test_ced_plot_is_a_png(tmp_path):
    path = tmp_path / "ced.png"
    metrics.plot_ced({"a": np.array([0.01, 0.03, 0.1]), "b": np.array([0.02])}, path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (600, 450)


def test_default_normalization_is_inter_ocular_for_68_points_else_box_diagonal():
    assert metrics.default_normalization(68) == "inter_ocular"
    assert metrics.default_normalization(98) == metrics.default_normalization(29) == "box_diagonal"
    assert metrics.default_normalization(68, "inter_pupil") == "inter_pupil"
    assert metrics.default_normalization(5, "inter_pupil") == "box_diagonal"
    assert metrics.default_normalization(68, "box_diagonal") == "box_diagonal"
    assert metrics.default_normalization(68, "pupils") == "inter_pupil"


def test_legacy_names_are_aliases():
    gt = _face()[None]
    for legacy, name in [("corners", "inter_ocular"), ("pupils", "inter_pupil"),
                         ("diagonal", "box_diagonal")]:
        assert metrics.normalization_name(legacy) == name
        assert metrics.normalizing_distance(gt, legacy) == metrics.normalizing_distance(gt, name)
    assert ([metrics.normalization_name(n) for n in metrics.NORMALIZATIONS]
            == list(metrics.NORMALIZATIONS))
    with pytest.raises(ValueError, match="unknown normalization 'eyes'"):
        metrics.normalization_name("eyes")


def test_aan_config_takes_the_names_and_the_legacy_ones():
    import json

    from facealign.core import config as config_lib

    assert config_lib.AanConfig().normalization == "inter_ocular"
    for legacy, name in metrics.LEGACY_NORMALIZATIONS.items():
        assert config_lib.AanConfig(normalization=legacy).normalization == name
        assert config_lib.AanConfig(normalization=name).normalization == name
    config = config_lib.AanConfig()
    config.normalization = "pupils"     # --set goes through assignment
    assert config.normalization == "inter_pupil"
    with pytest.raises(ValueError):
        config_lib.AanConfig(normalization="eyes")
    # the configuration a model pushed on 2026-11-21 recorded in its metadata still loads
    # (pretrained/aan-300w version 1795285831, before issue #14 replaced it)
    saved = json.loads((pathlib.Path(__file__).parent / "data"
                        / "aan-300w-1795285831-config.json").read_text())
    assert saved["model"]["aan"]["normalization"] == "corners"
    assert config_lib.from_dict(saved).model.aan.normalization == "inter_ocular"


def test_paired_difference_against_a_numpy_bootstrap():
    rng = np.random.default_rng(3)
    a, b = rng.gamma(3.0, 1.0, 40), rng.gamma(3.0, 1.0, 40)
    result = metrics.paired_difference(a, b, resamples=500, seed=7)
    draws = np.random.default_rng(7).integers(0, 40, size=(500, 40))
    means = np.array([(a[d] - b[d]).mean() for d in draws])
    assert result["mean"] == pytest.approx((a - b).mean())
    assert result["low"] == pytest.approx(np.quantile(means, 0.025))
    assert result["high"] == pytest.approx(np.quantile(means, 0.975))
    assert result["faces"] == 40


def test_a_constant_paired_difference_has_no_spread():
    result = metrics.paired_difference(np.full(5, 3.0), np.full(5, 2.5))
    assert result["mean"] == result["low"] == result["high"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="equal-length"):
        metrics.paired_difference(np.ones(3), np.ones(4))
