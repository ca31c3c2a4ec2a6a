"""Scheduled runs on arriving data, end to end: three spans of the demo faces arrive one after
another (span 2's run first killed inside the drift check, then started again), then a fourth
whose boxes are twice as large. Real LocalDagRunner runs (tiny DAN)."""
import csv
import json
import os
import pathlib
import signal
import sqlite3
import subprocess

import numpy as np
import pytest

from facealign.core import faults
from facealign.core.model_format import ModelMetadata
from tests import span_data
from tests.test_pipeline_e2e import REPO, pipeline_args, run_pipeline, versions

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PREPROCESSING = ("LandmarkExampleGen", "StatisticsGen", "DriftCheck", "Augment")
# Spans of 20 faces: chance alone moved box_height's Jensen-Shannon divergence to 0.6 between
# two of them; boxes twice as large give 1.0 (validation.drift's defaults suit larger spans)
SMALL_SPAN_DRIFT = ("validation.drift={box_width: 0.9, box_height: 0.9, landmark_spread: 0.9, "
                    "image_width: 0.9, image_height: 0.9, image_channels: 0.9, dataset: 0.3}")


def spans_overrides(base: pathlib.Path, tmp_path: pathlib.Path) -> list[str]:
    return [f"data.sources.0.root={base}/{{SPAN}}",
            f"data.sources.0.boxes=[\"{base}/{{SPAN}}/boxes.csv\"]",
            "data.eval_count=null", "data.eval_fraction=0.25",
            "data.range.rolling_window=2",
            f"augment.mean_shape={tmp_path}/mean_shape.json",
            "evaluator.evaluation_set=pinned_span", "evaluator.pinned_span=1",
            "trainer.warm_start=latest_blessed", SMALL_SPAN_DRIFT]


def completed(tmp_path) -> dict[str, int]:
    """{node id: executions that ran (COMPLETE)}, from MLMD."""
    with sqlite3.connect(tmp_path / "root" / "metadata.sqlite") as db:
        rows = db.execute(
            "SELECT c.name FROM Execution e JOIN Association a ON a.execution_id = e.id "
            "JOIN Context c ON c.id = a.context_id JOIN Type t ON t.id = c.type_id "
            "WHERE t.name = 'node' AND e.last_known_state = 3").fetchall()
    counts: dict[str, int] = {}
    for (name,) in rows:
        node = name.split(".", 1)[-1]
        counts[node] = counts.get(node, 0) + 1
    return counts


def evaluated_faces(tmp_path) -> list[list[str]]:
    """Each Evaluator run's faces, in run order."""
    found = []
    for path in sorted((tmp_path / "root" / "LandmarkEvaluator" / "evaluation").glob(
            "*/face_errors.csv"), key=lambda p: int(p.parent.name)):
        with open(path) as handle:
            found.append(sorted(row["face_id"] for row in csv.DictReader(handle)))
    return found


def newest_model(tmp_path) -> dict:
    base = tmp_path / "serving" / "facealign-demo"
    return ModelMetadata.read(base / versions(tmp_path)[-1]).to_dict()


