"""DriftCheck on real faces: spans of the demo set, one with boxes twice as large (a detector
that changed), through TFX's StatisticsGen and TFDV's comparators."""
import json
import pathlib

import pytest
from tfx.components.statistics_gen import executor as statistics_executor
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

from components.drift_check import executor, spec
from components.drift_check.component import DriftCheck
from facealign.core import config
from tests import span_data
from tests.test_component_example_gen import BEAM_ARGS, run_example_gen

THRESHOLDS = config.ValidationSection().drift


def statistics_of(tmp: pathlib.Path, examples, artifact_id: int):
    stats = standard_artifacts.ExampleStatistics()
    stats.uri, stats.id = str(tmp / "statistics"), artifact_id
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=BEAM_ARGS,
                                                         tmp_dir=str(tmp / "tmp"))
    statistics_executor.Executor(context).Do({"examples": [examples]}, {"statistics": [stats]},
                                             {"exclude_splits": "[]"})
    stats.span = examples.span
    return stats


@pytest.fixture(scope="module")
def span_statistics(tmp_path_factory):
    """Statistics of spans 1 and 2 (the demo faces dealt in two), and of span 3: span 2's
    faces with their boxes doubled."""
    base = tmp_path_factory.mktemp("spans")
    dealt = span_data.deal_spans(base, 2)
    span_data.write_span(base / "3", dealt[1], box_scale=2.0)
    stats = {}
    for span in (1, 2, 3):
        tmp = tmp_path_factory.mktemp(f"span{span}")
        examples = run_example_gen(tmp, [span_data.spanned_source(base)], 0, eval_fraction=0.2,
                                   requested_span=span)
        stats[span] = statistics_of(tmp, examples, span)
    return stats


def run_drift_check(tmp: pathlib.Path, current, earlier, accept=False, thresholds=THRESHOLDS):
    out = standard_artifacts.ExampleAnomalies()
    out.uri = str(tmp / "drift")
    executor.Executor().Do(
        {spec.STATISTICS_KEY: [current], spec.EARLIER_STATISTICS_KEY: earlier},
        {spec.DRIFT_KEY: [out]},
        {spec.THRESHOLDS_KEY: json.dumps(thresholds), spec.ACCEPT_DRIFT_KEY: int(accept)})
    return out, json.loads((pathlib.Path(out.uri) / spec.REPORT_FILE).read_text())


def test_the_first_span_has_nothing_to_compare(span_statistics, tmp_path):
    out, report = run_drift_check(tmp_path, span_statistics[1], [span_statistics[1]])
    assert report["previous_span"] is None and report["drifted"] == []
    assert out.get_int_custom_property(spec.DRIFTED_PROPERTY) == 0


def test_a_span_like_the_last_passes_and_every_feature_is_measured(span_statistics, tmp_path):
    out, report = run_drift_check(tmp_path, span_statistics[2],
                                  [span_statistics[1], span_statistics[2]])
    assert report["previous_span"] == 1 and report["drifted"] == []
    assert {row["feature"] for row in report["features"]} == set(THRESHOLDS)


def test_boxes_twice_as_large_stop_the_run_naming_the_feature_and_both_values(
        span_statistics, tmp_path):
    with pytest.raises(executor.DriftError) as stopped:
        run_drift_check(tmp_path, span_statistics[3], list(span_statistics.values()))
    message = str(stopped.value)
    assert "box_width: Jensen-Shannon divergence" in message
    assert "(span 2: mean " in message and "; span 3: mean " in message
    assert "validation.accept_drift=true" in message
    report = json.loads((tmp_path / "drift" / spec.REPORT_FILE).read_text())
    assert {"box_width", "box_height"} <= set(report["drifted"])
    widths = {r["feature"]: r for r in report["features"]}["box_width"]
    before, after = (float(widths[k].split()[-1]) for k in ("previous", "current"))
    assert after == pytest.approx(2 * before, rel=1e-3)
    assert widths["value"] > 0.9


def test_accepted_drift_is_reported_and_the_run_goes_on(span_statistics, tmp_path):
    out, report = run_drift_check(tmp_path, span_statistics[3], list(span_statistics.values()),
                                  accept=True)
    assert "box_width" in report["drifted"] and report["accept_drift"] is True
    assert out.get_int_custom_property(spec.DRIFTED_PROPERTY) == 1


def test_the_previous_span_is_the_largest_below_the_current():
    def stats(span, artifact_id):
        artifact = standard_artifacts.ExampleStatistics()
        artifact.span, artifact.id, artifact.uri = span, artifact_id, f"/s/{artifact_id}"
        return artifact
    current = stats(5, 9)
    earlier = [stats(3, 1), stats(4, 2), stats(4, 3), stats(6, 4), current]
    assert executor.previous_span(current, earlier).id == 3
    assert executor.previous_span(stats(1, 10), earlier) is None


def test_component_spec_builds():
    from tfx import types
    channel = types.Channel(type=standard_artifacts.ExampleStatistics)
    component = DriftCheck(statistics=channel, thresholds={"box_width": 0.2})
    assert json.loads(component.exec_properties[spec.THRESHOLDS_KEY]) == {"box_width": 0.2}
