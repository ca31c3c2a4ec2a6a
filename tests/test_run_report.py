"""`facealign report`: the HTML page of what the pipeline did, from ML Metadata and the artifacts.

The e2e test runs the demo pipeline twice (the second run all cached) and
reads the page the way a browser test would: by its section ids and row
classes.
"""
import re

import pytest

from tests.test_pipeline_e2e import run_pipeline

REPO_CONFIG = "pipeline.yaml"


def sections(page: str) -> dict[str, str]:
    """{section id: its HTML}."""
    return dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, re.S))


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    """The demo pipeline run twice into one root (the second run all cached) and its report
    written by the command: (config overrides, history, report file)."""
    from facealign import cli
    from facealign.core import config
    from pipeline import run_history

    tmp_path = tmp_path_factory.mktemp("two-runs")
    run_pipeline(tmp_path)
    run_pipeline(tmp_path)
    overrides = [f"pipeline.root={tmp_path / 'root'}",
                 f"serving.base_dir={tmp_path / 'serving'}"]
    out = tmp_path / "report.html"
    args = ["report", "--config", REPO_CONFIG, "--out", str(out)]
    assert cli.main([*args, *[item for o in overrides for item in ("--set", o)]]) == 0
    history = run_history.read_history(config.load(REPO_CONFIG, overrides))
    return overrides, history, out


@pytest.mark.e2e
@pytest.mark.slow
def test_report_of_two_runs_newest_first(demo_report):
    from pipeline import run_report

    _, history, out = demo_report
    page = run_report.render(history)
    part = sections(page)
    assert set(part) >= {"runs", "data", "models", "evaluations", "versions", "sweeps"}

    runs = re.findall(r'<details class="run"( open)?><summary>([^<]*)</summary>(.*?)</details>',
                      part["runs"], re.S)
    assert len(runs) == 2
    assert [bool(is_open) for is_open, _, _ in runs] == [True, False]   # newest open
    newest, oldest = history.runs
    assert newest.started > oldest.started and runs[0][1].startswith(newest.name)
    second_run_states = re.findall(r'class="execution (\w+)"><td>(\w+)</td>', runs[0][2])
    ran_again = [node for state, node in second_run_states
                 if state != "cached" and not node.endswith("resolver")]
    assert ran_again == [] and len(second_run_states) >= 8
    assert re.findall(r'class="execution (\w+)"', runs[1][2]).count("complete") >= 8

    [data] = history.data
    assert data.accepted == 60 and data.rejected == 0
    assert '<span class="accepted">60</span>' in part["data"]
    assert "no anomalies" in part["data"]

    assert "generation 1, trained from random weights" in part["models"]
    assert 'class="curve"' in part["models"]
    assert '<p class="blessing blessed">BLESSED: <span class="reason">NME ' in part["evaluations"]
    assert "&lt;= 100.000%" in part["evaluations"]     # the reason, escaped
    assert 'class="ced"' in part["evaluations"]

    [version] = history.serving.versions
    serving_rows = re.findall(r'<tr class="version serving"><td>(\d+)</td>', part["versions"])
    assert serving_rows == [str(version)]
    assert "no sweep" in part["sweeps"]

    assert page.count("data:image/png;base64,") >= 2
    assert 'src="http' not in page and not re.search(r'(href|src)="(https?:)?//', page)
    assert out.read_text().count('<details class="run"') == 2     # the command's file


@pytest.mark.e2e
@pytest.mark.slow
def test_the_report_in_a_browser_shows_runs_blessing_and_versions(demo_report):
    """The report file opened in headless Chromium (tests/test_browser.py's browser): what a
    person sees, not only what the HTML holds."""
    from tests.test_browser import browser_session, save_screenshot, screenshot_folder

    _, history, out = demo_report
    with browser_session() as driver:
        driver.get(out.as_uri())
        runs = driver.find_elements("css selector", "#runs details.run")
        assert len(runs) == 2
        assert runs[0].get_attribute("open") is not None and runs[1].get_attribute("open") is None
        cached = runs[0].find_elements("css selector", "tr.execution.cached")
        assert len(cached) >= 8 and all(row.is_displayed() for row in cached)
        assert not runs[1].find_element("css selector", "tr.execution").is_displayed()  # folded
        blessing = driver.find_element("css selector", "#evaluations p.blessing.blessed")
        assert blessing.is_displayed() and blessing.text.startswith("BLESSED: NME ")
        serving = driver.find_element("css selector", "#versions tr.version.serving")
        assert serving.is_displayed()
        assert serving.text.startswith(str(history.serving.versions[0]))
        images = driver.find_elements("css selector", "img.curve, img.ced")
        assert images and all(driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", image)
            for image in images)
        save_screenshot(driver, screenshot_folder() / "run_report.jpg")


