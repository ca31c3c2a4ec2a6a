"""AtomicPusher: a version folder appears all at once, and only for a blessed model."""
import json
import os
import pathlib
import shutil
import time

import pytest
from tfx.components.evaluator import constants
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.atomic_pusher import executor, push
from components.atomic_pusher.component import AtomicPusher
from facealign.core import model_format
from facealign.core.model_format import ModelMetadata

# the least metadata a model has (S0 and the crop size) and a key this checkout does not know
METADATA = {"num_landmarks": 3, "image_size": 64,
            "mean_shape": [[10.0, 10.0], [20.0, 10.0], [15.0, 20.0]], "a_newer_key": [1]}


def fake_saved_model(folder: pathlib.Path) -> pathlib.Path:
    """A SavedModel-shaped folder (the pusher only copies files)."""
    (folder / "variables").mkdir(parents=True)
    (folder / "assets.extra").mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x08\x01graph" * 100)
    (folder / "variables" / "variables.index").write_bytes(b"index")
    (folder / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(4096))
    (folder / "assets.extra" / "facealign_metadata.json").write_text(json.dumps(METADATA))
    return folder


def tree(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- publish_atomically ----------------------------------------------------------------

def test_publish_copies_to_the_version_folder_without_leftovers(tmp_path):
    model = fake_saved_model(tmp_path / "model")
    base = tmp_path / "serving" / "facealign"
    target = push.publish_atomically(str(model), str(base), "1700000000")
    assert target == str(base / "1700000000")
    assert tree(base / "1700000000") == tree(model)
    assert os.listdir(base) == ["1700000000"]  # no staging folder left behind


def test_no_version_folder_is_visible_during_the_copy(tmp_path, monkeypatch):
    model = fake_saved_model(tmp_path / "model")
    base = tmp_path / "serving"
    base.mkdir()
    (base / "1").mkdir()  # an older version already served
    seen = {}
    real_copytree = shutil.copytree

    def copytree_and_look(src, dst, *args, **kwargs):
        seen["before"] = sorted(os.listdir(base))
        result = real_copytree(src, dst, *args, **kwargs)
        seen["during"] = sorted(os.listdir(base))
        seen["dst"] = dst
        return result

    monkeypatch.setattr(push.shutil, "copytree", copytree_and_look)
    push.publish_atomically(str(model), str(base), "2")
    assert [name for name in seen["before"] if name.isdigit()] == ["1"]
    numeric = [name for name in seen["during"] if name.isdigit()]
    assert numeric == ["1"]  # the copy is complete, yet version 2 is not there
    staging = pathlib.Path(seen["dst"])
    assert staging.parent == base and staging.name.startswith(push.STAGING_PREFIX)
    assert sorted(os.listdir(base)) == ["1", "2"]
    assert tree(base / "2") == tree(model)


def test_failed_copy_leaves_nothing(tmp_path, monkeypatch):
    model = fake_saved_model(tmp_path / "model")
    base = tmp_path / "serving"
    real_copytree = shutil.copytree

    def copytree_then_fail(src, dst, *args, **kwargs):
        real_copytree(src, dst, *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(push.shutil, "copytree", copytree_then_fail)
    with pytest.raises(OSError, match="disk full"):
        push.publish_atomically(str(model), str(base), "3")
    assert os.listdir(base) == []


def test_existing_version_is_refused(tmp_path):
    model = fake_saved_model(tmp_path / "model")
    base = tmp_path / "serving"
    (base / "5").mkdir(parents=True)
    (base / "5" / "saved_model.pb").write_bytes(b"old")
    with pytest.raises(FileExistsError, match="5 already exists"):
        push.publish_atomically(str(model), str(base), "5")
    assert (base / "5" / "saved_model.pb").read_bytes() == b"old"
    assert os.listdir(base) == ["5"]


# --- next_version --------------------------------------------------------------------------

def test_next_version_is_unix_time_on_an_empty_base(tmp_path):
    before = int(time.time())
    version = int(push.next_version(str(tmp_path / "missing")))
    assert before <= version <= int(time.time())


def test_next_version_bumps_past_existing_versions(tmp_path):
    base = tmp_path / "serving"
    future = int(time.time()) + 10_000
    for name in ("1", str(future), f"{push.STAGING_PREFIX}{future + 50}-1", "notes"):
        (base / name).mkdir(parents=True)
    assert push.next_version(str(base)) == str(future + 1)
    (base / "1").rmdir()
    (base / str(future)).rmdir()
    (base / "3").mkdir()
    assert int(push.next_version(str(base))) >= int(time.time()) - 1


def test_next_version_on_an_object_store_listing(monkeypatch):
    """fileio.listdir on GCS/S3 gives folder names with a trailing slash."""
    future = int(time.time()) + 10_000
    monkeypatch.setattr(push.fileio, "exists", lambda path: True)
    monkeypatch.setattr(push.fileio, "listdir",
                        lambda path: [f"{future}/", "1/", "notes.txt"])
    assert push.next_version("gs://bucket/models/facealign") == str(future + 1)


# --- the executor ------------------------------------------------------------------------------

def run_pusher(tmp_path: pathlib.Path, blessed: int, evaluation: dict | None = None):
    model_dir = tmp_path / "model"
    fake_saved_model(model_dir / "Format-Serving")
    model = standard_artifacts.Model()
    model.uri = str(model_dir)
    model.id = 1
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.id = 2
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, blessed)
    if evaluation is not None:   # what the LandmarkEvaluator writes beside its marker
        (tmp_path / "blessing").mkdir(parents=True)
        (tmp_path / "blessing" / "evaluation.json").write_text(json.dumps(evaluation))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    pushed.id = 3
    base = tmp_path / "serving" / "facealign"
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    executor.Executor().Do(
        {"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination), "custom_config": "null"})
    return model_dir / "Format-Serving", base, pushed


def test_executor_pushes_a_blessed_model(tmp_path):
    model_path, base, pushed = run_pusher(tmp_path, blessed=1)
    assert pushed.get_int_custom_property("pushed") == 1
    versions = os.listdir(base)
    assert len(versions) == 1 and versions[0].isdigit()
    assert tree(base / versions[0]) == tree(model_path)
    assert pushed.get_string_custom_property("pushed_version") == versions[0]
    assert pushed.get_string_custom_property("pushed_destination") == str(base / versions[0])
    assert tree(pathlib.Path(pushed.uri)) == tree(model_path)


def test_pushed_metadata_carries_the_evaluation(tmp_path):
    evaluation = {"split": "eval", "metrics": {"all": {"count": 100, "nme_inter_ocular": 5.4}}}
    model_path, base, pushed = run_pusher(tmp_path, blessed=1, evaluation=evaluation)
    [version] = os.listdir(base)
    assert ModelMetadata.read(base / version).to_dict() == {**METADATA, "evaluation": evaluation}
    # the trainer's own artifact is left as it was
    assert ModelMetadata.read(model_path).to_dict() == METADATA


def test_executor_does_not_push_an_unblessed_model(tmp_path):
    _, base, pushed = run_pusher(tmp_path, blessed=0)
    assert pushed.get_int_custom_property("pushed") == 0
    assert not base.exists()
    assert not pathlib.Path(pushed.uri).exists() or not any(pathlib.Path(pushed.uri).iterdir())


def test_second_push_gets_a_newer_version(tmp_path):
    _, base, first = run_pusher(tmp_path / "one", blessed=1)
    # the same base folder for a second push
    model_dir = tmp_path / "two" / "model"
    fake_saved_model(model_dir / "Format-Serving")
    model = standard_artifacts.Model()
    model.uri = str(model_dir)
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, 1)
    second = standard_artifacts.PushedModel()
    second.uri = str(tmp_path / "two" / "pushed")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    executor.Executor().Do(
        {"model": [model], "model_blessing": [blessing]}, {"pushed_model": [second]},
        {"push_destination": proto_utils.proto_to_json(destination)})
    v1 = int(first.get_string_custom_property("pushed_version"))
    v2 = int(second.get_string_custom_property("pushed_version"))
    assert v2 > v1
    assert sorted(os.listdir(base)) == [str(v1), str(v2)]


def test_component_uses_the_atomic_executor(tmp_path):
    from tfx import types
    component = AtomicPusher(model=types.Channel(type=standard_artifacts.Model),
                             model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
                             base_directory=str(tmp_path / "serving"))
    assert component.executor_spec.executor_class is executor.Executor
    destination = json.loads(component.exec_properties["push_destination"])
    filesystem = destination["filesystem"]
    assert filesystem.get("base_directory", filesystem.get("baseDirectory")) == str(
        tmp_path / "serving")


# --- the batching parameters file -----------------------------------------------------------------

def test_batching_rule_picks_sizes_and_timeout_from_the_timings():
    from components.atomic_pusher.batch_timing import choose
    from facealign.core.model_format import BatchingParameters

    # per face 10, 5, 3.875 ms: every step pays; a request saves 10 - 3.875 ms in a batch
    assert choose({1: 0.010, 8: 0.040, 32: 0.124}, cpus=2) == BatchingParameters(
        max_batch_size=32, batch_timeout_micros=6100, max_enqueued_batches=17,
        num_batch_threads=2)
    # batching saves nothing: no waiting, and 8 all the same (the warmup batch's size)
    assert choose({1: 0.010, 8: 0.080, 32: 0.320}, cpus=4) == BatchingParameters(
        max_batch_size=8, batch_timeout_micros=0, max_enqueued_batches=50,
        num_batch_threads=4)
    # 32 no longer pays per face: 8; the saving (100 - 25 ms) is capped at 10 ms
    assert choose({1: 0.100, 8: 0.200, 32: 0.780}, cpus=2) == BatchingParameters(
        max_batch_size=8, batch_timeout_micros=10_000, max_enqueued_batches=10,
        num_batch_threads=2)
    # a slow model still queues at least one batch per thread
    assert choose({1: 2.0, 8: 8.0, 32: 24.0}, cpus=2).max_enqueued_batches == 2
    with pytest.raises(ValueError, match="batch size 1"):
        choose({8: 0.1, 32: 0.3})


def push_real_model(tmp_path: pathlib.Path, shared_data) -> tuple[pathlib.Path, pathlib.Path]:
    """(the Trainer's model folder, the pushed version folder) for a real tiny DAN with real
    AFW faces (boxes from boxes/afw.csv) as its warmup requests."""
    import csv

    from tests import model_fixtures

    root = shared_data / "300w"
    with open(root / "boxes" / "afw.csv") as handle:
        rows = list(csv.DictReader(handle))[:3]
    faces = [((root / r["image"]).read_bytes(), [float(r[k]) for k in ("x0", "y0", "x1", "y1")])
             for r in rows]
    model_path = tmp_path / "model" / "Format-Serving"
    model_fixtures.export_tiny_dan(model_path, model_fixtures.afw_mean_shape(shared_data),
                             warmup_faces=faces)
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    base = tmp_path / "serving" / "facealign"
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    executor.Executor().Do(
        {"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination)})
    return model_path, base / pushed.get_string_custom_property("pushed_version")


def test_pushed_version_carries_measured_batching_parameters(tmp_path, shared_data):
    from trainer.precision import cpu_model

    model_path, version = push_real_model(tmp_path, shared_data)
    file = model_format.extra_path(version, model_format.BATCHING_FILE)
    text = pathlib.Path(file).read_text()
    parameters = model_format.read_batching_parameters(file)  # as the server reads it
    assert parameters.max_batch_size in (8, 32)
    assert 0 <= parameters.batch_timeout_micros <= 10_000
    assert parameters.num_batch_threads == os.cpu_count()
    assert os.cpu_count() <= parameters.max_enqueued_batches <= 1000
    assert cpu_model() in text and "batch 32:" in text  # says what measured it, and where
    # everything else is the Trainer's model, unchanged; the Trainer's own copy has no file
    pushed = tree(version)
    del pushed[f"{model_format.EXTRA_DIR}/{model_format.BATCHING_FILE}"]
    assert pushed == tree(model_path)
    assert not os.path.exists(model_format.extra_path(model_path, model_format.BATCHING_FILE))


def test_a_model_that_cannot_be_timed_is_pushed_without_the_file(tmp_path):
    _, base, pushed = run_pusher(tmp_path, blessed=1)  # a SavedModel-shaped folder only
    assert pushed.get_int_custom_property("pushed") == 1
    [version] = os.listdir(base)
    assert not os.path.exists(model_format.extra_path(base / version, model_format.BATCHING_FILE))
