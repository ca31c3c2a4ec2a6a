"""facealign.core.model_format: every metadata file exported so far reads, a malformed one is
refused naming the file and the field, unknown keys survive a rewrite, and no TensorFlow."""
import json
import pathlib
import subprocess
import sys

import pytest

from facealign.core import model_format
from facealign.core.model_format import ModelFormatError, ModelMetadata

REPO = pathlib.Path(__file__).resolve().parents[1]
PUBLISHED = sorted(REPO.glob(f"pretrained/*/*/{model_format.EXTRA_DIR}/"
                             f"{model_format.METADATA_FILE}"))
SQUARE = [[10.0, 10.0], [20.0, 10.0], [15.0, 20.0]]


def model_dir(tmp_path, content) -> pathlib.Path:
    """A model folder whose metadata file holds `content` (a str as is, else as JSON)."""
    path = pathlib.Path(model_format.extra_path(tmp_path, model_format.METADATA_FILE))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return tmp_path


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.parts[-4])
def test_every_published_model_reads_and_writes_back_unchanged(path, tmp_path):
    folder = path.parents[1]
    metadata = ModelMetadata.read(folder)
    assert metadata.num_landmarks == len(metadata.mean_shape) == 68
    assert metadata.image_size == 112 and metadata.metadata_format == 2
    assert metadata.mean_shape_array().shape == (68, 2)
    assert metadata.lineage.generation >= 1 and metadata.validation_curve
    assert set(metadata.signatures) == set(model_format.SIGNATURES)
    assert metadata.evaluation["metrics"]["all"]["count"] == 100  # the Pusher's
    metadata.write(tmp_path)
    assert (pathlib.Path(model_format.extra_path(tmp_path, model_format.METADATA_FILE))
            .read_text() == path.read_text())


def test_there_are_published_models():
    assert len(PUBLISHED) >= 3


@pytest.mark.parametrize("legacy", [
    # the exporter's format 1: the three fields and the trainer's summary
    {"num_landmarks": 3, "image_size": 112, "mean_shape": SQUARE, "model": "dan", "stages": 2,
     "validation_nme_inter_pupil_per_stage": [0.08, 0.06], "training_seconds": 60.0,
     "config": {"model": {"name": "dan"}}},
    {"image_size": 64, "mean_shape": SQUARE},   # no count: it follows from S0
], ids=["format-1", "bare"])
def test_legacy_metadata_reads(legacy, tmp_path):
    metadata = ModelMetadata.read(model_dir(tmp_path, legacy))
    assert metadata.metadata_format == 1 and metadata.num_landmarks == 3
    assert metadata.lineage is None and metadata.signatures is None
    assert metadata.to_dict() == {"num_landmarks": 3, **legacy}


def test_unknown_keys_survive_a_round_trip(tmp_path):
    given = {"num_landmarks": 3, "image_size": 64, "mean_shape": SQUARE,
             "a_newer_field": {"nested": [1, 2]}, "lineage": {
                 "generation": 2, "cumulative_steps": 10, "cumulative_samples": 640,
                 "cumulative_seconds": 5.0, "a_newer_lineage_field": "kept"}}
    metadata = ModelMetadata.read(model_dir(tmp_path, given))
    amended = metadata.updated(evaluation={"metrics": {}})
    amended.write(tmp_path)
    again = json.loads(pathlib.Path(model_format.extra_path(
        tmp_path, model_format.METADATA_FILE)).read_text())
    assert again == {**given, "evaluation": {"metrics": {}}}


@pytest.mark.parametrize(("content", "expected"), [
    ({"image_size": 64, "mean_shape": [[1.0, 2.0], [3.0, 4.0]]}, "field mean_shape: "),
    ({"image_size": 64, "mean_shape": [[1.0, 2.0], [3.0], [4.0, 5.0]]}, "field mean_shape: "),
    ({"image_size": 64, "mean_shape": [[1.0, 2.0], [3.0, "x"], [4.0, 5.0]]},
     "field mean_shape.1.1: "),
    ({"image_size": 64, "mean_shape": [[1.0, 2.0], [3.0, float("nan")], [4.0, 5.0]]},
     "field mean_shape: the points must be finite"),
    ({"image_size": "112", "mean_shape": SQUARE}, "field image_size: "),
    ({"image_size": 4, "mean_shape": SQUARE}, "field image_size: "),
    ({"image_size": 64, "mean_shape": SQUARE, "num_landmarks": 68},
     "field num_landmarks: 68, but mean_shape has 3 points"),
    ({"image_size": 64, "mean_shape": SQUARE, "stages": 0}, "field stages: "),
    ({"mean_shape": SQUARE}, "field image_size: Field required"),
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
])
def test_malformed_metadata_is_refused_naming_the_file_and_the_field(content, expected,
                                                                      tmp_path):
    with pytest.raises(ModelFormatError) as error:
        ModelMetadata.read(model_dir(tmp_path, content))
    message = str(error.value)
    assert message.startswith(model_format.extra_path(tmp_path, model_format.METADATA_FILE))
    assert expected in message


def test_amending_validates(tmp_path):
    metadata = ModelMetadata.read(model_dir(tmp_path, {"image_size": 64, "mean_shape": SQUARE}))
    with pytest.raises(ModelFormatError, match="field stages"):
        metadata.updated(stages=-1)


def test_a_folder_without_metadata(tmp_path):
    assert not model_format.has_metadata(tmp_path)
    with pytest.raises(FileNotFoundError, match=model_format.METADATA_FILE):
        ModelMetadata.read(tmp_path)


def test_batching_parameters_file_round_trip(tmp_path):
    parameters = model_format.BatchingParameters(16, 3000, 12, 2)
    text = model_format.batching_parameters_text(parameters, "measured\nhere")
    path = model_format.write_batching_parameters(tmp_path, text)
    assert path == model_format.extra_path(tmp_path, model_format.BATCHING_FILE)
    assert model_format.read_batching_parameters(path) == parameters
    with pytest.raises(model_format.BatchingParametersError, match="max_batch_size"):
        model_format.write_batching_parameters(tmp_path, "max_batch_size { value: 0 }\n")


def test_importing_the_format_does_not_import_tensorflow():
    code = ("import sys; import facealign.core.model_format; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; "
            "assert 'keras' not in sys.modules, 'keras was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_what_an_export_rewrites_are_fields_of_the_record():
    assert set(model_format.REWRITTEN_BY_EXPORT) <= set(model_format.ModelMetadata.model_fields)
