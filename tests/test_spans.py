"""Spans and versions of source folders (facealign/core/spans.py), the stable hold-out they
need, and LandmarkExampleGen reading them: resolved by its driver before the cache is looked
up, or by the executor where no driver runs (Kubeflow V2)."""
import json
import pathlib
import time

import pytest
import tensorflow as tf
from tfx.orchestration.portable import data_types
from tfx.types import artifact_utils, standard_artifacts

from components.landmark_example_gen import driver, spec
from facealign.core import config, spans, splits
from facealign.core import examples as names
from tests import span_data
from tests.test_component_example_gen import read_split, run_example_gen

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def arrivals(tmp_path_factory):
    base = tmp_path_factory.mktemp("arrivals")
    dealt = span_data.deal_spans(base)
    return base, dealt


def test_the_latest_span_is_resolved_with_its_folder_and_boxes(arrivals):
    base, _ = arrivals
    resolution = spans.resolve([span_data.spanned_source(base)])
    assert resolution.span == 3 and resolution.version is None
    [source] = resolution.sources
    assert source["root"] == str(base / "3")
    assert source["boxes"] == [str(base / "3" / "boxes.csv")]


def test_a_requested_span_and_a_missing_one(arrivals):
    base, _ = arrivals
    assert spans.resolve([span_data.spanned_source(base)], span=2).sources[0]["root"] == \
        str(base / "2")
    with pytest.raises(spans.SpanError, match=r"has no span 7 \(its spans: \[1, 2, 3\]\)"):
        spans.resolve([span_data.spanned_source(base)], span=7)


def test_versions_take_the_latest_of_the_span(tmp_path):
    for span, version in [(1, 0), (2, 0), (2, 1), (2, 10)]:
        (tmp_path / str(span) / f"v{version}").mkdir(parents=True)
    (tmp_path / "2" / "notes").mkdir()       # not a version folder: ignored
    source = {"name": "s", "root": str(tmp_path / "{SPAN}" / "v{VERSION}"), "boxes": []}
    assert spans.available(source["root"]) == {1: {0}, 2: {0, 1, 10}}
    resolution = spans.resolve([source])
    assert (resolution.span, resolution.version) == (2, 10)
    assert resolution.sources[0]["root"] == str(tmp_path / "2" / "v10")


def test_an_empty_span_pattern_is_an_error_naming_the_source(tmp_path):
    with pytest.raises(spans.SpanError, match="no span folder matches the source root of s "):
        spans.resolve([{"name": "s", "root": str(tmp_path / "{SPAN}"), "boxes": []}])


def test_the_fingerprint_changes_when_a_file_is_added_or_rewritten(tmp_path):
    (tmp_path / "a.pts").write_text("1")
    source = {"name": "s", "root": str(tmp_path), "boxes": []}
    first = spans.resolve([source])
    assert first.span == spans.UNSPANNED and first.fingerprint.startswith("files:1,")
    assert spans.resolve([source]).fingerprint == first.fingerprint
    (tmp_path / "b.pts").write_text("2")
    second = spans.resolve([source]).fingerprint
    assert second != first.fingerprint and second.startswith("files:2,")
    time.sleep(0.01)
    (tmp_path / "b.pts").write_text("3")
    assert spans.resolve([source]).fingerprint != second


def test_a_face_keeps_its_split_when_others_arrive():
    first = [(f"s:face{i}", "train") for i in range(200)]
    later = first + [(f"s:new{i}", "train") for i in range(300)]
    before = splits.assign_splits(first, None, seed=0, eval_fraction=0.2)
    after = splits.assign_splits(later, None, seed=0, eval_fraction=0.2)
    assert all(after[face] == split for face, split in before.items())
    held = sum(split == "eval" for split in after.values())
    assert 70 <= held <= 130          # 20% of 500, by a hash
    # the permutation draw, by contrast, moves faces when others arrive
    moved = splits.assign_splits(later, 40, seed=0)
    assert any(moved[f] != s for f, s in splits.assign_splits(first, 40, seed=0).items())


