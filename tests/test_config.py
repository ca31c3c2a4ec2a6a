"""pipeline.yaml loading: every mistake names its key; overrides validate too."""
import pathlib

import pytest
import yaml

from facealign.core import config
from facealign.core.config import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
MINIMAL = {"data": {"sources": [{"name": "demo", "root": "demo_data/300w"}]}}


def _write(tmp_path, tree):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.mark.parametrize("name", ["pipeline.yaml", *sorted(
    p.name for p in (REPO / "configs").glob("*.yaml"))])
def test_shipped_configs_are_valid(name):
    path = REPO / name if name == "pipeline.yaml" else REPO / "configs" / name
    cfg = config.load(path)
    assert cfg.data.sources


def test_defaults_follow_the_paper(tmp_path):
    cfg = config.load(_write(tmp_path, MINIMAL))
    assert cfg.trainer.batch_size == 64
    assert cfg.trainer.learning_rate == 0.001
    assert cfg.model.dan.stages == 2
    assert cfg.model.dan.heatmap_radius == 16
    assert cfg.augment.copies == 10
    assert cfg.data.on_error == "skip"


def test_unknown_key_is_named(tmp_path):
    tree = {**MINIMAL, "trainer": {"batch_szie": 32}}
    with pytest.raises(ConfigError, match=r"trainer\.batch_szie: unknown key"):
        config.load(_write(tmp_path, tree))


def test_unknown_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"trainr: unknown key"):
        config.load(_write(tmp_path, {**MINIMAL, "trainr": {}}))


def test_wrong_type_is_named(tmp_path):
    tree = {**MINIMAL, "trainer": {"batch_size": "many"}}
    with pytest.raises(ConfigError, match=r"trainer\.batch_size: .*'many'"):
        config.load(_write(tmp_path, tree))


def test_out_of_range_is_named(tmp_path):
    tree = {**MINIMAL, "model": {"dan": {"stages": 7}}}
    with pytest.raises(ConfigError, match=r"model\.dan\.stages: .*less than or equal to 3"):
        config.load(_write(tmp_path, tree))


def test_bad_value_inside_a_list_is_named(tmp_path):
    tree = {"data": {"sources": [{"name": "demo", "root": "x", "format": "xml"}]}}
    with pytest.raises(ConfigError, match=r"data\.sources\.0\.format"):
        config.load(_write(tmp_path, tree))


def test_missing_required_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"data: required key is missing"):
        config.load(_write(tmp_path, {"trainer": {}}))


def test_duplicate_source_names_are_refused(tmp_path):
    tree = {"data": {"sources": [{"name": "a", "root": "x"}, {"name": "a", "root": "y"}]}}
    with pytest.raises(ConfigError, match=r"data\.sources: .*repeated: \['a'\]"):
        config.load(_write(tmp_path, tree))


def test_set_overrides_with_yaml_typed_values(tmp_path):
    cfg = config.load(_write(tmp_path, MINIMAL), [
        "trainer.batch_size=32", "trainer.precision=mixed_bfloat16",
        "data.sources.0.boxes=[a.csv, b.csv]", "augment.mirror=false"])
    assert cfg.trainer.batch_size == 32
    assert cfg.trainer.precision == "mixed_bfloat16"
    assert cfg.data.sources[0].boxes == ["a.csv", "b.csv"]
    assert cfg.augment.mirror is False


def test_set_is_validated_like_the_file(tmp_path):
    path = _write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match=r"trainer\.batch_size: .*greater than or equal to 1"):
        config.load(path, ["trainer.batch_size=0"])
    with pytest.raises(ConfigError, match=r"trainer\.nope: unknown key"):
        config.load(path, ["trainer.nope=1"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        config.load(path, ["trainer.batch_size"])
    with pytest.raises(ConfigError, match="no such list item"):
        config.load(path, ["data.sources.3.root=x"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        config.load(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(bad)


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    cfg = config.load(_write(tmp_path, MINIMAL))
    assert cfg.resolve("demo_data/300w") == tmp_path / "demo_data" / "300w"
    assert cfg.resolve("/abs/path") == pathlib.Path("/abs/path")


def test_cli_config_check_reports_the_key(tmp_path, capsys):
    from facealign import cli

    path = _write(tmp_path, {**MINIMAL, "trainer": {"patience": -1}})
    assert cli.main(["config", "check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "trainer.patience" in err and "Traceback" not in err
    assert cli.main(["config", "check", "--config", str(path), "--set", "trainer.patience=3"]) == 0
    assert "patience: 3" in capsys.readouterr().out
