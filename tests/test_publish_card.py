"""The model card (facealign.core.model_card) says which network it describes, and publishing
(pipeline/publish.py) refuses what it cannot do in one line (unit level; the end-to-end test in
test_pipeline_e2e.py publishes a real pipeline run's newest version with `facealign publish`)."""
import pathlib

import pytest

from facealign.core import config as config_lib
from facealign.core import model_card
from facealign.core.model_format import ModelMetadata
from pipeline import publish

REPO = pathlib.Path(__file__).resolve().parents[1]


def _card(tmp_path, config_file, per_stage, overrides=()):
    cfg = config_lib.load(str(REPO / config_file), list(overrides))
    metadata = {"config": cfg.model_dump(mode="json"), "stages": len(per_stage),
                "validation_nme_inter_pupil_per_stage": per_stage,
                "validation_nme_inter_ocular_per_stage": [v * 0.7 for v in per_stage],
                "validation_nme_mean_shape": 0.2267, "training_seconds": 600.0,
                "epochs_per_stage": [3] * len(per_stage), "ended_by": ["patience"] * len(per_stage)}
    figures = {"count": 100, "nme_inter_ocular": 6.0, "nme_inter_pupil": 8.4,
               "nme_box_diagonal": 2.6, "auc_0.08": 0.3, "failure_rate_0.08": 12.0}
    report = {"metrics": {"all": figures}, "reason": "blessed"}
    version = tmp_path / "17"
    version.mkdir(exist_ok=True)
    return model_card.card("m", version, metadata, report, {}, config_file, "provenance")


def test_aan_card_names_its_network_and_schedule(tmp_path):
    text = _card(tmp_path, "configs/300w-aan.yaml", [0.12],
                 ["model.aan.lr_boundaries=[900,2800]"])
    assert "Attentional Alignment Network" in text
    assert "bottleneck widths 16/32/64/128, attention on, cosine embedding of d = 256" in text
    assert "/10 after 900 and /100 after 2800 steps" in text
    assert "- After training: validation NME 12.00% inter-pupil, 8.40% inter-ocular." in text
    assert "After stage" not in text
    assert "- Served with test-time flip averaging" in text      # the config turns it on


def test_dan_card_lists_each_stage(tmp_path):
    text = _card(tmp_path, "configs/300w-fast.yaml", [0.15, 0.08])   # a plain DAN
    assert "Deep Alignment Network (Kowalski et al. 2017), 2 stages" in text
    assert "- After stage 2: validation NME 8.00% inter-pupil, 5.60% inter-ocular." in text
    assert "bottleneck" not in text
    assert "flip averaging" not in text


def test_missing_eval_split_for_warmup_is_a_clear_error(tmp_path):
    model_dir = tmp_path / "1"
    ModelMetadata.from_dict({"image_size": 64, "mean_shape": [[1.0, 1.0], [2.0, 1.0], [1.5, 2.0]],
                             "warmup_requests": 1}).write(model_dir)
    with pytest.raises(publish.PublishError, match="no Augment eval split"):
        publish.ensure_real_warmup(tmp_path / "root", model_dir)


def test_publishing_with_nothing_pushed_is_one_line(tmp_path, capsys):
    from facealign import cli

    code = cli.main(["publish", "--config", str(REPO / "pipeline.yaml"), "--out",
                     str(tmp_path / "out"), "--set", f"serving.base_dir={tmp_path / 'none'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "facealign publish: error: " in err and "no pushed versions" in err
    assert not (tmp_path / "out").exists()


def test_the_card_evaluation_is_replaced_by_a_remeasurement():
    figures = {"count": 100, "nme_inter_ocular": 4.0, "nme_inter_pupil": 5.6,
               "nme_box_diagonal": 1.7, "auc_0.08": 0.5, "failure_rate_0.08": 2.0}
    old = ("# m\n\n" + model_card.EVALUATION_HEADING + " (old)\n\n"
           + "\n".join(model_card.evaluation_table({"all": {**figures, "nme_inter_ocular": 5.0}}))
           + "\n\n## Use\n")
    new = model_card.with_remeasured_evaluation(old, {"all": figures}, 5.0)
    assert "| all | 100 | 4.00% |" in new and "| all | 100 | 5.00% |" not in new
    assert "Before, scored through `predict_canonical` on Augment's OpenCV crops: 5.00%" in new
    assert new.startswith("# m\n\n") and new.endswith("\n\n## Use\n")
