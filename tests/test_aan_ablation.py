"""benchmarks/aan_ablation.py: every Table 5 row is a valid configuration that differs only in
its own switches, with the paper's learning-rate drops at the same fractions of the steps."""
import pathlib

import pytest

from benchmarks.aan_ablation import PAPER, overrides_for, table
from facealign.core import config as config_lib
from trainer.aan_model import TABLE5

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "300w-aan.yaml"


@pytest.mark.parametrize("row", list(TABLE5))
def test_each_row_loads_with_its_switches_and_the_shared_budget(row):
    loaded = config_lib.load(CONFIG, overrides_for(row, epochs=8, steps_per_epoch=20,
                                                   batch_size=32))
    assert loaded.trainer.max_epochs_per_stage == 8
    assert loaded.trainer.steps_per_epoch == 20
    assert loaded.trainer.batch_size == 32
    assert loaded.trainer.warm_start == "none"
    # 25k and 40k of the paper's 45k iterations, as fractions of 160 steps
    assert list(loaded.model.aan.lr_boundaries) == [89, 142]
    defaults = config_lib.load(CONFIG).model.aan
    for key in ("attention", "embedding"):
        expected = TABLE5[row].get(key, getattr(defaults, key))
        assert getattr(loaded.model.aan, key) == expected


def test_rows_differ_from_the_aan_row_only_in_their_switches():
    base = set(overrides_for("AAN", 8, 40, 64))
    for row, switches in TABLE5.items():
        extra = set(overrides_for(row, 8, 40, 64)) - base
        assert len(extra) == len(switches), row


def test_table_prints_the_paper_rows_beside_ours():
    rows = {"AAN": {"steps": 160, "batch_size": 32, "minutes": 20.0,
                    "training_images_per_s": 4.3, "nme_inter_ocular": 9.5, "auc": 0.05,
                    "failure": 60.0}}
    text = table(rows)
    assert "| AAN | 160 x 32 | 20.0 | 4 | 9.50 | 0.050 | 60.0 | 1.73 | 7.98 |" in text
    assert set(PAPER) == set(TABLE5)