def test_a_root_without_metadata_is_one_line_exit_2(tmp_path, capsys):
    from facealign import cli

    code = cli.main(["report", "--config", REPO_CONFIG, "--set",
                     f"pipeline.root={tmp_path / 'root'}", "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("facealign report: error: no ML Metadata at ")
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "root").exists() and not (tmp_path / "r.html").exists()


def test_missing_artifact_folders_read_as_missing(tmp_path):
    """A deleted artifact folder is reported, not raised: the records say what is missing."""
    from pipeline import run_history, run_report

    history = run_history.RunHistory(
        pipeline="p", store="s",
        runs=[run_history.Run("r<1>", 1.7e9, [run_history.Execution(1, "Trainer", "failed",
                                                                    1.7e9, 3.0)])],
        data=[run_history.IngestedData(1, "r<1>", 5, 1, {}, [{"file": "<a>.jpg",
                                                               "reason": "bad", "dataset": "d"}],
                                       None, "ingest_report.json missing")],
        models=[run_history.TrainedModel(2, "r<1>", "/gone", None, "no model metadata")],
        evaluations=[run_history.Evaluation(3, "r<1>", None, None, None, None, None, "")],
        pushes=[], serving=run_history.ServingFolder(tmp_path, []), sweeps=[])
    page = run_report.render(history)
    assert 'class="execution failed"' in page and "r&lt;1&gt;" in page and "<a>" not in page
    assert page.count('class="missing"') >= 4
    assert "no pushes recorded" in page and "no sweep" in page


def test_the_pipeline_tuners_trials_are_a_table(tmp_path):
    """The pipeline's Tuner output (its TunerResults artifact's tuner_results.json) reads as
    a trials table; a missing file says so."""
    import json
    from types import SimpleNamespace

    from facealign.core import config
    from pipeline import run_history, run_report

    found = tmp_path / "found"
    found.mkdir()
    (found / "tuner_results.json").write_text(json.dumps([
        {"trial_id": "00", "score": 0.21, "trainer.learning_rate": 0.001},
        {"trial_id": "01", "score": 0.19, "trainer.learning_rate": 0.0003}]))

    def output(uri, run):
        return run_history._Output(SimpleNamespace(uri=str(uri)), "TunerResults", run, {run},
                                   "Tuner")

    cfg = config.load(REPO_CONFIG, [f"tuner.directory={tmp_path / 'none'}"])
    sweeps = run_history.read_sweeps(cfg, [output(found, "run-2"),
                                           output(tmp_path / "gone", "run-1")])
    assert [s.source for s in sweeps] == [
        "pipeline Tuner, run run-2",
        f"pipeline Tuner, run run-1: {tmp_path / 'gone' / 'tuner_results.json'} missing"]
    assert sweeps[0].columns == ["trial_id", "score", "trainer.learning_rate"]
    section = run_report.sweeps_section(run_history.RunHistory(
        pipeline="p", store="s", runs=[], data=[], models=[], evaluations=[], pushes=[],
        serving=None, sweeps=sweeps))
    assert section.count('<div class="sweep">') == 2
    assert "0.0003" in section and "no trials" in section


def test_the_faces_that_changed_most_come_from_the_per_face_errors():
    import numpy as np

    from pipeline import run_report

    errors = {"face_id": ["a:1", "a:2", "a:3"], "subset": ["afw", "afw", "helen"],
              "candidate": np.array([5.0, 9.0, 4.0]), "baseline": np.array([5.1, 6.0, 4.5])}
    page = run_report.changed_faces_table(errors, count=2)
    rows = re.findall(r"<tr[^>]*><td>([^<]*)</td>", page)
    assert rows[:2] == ["a:2", "a:3"]            # +3.0, then -0.5
    assert "+3.000" in page and "-0.500" in page and "of 3" in page
