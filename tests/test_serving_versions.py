"""serving/versions.py's rule for which SavedModel a path means (TF Serving's "latest" policy),
on the committed pretrained models: one helper for every --model option and facealign.load."""
import pathlib

import pytest

from facealign.core import model_paths
from serving import versions
from serving.errors import ModelError

REPO = pathlib.Path(__file__).resolve().parents[1]
DAN = REPO / "pretrained" / "dan-300w"
AAN = REPO / "pretrained" / "aan-300w"


def only_version(base: pathlib.Path) -> pathlib.Path:
    (version,) = [p for p in base.iterdir() if p.name.isdigit()]
    return version


def test_a_version_folder_is_itself_and_a_base_folder_its_newest_version():
    assert versions.resolve_model_path(only_version(DAN)) == only_version(DAN)
    assert versions.resolve_model_path(DAN) == only_version(DAN)
    assert versions.resolve_model_path(str(AAN)) == only_version(AAN)


def test_newest_is_by_number_and_other_folders_are_ignored(tmp_path):
    base = tmp_path / "model"
    base.mkdir()
    (base / "9").symlink_to(only_version(DAN), target_is_directory=True)
    (base / "10").symlink_to(only_version(AAN), target_is_directory=True)  # "10" < "9" as text
    (base / ".incoming-11").symlink_to(only_version(DAN), target_is_directory=True)  # staging
    (base / "latest").symlink_to(only_version(DAN), target_is_directory=True)
    (base / "12").mkdir()  # numeric, but no SavedModel (yet)
    assert sorted(model_paths.numeric_versions(base)) == [9, 10]
    assert versions.resolve_model_path(base) == base / "10"


def test_paths_that_are_no_model_are_named_in_the_error(tmp_path):
    with pytest.raises(ModelError, match=f"{tmp_path}: not a SavedModel folder"):
        versions.resolve_model_path(tmp_path)
    with pytest.raises(ModelError, match="nowhere: no such model folder"):
        versions.resolve_model_path(tmp_path / "nowhere")
    assert isinstance(ModelError("x"), ValueError)
