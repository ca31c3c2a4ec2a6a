"""benchmarks/data_scaling.py: each arm differs from the configuration only in its share of the
training faces and its start from random weights; the power-law fit recovers a known law; a
real tiny learning curve on the demo faces trains, scores and plots every arm."""
import json
import pathlib
import re

import numpy as np
import pytest

from benchmarks import data_scaling
from facealign.core import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
FAST = REPO / "configs" / "300w-fast.yaml"


def test_an_arm_changes_only_its_faces_its_start_and_its_stopping_cap():
    base = config_lib.load(FAST).model_dump()
    arm = config_lib.load(FAST, data_scaling.arm_overrides(0.25, 40)).model_dump()
    reseeded = config_lib.load(FAST, data_scaling.arm_overrides(0.25, 40, seed=3)).model_dump()
    assert reseeded["augment"]["seed"] == 3 and {**reseeded["augment"], "seed": 0} == arm["augment"]
    changed = {(section, key) for section in base for key in base[section]
               if base[section][key] != arm[section][key]}
    assert changed == {("data", "train_fraction"), ("trainer", "warm_start"),
                       ("trainer", "max_epochs_per_stage"), ("trainer", "time_budget_minutes")}
    assert arm["data"]["train_fraction"] == 0.25 and arm["trainer"]["warm_start"] == "none"
    assert arm["trainer"]["time_budget_minutes"] is None
    # the recipe's own stopping rules stay: each arm stops where its data has taught it all
    assert arm["trainer"]["patience"] == base["trainer"]["patience"]
    assert arm["trainer"]["lr_drops"] == base["trainer"]["lr_drops"]


def test_the_faces_read_once_are_the_subsets_train_fraction_gives():
    """read_faces filters all the training faces by the rule data.train_fraction applies: each
    fraction's faces are exactly those a run with that fraction trains on."""
    from facealign.core import splits

    demo = REPO / "pipeline.yaml"
    held_out, training = data_scaling.read_faces(str(demo), [0.25, 0.5, 1.0])
    for fraction, faces in training.items():
        cfg = config_lib.load(demo, [f"data.train_fraction={fraction:g}"])
        expected = splits.configured_faces(cfg, log=lambda line: None)
        assert [r.face_id for r in faces] == [r.face_id for r in expected["train"]]
        assert [r.face_id for r in held_out] == [r.face_id for r in expected["eval"]]
    assert len(training[0.25]) < len(training[0.5]) < len(training[1.0]) == 48


def test_the_fit_recovers_a_known_power_law():
    faces = np.array([250.0, 500.0, 1000.0, 2000.0])
    a, b = data_scaling.fit_power_law(faces, 20.0 * faces ** -0.3)
    assert a == pytest.approx(20.0) and b == pytest.approx(0.3)
    # noisy points: the least-squares line of the logarithms, as numpy's polyfit gives it
    nme = np.array([6.1, 5.0, 4.4, 3.7])
    slope, intercept = np.polyfit(np.log(faces), np.log(nme), 1)
    assert data_scaling.fit_power_law(faces, nme) == pytest.approx((np.exp(intercept), -slope))


def test_bad_fractions_are_refused(capsys):
    with pytest.raises(SystemExit):
        data_scaling.main(["--fractions", "0.5"])
    assert "two or more fractions" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        data_scaling.main(["--fractions", "0.5", "1", "--only", "0.3"])
    assert "--only 0.3 is not one of" in capsys.readouterr().err


def test_a_bad_reference_is_refused_before_any_training(tmp_path, capsys):
    out = tmp_path / "scaling"
    cases = ((f"x={tmp_path / 'missing'}", "--reference x: .*no such model folder"),
             (f"y={tmp_path}", "--reference y: .*not a SavedModel folder"),
             ("no-path", "--reference 'no-path': give NAME=PATH"))
    for reference, message in cases:
        with pytest.raises(SystemExit):
            data_scaling.main(["--fractions", "0.5", "1", "--out", str(out),
                               "--reference", reference])
        assert re.search(message, capsys.readouterr().err)
    assert not out.exists()   # refused before an arm was started


@pytest.mark.e2e
@pytest.mark.slow
def test_a_tiny_learning_curve_trains_scores_and_plots_every_arm(tmp_path):
    out = tmp_path / "scaling"
    args = ["--config", str(REPO / "pipeline.yaml"), "--out", str(out),
            "--fractions", "0.5", "1", "--max-epochs", "1", "--train-sample", "5"]
    assert data_scaling.main([*args, "--only", "0.5"]) == 0
    assert (out / "fraction-0.5" / "summary.json").exists()
    assert not (out / "fraction-1").exists() and not (out / "data_scaling.json").exists()
    assert data_scaling.main([*args, "--reference", f"half={out / 'fraction-0.5' / 'model'}"]) == 0
    result = json.loads((out / "data_scaling.json").read_text())
    half, full = result["rows"]
    # a reference model is scored on the same faces as the arms: the half arm's own model
    # scores what its row says
    reference = result["references"]["half"]
    assert reference["held_out"] == half["held_out"]
    assert reference["training_sample"] == half["training_sample"]
    assert half["training_faces"] < full["training_faces"] == 48
    for row in (half, full):
        assert row["steps"] > 0 and row["seed"] == 0
        assert row["held_out"]["faces"] == 12 and row["training_sample"]["faces"] == 5
        assert 0 < row["held_out"]["nme_inter_ocular_percent"] < 100
    # the fit is the rows' own: the line through their logarithms, read at 3,148 faces
    slope, intercept = np.polyfit(np.log([half["training_faces"], full["training_faces"]]),
                                  np.log([half["held_out"]["nme_inter_ocular_percent"],
                                          full["held_out"]["nme_inter_ocular_percent"]]), 1)
    assert result["power_law"]["b"] == pytest.approx(-slope, abs=1e-4)
    expected = np.exp(intercept) * data_scaling.FULL_300W_TRAINING_FACES ** slope
    assert result["at_full_300w"]["nme_inter_ocular_percent"] == pytest.approx(expected, abs=1e-3)
    assert (out / "data_scaling.png").read_bytes()[:4] == b"\x89PNG"
    # the arms trained on their own subsets: the smaller one prepared fewer training crops
    log = (out / "fraction-0.5" / "train.log").read_text()
    assert "data.train_fraction=0.5: training on" in log
