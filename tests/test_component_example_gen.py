"""LandmarkExampleGen on real faces: splits, tf.Example contents, rejects, split assignment."""
import csv
import json
import pathlib
import shutil

import cv2
import numpy as np
import pytest
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts

from components.landmark_example_gen import driver, executor, spec
from components.landmark_example_gen.component import LandmarkExampleGen
from facealign.core import config, splits
from facealign.core import examples as names

BEAM_ARGS = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
EVAL_COUNT = 12
REPO = pathlib.Path(__file__).resolve().parents[1]


def run_example_gen(tmp_path: pathlib.Path, sources: list[dict], eval_count: int,
                    seed: int = 0, on_error: str = "skip", eval_fraction: float = 0.0,
                    requested_span: int = -1, resolved_by_driver: bool = False,
                    train_fraction: float | None = None):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.id = 1
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=BEAM_ARGS, tmp_dir=str(tmp_path / "tmp"))
    properties = {"sources": json.dumps(sources), "eval_count": eval_count, "seed": seed,
                  "on_error": on_error, "eval_fraction": eval_fraction,
                  "requested_span": requested_span}
    if train_fraction is not None:
        properties["train_fraction"] = train_fraction
    if resolved_by_driver:   # as the launcher hands them over after SpanDriver
        properties.update(driver.resolved_properties(driver.resolve_inputs(properties)))
    executor.Executor(context).Do({}, {"examples": [examples]}, properties)
    return examples


