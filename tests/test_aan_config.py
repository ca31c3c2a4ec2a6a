"""model.aan: Table 5's switches, the backbone depth and their errors, named by key."""
import pathlib
import re

import pytest
import yaml

from facealign.core import config
from facealign.core.config import AanConfig, ConfigError
from trainer.aan_model import TABLE5

REPO = pathlib.Path(__file__).resolve().parents[1]
MINIMAL = {"data": {"sources": [{"name": "demo", "root": "demo_data/300w"}]},
           "model": {"name": "aan"}}


def _load(tmp_path, *overrides):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    return config.load(path, list(overrides)).model.aan


def test_defaults(tmp_path):
    aan = _load(tmp_path)
    assert aan.attention and aan.intermediate_supervision and aan.embedding == "cosine"
    assert aan.units_per_block == [2, 2, 2, 2] and aan.weight_decay == 0.001


@pytest.mark.parametrize("row", list(TABLE5))
def test_table5_rows_load_from_set_overrides(tmp_path, row):
    overrides = [f"model.aan.{key}={str(value).lower()}" for key, value in TABLE5[row].items()]
    aan = _load(tmp_path, *overrides)
    assert aan == AanConfig(**TABLE5[row])
    # no attention maps, no heads reading them: "w/o attention" is one switch
    assert aan.intermediate_supervision == aan.attention
    # the dump loads back to the same row (what the Trainer's custom_config carries)
    assert AanConfig(**aan.model_dump()) == aan


def test_supervision_follows_a_later_attention_change():
    aan = AanConfig()
    aan.attention = False
    assert aan.intermediate_supervision is False
    assert AanConfig(intermediate_supervision=False).attention


@pytest.mark.parametrize("overrides, message", [
    (["model.aan.attention=false", "model.aan.intermediate_supervision=true"],
     "model.aan.intermediate_supervision: the intermediate heads regress from the "
     "attention-weighted features"),
    (["model.aan.units_per_block=[3,4,6]"],
     "model.aan.units_per_block: List should have at least 4"),
    (["model.aan.units_per_block=[3,0,6,3]"], "model.aan.units_per_block.1: Input should be "
                                              "greater than 0"),
    (["model.aan.embedding=nonlinear"], "model.aan.embedding: Input should be 'cosine', 'none'"),
])
def test_errors_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _load(tmp_path, *overrides)


def test_shipped_aan_config_sets_the_depth():
    aan = config.load(REPO / "configs" / "300w-aan.yaml").model.aan
    assert aan.units_per_block == [2, 2, 2, 2] and aan.base_filters == 16
