"""benchmarks/lever_ablation.py: every lever is a valid configuration that differs from the
baseline only in its own switch, at the same optimizer steps; a real tiny run on the demo faces
trains both arms from the shared prepared data and compares them face by face."""
import json
import pathlib

import pytest

from benchmarks import lever_ablation
from facealign.core import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
FAST = REPO / "configs" / "300w-fast.yaml"


@pytest.mark.parametrize("lever", sorted(set(lever_ablation.LEVERS) - {"served-boxes"}))
def test_each_lever_changes_only_its_switch_at_equal_steps(lever):
    steps = lever_ablation.equal_steps(12, 1e-4)
    base = config_lib.load(FAST, steps).model_dump()
    varied = config_lib.load(FAST, [*steps, *lever_ablation.LEVERS[lever]]).model_dump()
    assert varied["trainer"]["max_epochs_per_stage"] == 12 and varied["trainer"]["lr_drops"] == 0
    assert varied["trainer"]["time_budget_minutes"] is None
    changed = {(section, key) for section in base for key in base[section]
               if base[section][key] != varied[section][key]}
    expected = {"baseline": set(), "online-perturbation": {("trainer", "online_perturbation")},
                "mirror-extra": {("augment", "mirror_copies")},
                "milder-augment": {("augment", "rotation_sigma_deg"), ("augment", "scale_sigma")}}
    assert changed == expected[lever]


@pytest.mark.e2e
@pytest.mark.slow
def test_a_tiny_ablation_trains_both_arms_for_the_same_steps(tmp_path):
    out = tmp_path / "levers"
    assert lever_ablation.main(["--config", str(REPO / "pipeline.yaml"), "--out", str(out),
                                "--epochs", "1", "--only", "online-perturbation"]) == 0
    result = json.loads((out / "levers.json").read_text())
    base, lever = result["rows"]["baseline"], result["rows"]["online-perturbation"]
    assert base["steps"] == lever["steps"] > 0 and result["faces"] == 12
    assert lever["overrides"] == ["trainer.online_perturbation.rotation_sigma_deg=5"]
    paired = lever["csv_boxes"]["paired_difference_points"]
    assert paired["low"] <= paired["mean"] <= paired["high"]
    assert "paired_difference_points" not in base["csv_boxes"]
    # the second arm trained on the first arm's prepared data, not on a copy of its own
    [shared] = (out / "online-perturbation").glob("data-*")
    assert shared.is_symlink() and shared.resolve().parent == (out / "baseline").resolve()