def test_a_spanned_source_needs_the_stable_hold_out_and_one_frame():
    raw = {"data": {"sources": [{"name": "a", "root": "x/{SPAN}"}]}}
    with pytest.raises(config.ConfigError, match="data.eval_fraction"):
        config.from_dict(raw)
    raw["data"]["eval_fraction"] = 0.1
    with pytest.raises(config.ConfigError, match="augment.mean_shape: is not set, but sources "
                                                 r"\['a'\] arrive in spans"):
        config.from_dict(raw)      # one canonical frame for every span
    raw["augment"] = {"mean_shape": "runs/mean_shape.json"}
    assert config.from_dict(raw).data.eval_fraction == 0.1
    with pytest.raises(config.ConfigError, match="not both"):
        config.from_dict({"data": {**raw["data"], "eval_count": 5}})
    with pytest.raises(config.ConfigError, match="no source has one"):
        config.from_dict({"data": {"sources": [{"name": "a", "root": "x"}],
                                   "range": {"rolling_window": 3}}})


@pytest.mark.parametrize("resolved_by_driver", [True, False], ids=["driver", "executor"])
def test_example_gen_reads_the_latest_span_and_labels_its_examples(
        arrivals, tmp_path, resolved_by_driver):
    base, dealt = arrivals
    examples = run_example_gen(tmp_path, [span_data.spanned_source(base)], 0,
                               eval_fraction=0.25, resolved_by_driver=resolved_by_driver)
    assert examples.span == 3
    assert examples.get_string_custom_property(spec.FINGERPRINT_KEY).startswith("files:")
    read = [ex for split in artifact_utils.decode_split_names(examples.split_names)
            for ex in read_split(examples, split)]
    ids = {ex.features.feature[names.RAW_FACE_ID].bytes_list.value[0].decode() for ex in read}
    assert ids == {f"arrivals:{image.rsplit('.', 1)[0]}" for image in dealt[2]}
    report = json.loads((pathlib.Path(examples.uri) / spec.REPORT_FILE).read_text())
    assert report["span"] == 3 and report["accepted"] == len(dealt[2])


def test_raw_examples_carry_the_features_drift_is_checked_on(arrivals, tmp_path):
    base, dealt = arrivals
    examples = run_example_gen(tmp_path, [span_data.spanned_source(base)], 0,
                               eval_fraction=0.25, requested_span=1)
    example = read_split(examples, "train")[0]
    value = {name: example.features.feature[name]
             for name in (names.RAW_BOX_WIDTH, names.RAW_BOX_HEIGHT, names.RAW_IMAGE_WIDTH,
                          names.RAW_IMAGE_HEIGHT, names.RAW_IMAGE_CHANNELS,
                          names.RAW_LANDMARK_SPREAD)}
    box = list(example.features.feature[names.RAW_BOX].float_list.value)
    assert value[names.RAW_BOX_WIDTH].float_list.value[0] == pytest.approx(box[2] - box[0])
    assert value[names.RAW_BOX_HEIGHT].float_list.value[0] == pytest.approx(box[3] - box[1])
    image = tf.io.decode_image(example.features.feature[names.RAW_IMAGE].bytes_list.value[0])
    assert value[names.RAW_IMAGE_HEIGHT].int64_list.value[0] == image.shape[0]
    assert value[names.RAW_IMAGE_WIDTH].int64_list.value[0] == image.shape[1]
    assert value[names.RAW_IMAGE_CHANNELS].int64_list.value[0] == image.shape[2]
    assert 0.2 < value[names.RAW_LANDMARK_SPREAD].float_list.value[0] < 0.6


def test_the_driver_puts_span_version_and_fingerprint_before_the_cache(tmp_path):
    dealt = span_data.deal_spans(tmp_path, 2)
    properties = {spec.SOURCES_KEY: json.dumps([span_data.spanned_source(tmp_path)]),
                  spec.REQUESTED_SPAN_KEY: -1, spec.EVAL_COUNT_KEY: 0}

    def run_driver():
        return driver.SpanDriver(None).run(data_types.ExecutionInfo(
            exec_properties=properties,
            output_dict={spec.EXAMPLES_KEY: [standard_artifacts.Examples()]}))

    output = run_driver()
    assert output.exec_properties[spec.SPAN_KEY].int_value == 2
    assert output.exec_properties[spec.FINGERPRINT_KEY].string_value.startswith("files:")
    resolved = json.loads(output.exec_properties[spec.SOURCES_KEY].string_value)
    assert resolved[0]["root"] == str(tmp_path / "2")
    [artifact] = output.output_artifacts[spec.EXAMPLES_KEY].artifacts
    assert artifact.properties["span"].int_value == 2
    # a new span arrives: a new span and fingerprint, so a new execution
    span_data.write_span(tmp_path / "3", dealt[0][:3])
    again = run_driver()
    assert again.exec_properties[spec.SPAN_KEY].int_value == 3
    assert again.exec_properties[spec.FINGERPRINT_KEY] != output.exec_properties[
        spec.FINGERPRINT_KEY]