@pytest.fixture(scope="module")
def three_spans(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("spans_e2e")
    base = tmp_path / "arrivals"
    scratch = tmp_path / "dealt"
    dealt = span_data.deal_spans(scratch, 3)
    runs, killed = [], None
    for span in (1, 2, 3):
        span_data.write_span(base / str(span), dealt[span - 1])
        if span == 2:   # the scheduled run for span 2 is first killed inside the drift check
            killed = (subprocess.run(
                pipeline_args(tmp_path, *spans_overrides(base, tmp_path)), cwd=REPO,
                env={**os.environ, faults.FAULT_ENV: "DriftCheck"}, capture_output=True,
                text=True, timeout=900), completed(tmp_path), len(versions(tmp_path)))
        runs.append((run_pipeline(tmp_path, *spans_overrides(base, tmp_path)),
                     completed(tmp_path), newest_model(tmp_path), len(versions(tmp_path))))
    return tmp_path, base, dealt, runs, killed


def test_each_run_preprocesses_only_the_new_span(three_spans):
    _, _, _, runs, _ = three_spans
    for number, (result, counts, _, _) in enumerate(runs, start=1):
        assert f"ExampleGen: span {number}" in result.stdout
        for node in PREPROCESSING:
            assert counts[node] == number, (node, counts)


def test_a_run_killed_in_the_drift_check_completes_when_started_again(three_spans):
    _, _, _, runs, (result, counts, pushed) = three_spans
    assert result.returncode == -signal.SIGKILL and " in DriftCheck at " in result.stderr
    # span 2 was ingested and its statistics computed; the drift check never finished
    assert counts["LandmarkExampleGen"] == counts["StatisticsGen"] == 2
    assert counts["DriftCheck"] == counts["Augment"] == counts["Trainer"] == 1
    assert pushed == runs[0][3] == 1
    # started again: the same span from the cache, the check and the rest run, one push
    assert "ExampleGen: span 2" in runs[1][0].stdout
    assert runs[1][1]["LandmarkExampleGen"] == 2 and runs[1][1]["DriftCheck"] == 2
    assert runs[1][3] == 2


def test_the_trainer_trains_on_the_rolling_window_and_continues_the_last_model(three_spans):
    _, _, _, runs, _ = three_spans
    lineages = [model["lineage"] for _, _, model, _ in runs]
    assert [lin["spans_per_generation"][-1] for lin in lineages] == [[1], [1, 2], [2, 3]]
    assert [lin["generation"] for lin in lineages] == [1, 2, 3]
    assert lineages[2]["spans_per_generation"] == [[1], [1, 2], [2, 3]]
    assert "warm start from the latest blessed model: " in runs[1][0].stdout
    assert runs[1][2]["lineage"]["parent"] is not None


def test_every_run_is_evaluated_on_the_same_faces(three_spans):
    tmp_path, _, dealt, runs, _ = three_spans
    faces = evaluated_faces(tmp_path)
    assert len(faces) == 3 and faces[0] == faces[1] == faces[2]
    span_one = {f"demo:{image.rsplit('.', 1)[0]}" for image in dealt[0]}
    assert set(faces[0]) <= span_one and faces[0]
    assert "paired difference" in runs[1][0].stdout   # against the blessed generation 1


def test_one_frame_for_every_span(three_spans):
    tmp_path, _, _, runs, _ = three_spans
    pinned = np.array(json.loads((tmp_path / "mean_shape.json").read_text())["mean_shape"])
    for _, _, model, _ in runs:
        np.testing.assert_allclose(np.array(model["mean_shape"]), pinned, atol=1e-4)


def test_the_run_report_shows_each_span_and_its_drift_check(three_spans):
    from facealign.core import config
    from pipeline import run_report
    from tests.test_pipeline_e2e import REPO

    tmp_path, base, _, _, _ = three_spans
    cfg = config.load(REPO / "pipeline.yaml", [
        f"pipeline.root={tmp_path / 'root'}", f"serving.base_dir={tmp_path / 'serving'}",
        *spans_overrides(base, tmp_path)])
    page = run_report.build_report(cfg)
    assert page.count('<p class="span">span ') == 3
    assert '<p class="drift none">span 1 is the first</p>' in page
    assert "span 3 against span 2: within every threshold" in page
    assert "<th>span 2</th><th>span 3</th>" in page and "Jensen-Shannon divergence" in page


def test_a_span_whose_boxes_doubled_stops_the_run_before_training(three_spans):
    tmp_path, base, dealt, runs, _ = three_spans
    span_data.write_span(base / "4", dealt[2], box_scale=2.0)
    result = run_pipeline(tmp_path, *spans_overrides(base, tmp_path), check=False)
    assert result.returncode != 0
    assert "box_width: Jensen-Shannon divergence" in result.stderr
    assert "(span 3: mean " in result.stderr and "validation.accept_drift=true" in result.stderr
    assert "Traceback" not in result.stderr
    counts = completed(tmp_path)
    assert counts["LandmarkExampleGen"] == 4 and counts["Augment"] == 3
    assert counts["Trainer"] == 3 and len(versions(tmp_path)) == runs[-1][3]


def test_a_folder_without_spans_is_read_again_when_its_files_change(tmp_path):
    """The fingerprint of the source's files is a parameter of ExampleGen's execution: a face
    added to the folder is a new execution (before, a silent cache hit)."""
    import shutil

    data = tmp_path / "faces"
    shutil.copytree(span_data.DEMO, data)
    overrides = [f"data.sources.0.root={data}", f"data.sources.0.boxes=[\"{data}/boxes.csv\"]"]
    first = run_pipeline(tmp_path, *overrides)
    assert "60 faces used" in first.stdout
    again = run_pipeline(tmp_path, *overrides)
    assert completed(tmp_path)["LandmarkExampleGen"] == 1      # unchanged: from the cache
    image = sorted(span_data.demo_boxes())[0]
    for suffix in (".jpg", ".pts"):
        shutil.copy((data / image).with_suffix(suffix), data / f"afw/added_1{suffix}")
    with open(data / "boxes.csv", "a") as handle:
        handle.write("afw/added_1.jpg," + ",".join(map(str, span_data.demo_boxes()[image]))
                     + "\n")
    third = run_pipeline(tmp_path, *overrides)
    assert "61 faces used" in third.stdout and "60 faces used" not in again.stdout
    assert completed(tmp_path)["LandmarkExampleGen"] == 2
