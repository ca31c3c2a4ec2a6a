"""benchmarks/box_averaging.py: the perturbation pattern, and a real run on held-out faces."""
import numpy as np
import pytest

from benchmarks import box_averaging


def test_pattern_moves_and_scales_about_the_centre():
    boxes = box_averaging.perturbed_boxes([100, 200, 300, 600], 0.1)
    assert boxes.shape == (7, 4)
    np.testing.assert_allclose(boxes[0], [100, 200, 300, 600])
    sizes = boxes[:, 2:] - boxes[:, :2]
    centres = (boxes[:, 2:] + boxes[:, :2]) / 2
    np.testing.assert_allclose(sizes[1], [220, 440])       # 1 + jitter
    np.testing.assert_allclose(sizes[2], [180, 360])       # 1 - jitter
    np.testing.assert_allclose(centres[1:3], [[200, 400]] * 2)
    np.testing.assert_allclose(centres[3:] - [200, 400],   # moves of 0.1 of width / height
                               [[20, 0], [-20, 0], [0, 40], [0, -40]])
    assert box_averaging.CHOSEN[5] == [0, 3, 4, 5, 6]


def test_scores_held_out_faces(capsys):
    result = box_averaging.main(["--config", "configs/300w-fast.yaml", "--limit", "3",
                                 "--counts", "1", "7", "--jitter", "0.1"])
    assert result["faces"] == 3 and [r["boxes"] for r in result["rows"]] == [1, 7]
    single, averaged = result["rows"]
    assert single["relative_gain"] == 0 and 0 < single["nme_inter_ocular"] < 15
    # seven answers averaged differ from the single one, and not by much
    assert averaged["nme_inter_ocular"] != single["nme_inter_ocular"]
    assert abs(averaged["relative_gain"]) < 0.5


def test_bad_jitter_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        box_averaging.main(["--config", "configs/300w-fast.yaml", "--jitter", "0.7"])
    assert stop.value.code == 2 and "--jitter 0.7" in capsys.readouterr().err