def read_split(examples, split: str) -> list[tf.train.Example]:
    files = tf.io.gfile.glob(artifact_utils.get_split_uri([examples], split) + "/*")
    assert files, f"no files in split {split}"
    assert all(f.endswith(".gz") for f in files)
    return [tf.train.Example.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def feature(example, name):
    return example.features.feature[name]


def text(example, name) -> str:
    return feature(example, name).bytes_list.value[0].decode()


def demo_source(root: pathlib.Path, name: str = "demo", split: str = "train") -> dict:
    return {"name": name, "format": "300w", "root": str(root),
            "boxes": [str(root / "boxes.csv")], "split": split}


def read_boxes(path: pathlib.Path) -> dict[str, list[float]]:
    with open(path) as handle:
        return {row["image"]: [float(row[k]) for k in ("x0", "y0", "x1", "y1")]
                for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def clean_run(demo_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("example_gen_clean")
    root = demo_data / "300w"
    examples = run_example_gen(tmp, [demo_source(root)], EVAL_COUNT)
    return root, examples


@pytest.fixture(scope="module")
def dirty_run(demo_data, tmp_path_factory):
    """A copy of the demo set plus two bad faces, and a test source beside it."""
    tmp = tmp_path_factory.mktemp("example_gen_dirty")
    root = tmp / "300w"
    shutil.copytree(demo_data / "300w", root)
    afw = root / "afw"
    good = sorted(afw.glob("*.pts"))[0].stem
    # 1) a corrupted image with a valid annotation
    shutil.copy(afw / f"{good}.pts", afw / "corrupt_1.pts")
    data = (afw / f"{good}.jpg").read_bytes()
    (afw / "corrupt_1.jpg").write_bytes(data[: len(data) // 3])
    # 2) a truncated annotation with a valid image
    shutil.copy(afw / f"{good}.jpg", afw / "cutpts_1.jpg")
    pts = (afw / f"{good}.pts").read_text()
    (afw / "cutpts_1.pts").write_text(pts[: len(pts) // 2])
    # a held-out test source: another copy of some real faces, no box CSV
    held = tmp / "held"
    held.mkdir()
    for pts_path in sorted((demo_data / "300w/helen/trainset").glob("*.pts"))[:5]:
        shutil.copy(pts_path, held)
        shutil.copy(pts_path.with_suffix(".jpg"), held)
    sources = [demo_source(root), {"name": "held", "format": "300w", "root": str(held),
                                   "boxes": [], "split": "test"}]
    examples = run_example_gen(tmp, sources, EVAL_COUNT, seed=3)
    return root, held, examples


# --- the executor on the demo set ----------------------------------------------

def test_writes_train_and_eval_with_eval_count(clean_run):
    root, examples = clean_run
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval"]
    train, eval_ = read_split(examples, "train"), read_split(examples, "eval")
    faces = len(list(root.rglob("*.pts")))
    assert faces == 60
    assert len(eval_) == EVAL_COUNT
    assert len(train) == faces - EVAL_COUNT
    ids = [text(e, names.RAW_FACE_ID) for e in train + eval_]
    assert len(ids) == len(set(ids)) == faces  # every face exactly once
    expected = {f"demo:{p.relative_to(root).with_suffix('').as_posix()}"
                for p in root.rglob("*.pts")}
    assert set(ids) == expected
    assert examples.get_int_custom_property("accepted_faces") == faces
    assert examples.get_int_custom_property("rejected_inputs") == 0
    report = json.loads((pathlib.Path(examples.uri) / spec.REPORT_FILE).read_text())
    assert report["accepted"] == faces and report["rejected"] == 0 and report["rejects"] == []
    assert report["per_split"] == {"train": faces - EVAL_COUNT, "eval": EVAL_COUNT}


def test_held_out_faces_are_the_eval_split(clean_run):
    """The one choice of held-out faces (prepare, the benchmarks) is ExampleGen's eval split
    on the same data, count and seed."""
    _, examples = clean_run
    cfg = config.load(REPO / "pipeline.yaml", [f"data.eval_count={EVAL_COUNT}", "data.seed=0"])
    written = {text(e, names.RAW_FACE_ID) for e in read_split(examples, "eval")}
    assert {face.face_id for face in splits.held_out_faces(cfg)} == written
    assert {face.face_id for face in splits.configured_faces(cfg, log=print)["eval"]} == written


def test_examples_carry_image_landmarks_box_and_id(clean_run):
    root, examples = clean_run
    boxes = read_boxes(root / "boxes.csv")
    records = read_split(examples, "train") + read_split(examples, "eval")
    for example in records:
        relpath = text(example, names.RAW_IMAGE_PATH)
        image_file = root / relpath
        stem = pathlib.PurePosixPath(relpath).with_suffix("").as_posix()
        assert text(example, names.RAW_FACE_ID) == f"demo:{stem}"
        assert text(example, names.RAW_DATASET) == "demo"
        assert text(example, names.RAW_SUBSET) == pathlib.PurePosixPath(relpath).parent.as_posix()
        encoded = feature(example, names.RAW_IMAGE).bytes_list.value[0]
        assert encoded == image_file.read_bytes()
        decoded = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded is not None and decoded.size > 0
        landmarks = np.asarray(feature(example, names.RAW_LANDMARKS).float_list.value,
                               np.float32).reshape(-1, 2)
        assert feature(example, names.RAW_NUM_LANDMARKS).int64_list.value[0] == 68
        # .pts files are 1-based: the example holds them minus 1 (parsed independently here)
        lines = image_file.with_suffix(".pts").read_text().splitlines()
        body = lines[lines.index("{") + 1:lines.index("}")]
        pts = np.array([[float(v) for v in line.split()] for line in body], np.float64)
        np.testing.assert_allclose(landmarks, pts - 1.0, atol=1e-4)
        box = np.asarray(feature(example, names.RAW_BOX).float_list.value)
        np.testing.assert_allclose(box, boxes[relpath], atol=1e-4)
        assert text(example, names.RAW_BOX_SOURCE) == "detector"


# --- bad inputs and a test source ------------------------------------------------

def test_rejects_are_reported_and_counted(dirty_run):
    root, _, examples = dirty_run
    report = json.loads((pathlib.Path(examples.uri) / spec.REPORT_FILE).read_text())
    rejects = {pathlib.Path(r["file"]).name: r for r in report["rejects"]}
    assert set(rejects) == {"corrupt_1.jpg", "cutpts_1.pts"}
    assert "cannot be decoded" in rejects["corrupt_1.jpg"]["reason"]
    assert "truncated .pts" in rejects["cutpts_1.pts"]["reason"]
    assert all(r["dataset"] == "demo" for r in rejects.values())
    assert report["rejected"] == 2
    assert report["accepted"] == 65
    assert examples.get_int_custom_property("rejected_inputs") == 2
    assert examples.get_int_custom_property("accepted_faces") == 65
    ids = {text(e, names.RAW_FACE_ID) for split in ("train", "eval", "test")
           for e in read_split(examples, split)}
    assert "demo:afw/corrupt_1" not in ids and "demo:afw/cutpts_1" not in ids


def test_test_source_goes_to_test(dirty_run):
    _, held, examples = dirty_run
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval", "test"]
    test = read_split(examples, "test")
    assert sorted(text(e, names.RAW_FACE_ID) for e in test) == sorted(
        f"held:{p.stem}" for p in held.glob("*.pts"))
    assert {text(e, names.RAW_BOX_SOURCE) for e in test} == {"landmarks"}
    train_eval = read_split(examples, "train") + read_split(examples, "eval")
    assert all(text(e, names.RAW_DATASET) == "demo" for e in train_eval)
    assert len(read_split(examples, "eval")) == EVAL_COUNT
    assert len(train_eval) == 60


def test_every_source_failing_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    (empty / "afw").mkdir(parents=True)
    (empty / "afw" / "notes.txt").write_text("no faces here")
    with pytest.raises(ValueError, match="no usable face"):
        run_example_gen(tmp_path, [{"name": "e", "format": "300w", "root": str(empty),
                                    "boxes": [], "split": "train"}], 1)


def test_eval_count_leaving_no_training_faces_stops_the_executor(demo_data, tmp_path):
    with pytest.raises(ValueError, match="eval_count=60 leaves no training faces"):
        run_example_gen(tmp_path, [demo_source(demo_data / "300w")], 60)
    assert not (tmp_path / "examples").exists()


def test_a_train_fraction_leaves_training_faces_out_and_says_how_many(demo_data, tmp_path,
                                                                      clean_run, capsys):
    """data.train_fraction: fewer training faces, the same held-out faces, and the faces left
    out counted in the log and the ingest report, not silently dropped."""
    examples = run_example_gen(tmp_path, [demo_source(demo_data / "300w")], EVAL_COUNT,
                               train_fraction=0.5)
    train = {text(e, names.RAW_FACE_ID) for e in read_split(examples, "train")}
    held_out = {text(e, names.RAW_FACE_ID) for e in read_split(examples, "eval")}
    _, all_faces = clean_run
    assert held_out == {text(e, names.RAW_FACE_ID) for e in read_split(all_faces, "eval")}
    assert train < {text(e, names.RAW_FACE_ID) for e in read_split(all_faces, "train")}
    left_out = 60 - EVAL_COUNT - len(train)
    assert 10 < len(train) < 38 and left_out > 0
    report = json.loads((pathlib.Path(examples.uri) / spec.REPORT_FILE).read_text())
    assert report["left_out_by_train_fraction"] == left_out
    assert report["per_split"] == {"train": len(train), "eval": EVAL_COUNT}
    out = capsys.readouterr().out
    assert (f"data.train_fraction=0.5: training on {len(train)} of {60 - EVAL_COUNT} training "
            f"faces, {left_out} left out") in out
    assert f"ExampleGen: {EVAL_COUNT + len(train)} faces used" in out


def test_the_pipeline_passes_train_fraction_to_example_gen(demo_data):
    sources = [demo_source(demo_data / "300w")]
    assert LandmarkExampleGen(sources=sources, eval_count=12).exec_properties[
        "train_fraction"] == 1.0
    assert LandmarkExampleGen(sources=sources, eval_count=12, train_fraction=0.25
                              ).exec_properties["train_fraction"] == 0.25


# --- splits.assign_splits ----------------------------------------------------------

FACES = [(f"d:face_{i:03d}", "train") for i in range(40)] + [(f"t:face_{i}", "test")
                                                            for i in range(5)]


def test_assign_splits_deterministic_and_order_independent():
    first = splits.assign_splits(FACES, 7, seed=11)
    assert splits.assign_splits(FACES, 7, seed=11) == first
    shuffled = list(FACES)
    np.random.default_rng(0).shuffle(shuffled)
    assert splits.assign_splits(shuffled, 7, seed=11) == first
    assert splits.assign_splits(list(reversed(FACES)), 7, seed=11) == first
    assert sum(v == "eval" for v in first.values()) == 7
    assert sum(v == "train" for v in first.values()) == 33
    assert all(first[face_id] == "test" for face_id, split in FACES if split == "test")
    other_seeds = [splits.assign_splits(FACES, 7, seed=s) for s in range(1, 6)]
    held_out = {frozenset(k for k, v in a.items() if v == "eval") for a in [first] + other_seeds}
    assert len(held_out) > 1  # the seed matters


def test_assign_splits_eval_count_zero_and_test_only():
    assert set(splits.assign_splits(FACES, 0, seed=0).values()) == {"train", "test"}
    test_only = [(f"t:{i}", "test") for i in range(3)]
    assert splits.assign_splits(test_only, 5, seed=0) == {f"t:{i}": "test" for i in range(3)}


@pytest.mark.parametrize("eval_count", [40, 41, 100])
def test_assign_splits_eval_count_leaving_no_training_faces(eval_count):
    with pytest.raises(ValueError, match=r"eval_count=\d+ leaves no training faces.*40 faces"):
        splits.assign_splits(FACES, eval_count, seed=0)


def test_training_subsets_are_nested_and_keep_the_held_out_faces():
    """A smaller fraction's faces are inside every larger one's (a learning curve adds faces,
    it does not swap them), test faces are never touched, and the hold-out is the same."""
    full = splits.assign_splits(FACES, 7, seed=11)
    subsets = {}
    for fraction in (0.25, 0.5, 0.75, 1.0):
        assigned = splits.assign_splits(FACES, 7, seed=11, train_fraction=fraction)
        assert {k for k, v in assigned.items() if v == "eval"} == \
            {k for k, v in full.items() if v == "eval"}
        assert all(assigned[k] == "test" for k, split in FACES if split == "test")
        subsets[fraction] = {k for k, v in assigned.items() if v == "train"}
        left_out = {k for k, v in assigned.items() if v == splits.LEFT_OUT}
        assert subsets[fraction] | left_out == {k for k, v in full.items() if v == "train"}
    assert subsets[0.25] < subsets[0.5] < subsets[0.75] < subsets[1.0]
    assert len(subsets[1.0]) == 33 and 3 <= len(subsets[0.25]) <= 15


def test_a_train_fraction_leaving_no_training_face_is_an_error():
    records = [type("Face", (), {"face_id": f"d:{i}", "dataset": "d"})() for i in range(3)]
    with pytest.raises(ValueError, match=r"data.train_fraction=0.001 leaves none of the 2"):
        splits.split_faces(records, {"d": "train"}, 1, seed=0, train_fraction=0.001)


def test_facealign_train_reads_the_same_subset_and_says_so(clean_run):
    """`facealign train`'s data preparation and the benchmarks split through configured_faces:
    the same training subset, and the same line about the faces left out."""
    lines = []
    cfg = config.load(REPO / "pipeline.yaml", [f"data.eval_count={EVAL_COUNT}",
                                               "data.train_fraction=0.5"])
    faces = splits.configured_faces(cfg, log=lines.append)
    assert set(faces) == {"train", "eval", "test"}
    assert len(faces["eval"]) == EVAL_COUNT
    used = len(faces["train"])
    assert (f"data.train_fraction=0.5: training on {used} of {60 - EVAL_COUNT} training faces, "
            f"{60 - EVAL_COUNT - used} left out (the held-out faces are unchanged)") in lines


def test_train_fraction_is_validated_on_load():
    with pytest.raises(config.ConfigError, match="train_fraction"):
        config.load(REPO / "pipeline.yaml", ["data.train_fraction=0"])
    with pytest.raises(config.ConfigError, match="train_fraction"):
        config.load(REPO / "pipeline.yaml", ["data.train_fraction=1.5"])
    assert config.load(REPO / "pipeline.yaml").data.train_fraction == 1.0


# --- the component ------------------------------------------------------------------

def test_component_spec_builds(demo_data):
    sources = [demo_source(demo_data / "300w")]
    component = LandmarkExampleGen(sources=sources, eval_count=12, seed=4)
    assert set(component.outputs) == {"examples"}
    assert component.outputs["examples"].type == standard_artifacts.Examples
    params = component.exec_properties
    assert json.loads(params["sources"]) == sources
    assert params["eval_count"] == 12 and params["seed"] == 4 and params["on_error"] == "skip"
    assert component.executor_spec.executor_class is executor.Executor
