"""Augment on ExampleGen's output of 10 real faces: canonical crops, frame, determinism,
anomaly gate."""
import json
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts

from components.augment import anomalies, executor
from components.augment.component import Augment
from components.augment.spec import AugmentSpec
from components.landmark_example_gen import executor as example_gen_executor
from facealign.core import canonical, canonical_example, config, frame_io, geometry
from facealign.core import examples as names
from facealign.core.config import AugmentSection
from facealign.core.data.report import DataError

REPO = pathlib.Path(__file__).resolve().parents[1]
BEAM_ARGS = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
FACES, EVAL_COUNT, COPIES, SIZE = 10, 2, 2, 112
# Augment's exec properties as the pipeline passes them: the augment section's fields
AUGMENT_SECTION = AugmentSection(image_size=SIZE, copies=COPIES)
AUGMENT_PROPERTIES = {name: parameter.type(getattr(AUGMENT_SECTION, name, ""))
                      for name, parameter in AugmentSpec.PARAMETERS.items()}


def context(tmp: pathlib.Path, beam_args=BEAM_ARGS):
    return base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=list(beam_args),
                                                      tmp_dir=str(tmp / "tmp"))


def small_dataset(demo_data: pathlib.Path, root: pathlib.Path) -> pathlib.Path:
    """FACES real demo faces (half AFW, half HELEN) with their detector boxes."""
    source = demo_data / "300w"
    chosen = (sorted((source / "afw").glob("*.pts"))[:FACES // 2]
              + sorted((source / "helen/trainset").glob("*.pts"))[:FACES - FACES // 2])
    keep = set()
    for pts in chosen:
        relative = pts.relative_to(source)
        (root / relative.parent).mkdir(parents=True, exist_ok=True)
        shutil.copy(pts, root / relative)
        shutil.copy(pts.with_suffix(".jpg"), root / relative.with_suffix(".jpg"))
        keep.add(relative.with_suffix(".jpg").as_posix())
    lines = (source / "boxes.csv").read_text().splitlines()
    (root / "boxes.csv").write_text(
        "\n".join([lines[0]] + [line for line in lines[1:] if line.split(",")[0] in keep]) + "\n")
    return root


@pytest.fixture(scope="module")
def sources(demo_data, tmp_path_factory):
    root = small_dataset(demo_data, tmp_path_factory.mktemp("augment_data") / "300w")
    return [{"name": "small", "format": "300w", "root": str(root),
             "boxes": [str(root / "boxes.csv")], "split": "train"}]


@pytest.fixture(scope="module")
def raw_examples(sources, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("augment_raw")
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp / "examples")
    examples.id = 1
    example_gen_executor.Executor(context(tmp)).Do(
        {}, {"examples": [examples]},
        {"sources": json.dumps(sources), "eval_count": EVAL_COUNT, "seed": 0, "on_error": "skip",
         "eval_fraction": 0.0, "requested_span": -1})
    assert examples.get_int_custom_property("accepted_faces") == FACES
    return examples


def run_augment(raw, tmp: pathlib.Path, anomalies_artifact=None, beam_args=BEAM_ARGS,
                **properties):
    out = standard_artifacts.Examples()
    out.uri = str(tmp / "canonical_examples")
    frame = standard_artifacts.TransformGraph()
    frame.uri = str(tmp / "canonical_frame")
    inputs = {"examples": [raw]}
    if anomalies_artifact is not None:
        inputs["anomalies"] = [anomalies_artifact]
    executor.Executor(context(tmp, beam_args)).Do(
        inputs, {"canonical_examples": [out], "canonical_frame": [frame]},
        dict(AUGMENT_PROPERTIES, **properties))
    return out, frame


def records(examples, split: str) -> list[bytes]:
    files = tf.io.gfile.glob(artifact_utils.get_split_uri([examples], split) + "/*")
    assert files, f"no files for split {split}"
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


@pytest.fixture(scope="module")
def augmented(raw_examples, tmp_path_factory):
    first = run_augment(raw_examples, tmp_path_factory.mktemp("augment_first"))
    # the second run with two threads: worker order must not change any record
    second = run_augment(raw_examples, tmp_path_factory.mktemp("augment_second"),
                         beam_args=["--direct_num_workers=2",
                                    "--direct_running_mode=multi_threading"])
    return first, second


def test_canonical_examples_for_every_split(raw_examples, augmented):
    (out, _), _ = augmented
    assert artifact_utils.decode_split_names(out.split_names) == ["train", "eval"]
    raw_ids = {}
    for split in ("train", "eval"):
        for r in records(raw_examples, split):
            example = tf.train.Example.FromString(r)
            raw_ids.setdefault(split, set()).add(
                example.features.feature[names.RAW_FACE_ID].bytes_list.value[0].decode())
    train = [canonical_example.decode_canonical_example(r) for r in records(out, "train")]
    eval_ = [canonical_example.decode_canonical_example(r) for r in records(out, "eval")]
    assert len(train) == (FACES - EVAL_COUNT) * COPIES
    assert len(eval_) == EVAL_COUNT
    assert {r.face_id for r in train} == raw_ids["train"]
    assert {r.face_id for r in eval_} == raw_ids["eval"]
    for record in train + eval_:
        sample = record.sample
        assert sample.image.shape == (SIZE, SIZE) and sample.image.dtype == np.uint8
        assert sample.landmarks.shape == (68, 2)
        # to_original maps the canonical landmarks onto the ground truth
        np.testing.assert_allclose(geometry.apply_transform(sample.to_original, sample.landmarks),
                                   sample.original_landmarks, atol=1e-2)
        assert sample.image.std() > 5  # a real face, not an empty frame
    assert sum(r.sample.mirrored for r in train) == (FACES - EVAL_COUNT) * (COPIES // 2)
    assert not any(r.sample.mirrored for r in eval_)
    assert examples_utils.get_file_format(out) == "tfrecords_gzip"
    assert {r.subset for r in train + eval_} <= {"afw", "helen/trainset"}


def test_frame_artifact(augmented):
    (_, frame_artifact), _ = augmented
    frame = frame_io.read_frame(frame_artifact.uri)
    assert frame["image_size"] == SIZE
    mean_shape = frame["mean_shape"]
    assert mean_shape.shape == (68, 2)
    assert np.all(mean_shape > 0) and np.all(mean_shape < SIZE - 1)
    extent = mean_shape.max(0) - mean_shape.min(0)
    assert extent.max() == pytest.approx(0.5 * SIZE, rel=1e-4)  # face_fraction 0.5
    np.testing.assert_allclose((mean_shape.max(0) + mean_shape.min(0)) / 2, (SIZE - 1) / 2,
                               atol=1e-3)
    assert frame["pixel_mean"].shape == frame["pixel_std"].shape == (SIZE, SIZE)
    assert np.all(frame["pixel_std"] >= 1.0)
    assert 20 < frame["pixel_mean"].mean() < 235
    info = json.loads((pathlib.Path(frame_artifact.uri) / frame_io.FRAME_JSON).read_text())
    assert info["train_faces"] == FACES - EVAL_COUNT
    assert info["train_samples"] == (FACES - EVAL_COUNT) * COPIES
    assert info["num_landmarks"] == 68


def test_deterministic(augmented):
    (out1, frame1), (out2, frame2) = augmented
    for split in ("train", "eval"):
        first, second = records(out1, split), records(out2, split)
        assert len(set(first)) == len(first)
        assert set(first) == set(second)
    a, b = frame_io.read_frame(frame1.uri), frame_io.read_frame(frame2.uri)
    for key in ("mean_shape", "pixel_mean", "pixel_std"):
        np.testing.assert_array_equal(a[key], b[key])


def test_the_crops_carry_the_span_of_their_faces(augmented):
    (out, frame), _ = augmented
    assert out.span == 0 and frame.get_int_custom_property("span") == 0
    label = json.loads((pathlib.Path(out.uri) / "span.json").read_text())
    assert label["span"] == 0 and label["version"] is None


def test_a_pinned_mean_shape_is_written_once_and_then_used(raw_examples, augmented, tmp_path):
    """augment.mean_shape: the first Augment writes its S0; a later one (another span's faces,
    here the same faces with a shifted pinned S0) crops to the pinned frame, not its own."""
    pin = tmp_path / "pinned" / "mean_shape.json"
    _, frame = run_augment(raw_examples, tmp_path / "first", mean_shape_file=str(pin))
    own = frame_io.read_frame(frame.uri)["mean_shape"]
    (_, reference), _ = augmented
    np.testing.assert_array_equal(own, frame_io.read_frame(reference.uri)["mean_shape"])
    np.testing.assert_allclose(frame_io.read_pinned_mean_shape(str(pin), SIZE), own, atol=1e-5)
    shifted = own + 2.0
    pin.write_text(json.dumps({"image_size": SIZE, "mean_shape": shifted.tolist()}))
    out, frame = run_augment(raw_examples, tmp_path / "second", mean_shape_file=str(pin))
    np.testing.assert_allclose(frame_io.read_frame(frame.uri)["mean_shape"], shifted, atol=1e-5)
    assert json.loads(pin.read_text())["mean_shape"] == shifted.tolist()   # not replaced
    with pytest.raises(DataError, match="pins S0 for 112 px crops, augment.image_size is 96"):
        run_augment(raw_examples, tmp_path / "third", mean_shape_file=str(pin), image_size=96)
    pin.write_text('{"image_size": 112, "mean_sha')      # cut short
    with pytest.raises(DataError, match=f"{pin}: augment.mean_shape: not a pinned S0"):
        run_augment(raw_examples, tmp_path / "fourth", mean_shape_file=str(pin))


def test_prepare_crops_are_augments(sources, augmented, tmp_path):
    """`facealign train`'s data preparation and Augment make the same crops and frame from the
    same faces and settings (one library function, randomness from the seed and face id)."""
    from pipeline.prepare import prepared_data

    (out, frame_artifact), _ = augmented
    raw = config.load(REPO / "pipeline.yaml").model_dump(mode="json")
    raw["data"].update(sources=sources, eval_count=EVAL_COUNT, seed=0)
    raw["augment"] = AUGMENT_SECTION.model_dump(mode="json")
    train_files, eval_files, frame = prepared_data(config.from_dict(raw), tmp_path)

    def read(patterns):
        files = [f for pattern in patterns for f in tf.io.gfile.glob(pattern)]
        assert files, f"nothing at {patterns}"
        return {r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")}

    assert read(train_files) == set(records(out, "train"))
    assert read(eval_files) == set(records(out, "eval"))
    augments = frame_io.read_frame(frame_artifact.uri)
    for key in ("mean_shape", "pixel_mean", "pixel_std", "image_size"):
        np.testing.assert_array_equal(frame[key], augments[key])


def test_augment_config_defaults_are_the_sections():
    """One set of defaults: AugmentConfig's are the augment section's, so reading either an
    exec-property mapping or the section's dump gives the same settings."""
    section = AugmentSection()
    assert canonical.AugmentConfig() == canonical.AugmentConfig.from_settings(
        section.model_dump())
    assert canonical.AugmentConfig.from_settings({}) == canonical.AugmentConfig()
    # the exec properties as stored (mirror 0/1) read back as the section says
    changed = AugmentSection(mirror=False, copies=3, translation_unit="face")
    from_properties = canonical.AugmentConfig.from_settings(
        {name: parameter.type(getattr(changed, name, ""))
         for name, parameter in AugmentSpec.PARAMETERS.items()})
    assert from_properties == canonical.AugmentConfig.from_settings(changed.model_dump())
    assert from_properties.mirror is False and from_properties.translation_unit == "face"


# --- the anomaly gate ----------------------------------------------------------------

def anomalies_artifact(tmp: pathlib.Path, per_split: dict) -> standard_artifacts.ExampleAnomalies:
    """An ExampleAnomalies artifact as ExampleValidator writes it: Split-<s>/SchemaDiff.pb."""
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp / "anomalies")
    artifact.split_names = artifact_utils.encode_split_names(["train", "eval"])
    for split in ("train", "eval"):
        proto = anomalies_pb2.Anomalies()
        for feature, reasons in per_split.get(split, {}).items():
            info = proto.anomaly_info[feature]
            info.short_description = reasons[0][1]
            for kind, short, description in reasons:
                info.reason.add(type=kind, short_description=short, description=description)
        folder = pathlib.Path(artifact_utils.get_split_uri([artifact], split))
        folder.mkdir(parents=True)
        (folder / anomalies.ANOMALIES_FILE).write_bytes(proto.SerializeToString())
    return artifact


WRONG_LENGTH = (anomalies_pb2.AnomalyInfo.FEATURE_TYPE_HIGH_NUMBER_VALUES,
                "Superfluous values", "Some examples have more values than expected (138 > 136).")
UNEXPECTED_ID = (anomalies_pb2.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES,
                 "Unexpected string values", "Examples contain values missing from the schema: "
                 "small:afw/1051618982_1.")


def test_landmark_anomaly_stops_the_executor(raw_examples, tmp_path):
    artifact = anomalies_artifact(tmp_path, {"eval": {names.RAW_LANDMARKS: [WRONG_LENGTH]}})
    with pytest.raises(anomalies.DataAnomalies) as caught:
        run_augment(raw_examples, tmp_path, artifact)
    message = str(caught.value)
    assert "split eval" in message and "'landmarks'" in message and "138 > 136" in message
    assert not (tmp_path / "canonical_examples").exists()
    assert not (tmp_path / "canonical_frame").exists()


def test_identifier_string_domain_anomaly_alone_is_ignored(tmp_path):
    artifact = anomalies_artifact(tmp_path, {"eval": {
        names.RAW_FACE_ID: [UNEXPECTED_ID], names.RAW_SUBSET: [UNEXPECTED_ID],
        names.RAW_IMAGE_PATH: [UNEXPECTED_ID], names.RAW_DATASET: [UNEXPECTED_ID]}})
    assert anomalies.anomaly_lines(artifact) == []
    anomalies.raise_on_anomalies(artifact)  # does not raise


def test_other_anomalies_are_still_reported(tmp_path):
    artifact = anomalies_artifact(tmp_path, {
        "train": {names.RAW_FACE_ID: [UNEXPECTED_ID, WRONG_LENGTH]},
        "eval": {names.RAW_BOX_SOURCE: [UNEXPECTED_ID], names.RAW_FACE_ID: [UNEXPECTED_ID]}})
    lines = anomalies.anomaly_lines(artifact)
    assert len(lines) == 2
    train_line = next(line for line in lines if line.startswith("split train"))
    assert "'face_id'" in train_line and "138 > 136" in train_line
    assert "missing from the schema" not in train_line  # the ignored reason is not repeated
    eval_line = next(line for line in lines if line.startswith("split eval"))
    assert "'box_source'" in eval_line  # a string domain on a non-identifier feature counts
    with pytest.raises(anomalies.DataAnomalies, match="box_source"):
        anomalies.raise_on_anomalies(artifact)


def test_dataset_level_anomaly_is_reported(tmp_path):
    artifact = anomalies_artifact(tmp_path, {})
    proto = anomalies_pb2.Anomalies()
    proto.dataset_anomaly_info.description = "Low number of examples"
    split_dir = pathlib.Path(artifact_utils.get_split_uri([artifact], "train"))
    path = split_dir / anomalies.ANOMALIES_FILE
    path.write_bytes(proto.SerializeToString())
    assert anomalies.anomaly_lines(artifact) == ["split train: Low number of examples"]


def test_component_spec_builds():
    from tfx import types
    raw = types.Channel(type=standard_artifacts.Examples)
    component = Augment(examples=raw,
                        settings=AugmentSection(copies=3, mirror=False, seed=5))
    assert set(component.outputs) == {"canonical_examples", "canonical_frame"}
    assert component.outputs["canonical_frame"].type == standard_artifacts.TransformGraph
    assert component.exec_properties["copies"] == 3
    assert component.exec_properties["mirror"] == 0
    assert component.exec_properties["seed"] == 5
    # the section's defaults, not the component's, fill the rest
    assert component.exec_properties["translation_unit"] == AugmentSection().translation_unit