def test_airflows_launcher_keys_its_cache_on_the_resolved_span(tmp_path):
    """Airflow runs components through TFX's pre-IR launcher: its driver's pre_execution,
    on a real MLMD store, caches an unchanged folder and runs a new span anew."""
    from tfx import types
    from tfx.orchestration import data_types as legacy_types
    from tfx.orchestration import metadata, publisher

    dealt = span_data.deal_spans(tmp_path / "arrivals", 2)
    properties = {spec.SOURCES_KEY: json.dumps([span_data.spanned_source(tmp_path / "arrivals")]),
                  spec.REQUESTED_SPAN_KEY: -1, spec.EVAL_COUNT_KEY: 0}
    connection = metadata.sqlite_metadata_connection_config(str(tmp_path / "mlmd.sqlite"))

    def launch(run_id: str, publish: bool):
        run = legacy_types.PipelineInfo("spans", str(tmp_path / "root"), run_id=run_id)
        component = legacy_types.ComponentInfo("LandmarkExampleGen", "LandmarkExampleGen", run)
        with metadata.Metadata(connection) as store:
            decision = driver.SpanDriver(store).pre_execution(
                input_dict={},
                output_dict={spec.EXAMPLES_KEY: types.Channel(type=standard_artifacts.Examples)},
                exec_properties=dict(properties), driver_args=legacy_types.DriverArgs(True),
                pipeline_info=run, component_info=component)
            if publish and not decision.use_cached_results:
                publisher.Publisher(store).publish_execution(
                    component, decision.output_dict, decision.exec_properties)
        return decision

    first = launch("scheduled-1", publish=True)
    assert not first.use_cached_results and first.exec_properties[spec.SPAN_KEY] == 2
    assert json.loads(first.exec_properties[spec.SOURCES_KEY])[0]["root"].endswith("/2")
    assert launch("scheduled-2", publish=False).use_cached_results      # nothing new: cached
    span_data.write_span(tmp_path / "arrivals" / "3", dealt[0][:3])
    after = launch("scheduled-3", publish=False)
    assert not after.use_cached_results and after.exec_properties[spec.SPAN_KEY] == 3


def examples_of(span: int, artifact_id: int, version: int | None = None):
    artifact = standard_artifacts.Examples()
    artifact.span, artifact.id = span, artifact_id
    if version is not None:
        artifact.version = version
    return artifact


def test_the_rolling_window_takes_the_newest_of_the_last_spans():
    from components.span_resolver import strategy
    artifacts = [examples_of(1, 1), examples_of(2, 2), examples_of(2, 5), examples_of(3, 3),
                 examples_of(3, 4, version=1), examples_of(3, 6, version=0)]
    assert [a.id for a in strategy.rolling_spans(artifacts, 2)] == [5, 4]   # version 1 wins
    assert [a.id for a in strategy.rolling_spans(artifacts, 9)] == [1, 5, 4]


def test_the_evaluation_set_is_a_pinned_span_or_every_span():
    from components.span_resolver import strategy
    artifacts = [examples_of(1, 1), examples_of(2, 2), examples_of(1, 3)]
    assert [a.id for a in strategy.evaluation_spans(artifacts, 1)] == [3]
    assert [a.id for a in strategy.evaluation_spans(artifacts, None)] == [3, 2]
    assert strategy.evaluation_spans(artifacts, 7) == []


def test_the_card_lists_the_spans_of_each_generation():
    from facealign.core import model_card
    lines = model_card.lineage_lines({"lineage": {
        "generation": 3, "parent": "/m/base/17", "cumulative_steps": 10,
        "cumulative_samples": 640, "cumulative_seconds": 36.0,
        "spans_per_generation": [[1], [1, 2], [2, 3]]}})
    assert "- Data spans per generation: 1: 1; 2: 1, 2; 3: 2, 3" in lines
    assert not any("spans" in line for line in model_card.lineage_lines({"lineage": {
        "generation": 1, "cumulative_steps": 1, "cumulative_samples": 1,
        "cumulative_seconds": 1.0}}))
