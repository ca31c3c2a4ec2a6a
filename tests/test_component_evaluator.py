"""LandmarkEvaluator with exported models whose predictions are known exactly.

The Evaluator scores raw faces (LandmarkExampleGen's tf.Examples: photo bytes
and detector box) through the SavedModel's serving signature. The models here
return the canonical mean shape S0 plus a fixed offset whatever the image, so
the serving graph answers S0 + offset fitted to each detector box, and the
evaluator's scores can be recomputed in numpy (geometry.box_fit_transform)
and compared exactly. The last test scores a real (untrained) DAN both with
the Evaluator on ExampleGen's output and with `facealign evaluate` on the
same folder.
"""
import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from tfx.components.evaluator import constants
from tfx.types import artifact_utils, standard_artifacts

from components.landmark_evaluator import evaluation, executor, spec
from components.landmark_evaluator.component import LandmarkEvaluator
from facealign.core import canonical, geometry, metrics
from facealign.core.data import read_dataset
from facealign.core.raw_example import record_to_example
from trainer.export import export_saved_model

SIZE = 112
FACES_PER_SUBSET = 4
THRESHOLD = 0.08
SHIFT = (6.0, -4.0)  # canonical pixels: a clearly worse model


class ShiftedMeanShape(keras.layers.Layer):
    """S0 + offset for every image of the batch: [B, N, 2]."""

    def __init__(self, mean_shape, offset=(0.0, 0.0), **kwargs):
        super().__init__(**kwargs)
        self.shape_value = (np.asarray(mean_shape, np.float32).reshape(-1, 2)
                            + np.asarray(offset, np.float32))

    def call(self, images):
        batch = tf.shape(images)[0]
        return tf.tile(tf.constant(self.shape_value)[None], [batch, 1, 1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.shape_value.shape


def tiny_model(mean_shape, offset=(0.0, 0.0)) -> keras.Model:
    """Two stages, the dict interface of the DAN: stage_1 = S0, stage_2 = S0 + offset."""
    image = keras.Input((SIZE, SIZE, 1), dtype="uint8", name="image")
    stage_1 = ShiftedMeanShape(mean_shape, name="s1")(image)
    stage_2 = ShiftedMeanShape(mean_shape, offset, name="s2")(image)
    return keras.Model(image, {"stage_1": stage_1, "stage_2": stage_2})


def model_artifact(uri: pathlib.Path, model_id: int) -> standard_artifacts.Model:
    artifact = standard_artifacts.Model()
    artifact.uri = str(uri)
    artifact.id = model_id
    return artifact


@pytest.fixture(scope="module")
def setup(demo_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluator")
    root = demo_data / "300w"
    records, _ = read_dataset(root, boxes=[root / "boxes.csv"], name="demo")
    chosen = ([r for r in records if r.subset == "afw"][:FACES_PER_SUBSET]
              + [r for r in records if r.subset == "helen/trainset"][:FACES_PER_SUBSET])
    mean = geometry.procrustes_mean([r.landmarks for r in records])
    frame = canonical.CanonicalFrame.from_mean_shape(mean, SIZE)

    # The raw faces as LandmarkExampleGen writes them (photo bytes, detector box).
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp / "examples")
    examples.split_names = artifact_utils.encode_split_names(["eval"])
    split_dir = pathlib.Path(artifact_utils.get_split_uri([examples], "eval"))
    split_dir.mkdir(parents=True)
    samples = []
    with tf.io.TFRecordWriter(str(split_dir / "data_tfrecord-00000-of-00001.gz"),
                              options="GZIP") as writer:
        for record in chosen:
            writer.write(record_to_example(record))
            samples.append((record, record.subset))

    models = {}
    for i, (name, offset) in enumerate([("zero", (0, 0)), ("zero_copy", (0, 0)),
                                        ("shifted", SHIFT)], start=1):
        artifact = model_artifact(tmp / name, i)
        export_saved_model(tiny_model(frame.mean_shape, offset), frame.mean_shape,
                           str(tmp / name / "Format-Serving"))
        models[name] = artifact
    return {"tmp": tmp, "examples": examples, "samples": samples, "frame": frame,
            "models": models}


def in_box(record, mean_shape, offset) -> np.ndarray:
    """S0 + offset (canonical pixels) mapped to the photo by S0's fit to the detector box."""
    shape = np.asarray(mean_shape, np.float64) + np.asarray(offset, np.float64)
    return geometry.apply_transform(geometry.box_fit_transform(mean_shape, record.box), shape)


def expected_summary(samples, mean_shape, offset, subset=None) -> dict:
    """metrics.summary of S0 + offset placed in each face's box, in numpy."""
    chosen = [r for r, sub in samples if subset is None or sub == subset]
    predicted = np.stack([in_box(r, mean_shape, offset) for r in chosen])
    truth = np.stack([r.landmarks for r in chosen])
    return metrics.summary(predicted, truth, THRESHOLD)


def evaluate(setup, name: str, tag: str, baseline: str | None = None, max_nme: float = 100.0,
             tolerance=(0.05, 0.01), examples=None):
    tmp = setup["tmp"] / f"run_{tag}"
    evaluation_artifact = standard_artifacts.ModelEvaluation()
    evaluation_artifact.uri = str(tmp / "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp / "blessing")
    inputs = {"examples": examples or [setup["examples"]], "model": [setup["models"][name]]}
    if baseline is not None:
        inputs["baseline_model"] = [setup["models"][baseline]]
    executor.Executor().Do(inputs, {"evaluation": [evaluation_artifact], "blessing": [blessing]},
                           {"split": "eval", "max_nme": max_nme,
                            "failure_threshold": THRESHOLD,
                            "tolerance_absolute": tolerance[0],
                            "tolerance_relative": tolerance[1]})
    report = json.loads((tmp / "evaluation" / executor.METRICS_FILE).read_text())
    return report, blessing


def blessing_state(blessing) -> tuple[int, set[str]]:
    """(blessed property, marker files); the evaluation copy for the Pusher is checked apart."""
    folder = pathlib.Path(blessing.uri)
    evaluation = json.loads((folder / executor.BLESSING_EVALUATION_FILE).read_text())
    assert set(evaluation) == {"split", "failure_threshold", "metrics", "reason"}
    assert evaluation["metrics"]["all"]["count"] > 0
    files = {p.name for p in folder.iterdir()} - {executor.BLESSING_EVALUATION_FILE}
    return blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY), files


def assert_summaries_equal(actual: dict, expected: dict):
    assert set(actual) == set(expected)
    for key, value in expected.items():
        if value is None:
            assert actual[key] is None
        else:
            assert actual[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


# --- scores ----------------------------------------------------------------------------

def test_offset_zero_model_scores_the_mean_shape_error(setup):
    report, blessing = evaluate(setup, "zero", "zero")
    samples, s0 = setup["samples"], setup["frame"].mean_shape
    scores = report["metrics"]
    assert set(scores) == {"all", "afw", "helen/trainset"}
    assert_summaries_equal(scores["all"], expected_summary(samples, s0, (0, 0)))
    for subset in ("afw", "helen/trainset"):
        assert scores[subset]["count"] == FACES_PER_SUBSET
        assert_summaries_equal(scores[subset], expected_summary(samples, s0, (0, 0), subset))
    assert 0 < scores["all"]["nme_inter_ocular"] < 100
    assert report["split"] == "eval" and "baseline" not in report
    png = (pathlib.Path(setup["tmp"]) / "run_zero" / "evaluation" / executor.CED_FILE).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert blessing_state(blessing) == (1, {constants.BLESSED_FILE_NAME})
    assert report["blessed"] is True


def test_predictions_are_the_serving_signatures_in_original_pixels(setup):
    files = executor.split_files(setup["examples"], "eval")
    predictions = evaluation.predict(str(setup["models"]["shifted"].uri) + "/Format-Serving",
                                     evaluation.read_examples(files),
                                     batch_size=3)  # several batches
    expected = np.stack([in_box(r, setup["frame"].mean_shape, SHIFT)
                         for r, _ in setup["samples"]])
    np.testing.assert_allclose(predictions.predicted, expected, atol=1e-3)
    assert predictions.subsets == [sub for _, sub in setup["samples"]]
    np.testing.assert_array_equal(predictions.ground_truth,
                                  np.stack([r.landmarks for r, _ in setup["samples"]]))


# --- blessing ------------------------------------------------------------------------------

def test_blessed_without_baseline_under_the_threshold(setup):
    report, blessing = evaluate(setup, "shifted", "shifted_alone")
    assert report["blessed"] is True
    assert blessing_state(blessing) == (1, {constants.BLESSED_FILE_NAME})
    assert blessing.get_string_custom_property(
        constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY) == setup["models"]["shifted"].uri
    assert blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY) == 3


def test_not_blessed_when_worse_than_the_baseline(setup):
    report, blessing = evaluate(setup, "shifted", "worse", baseline="zero")
    candidate = report["metrics"]["all"]["nme_inter_ocular"]
    baseline = report["baseline"]["metrics"]["all"]["nme_inter_ocular"]
    assert candidate > baseline  # the shift really is worse on these faces
    samples, s0 = setup["samples"], setup["frame"].mean_shape
    assert_summaries_equal(report["baseline"]["metrics"]["all"],
                           expected_summary(samples, s0, (0, 0)))
    assert_summaries_equal(report["metrics"]["all"], expected_summary(samples, s0, SHIFT))
    assert report["blessed"] is False and "baseline" in report["reason"]
    assert blessing_state(blessing) == (0, {constants.NOT_BLESSED_FILE_NAME})
    message = blessing.get_string_custom_property(
        constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY)
    assert "baseline" in message and f"{baseline:.3f}" in message
    assert blessing.get_string_custom_property(
        constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY) == setup["models"]["zero"].uri


def test_blessed_when_better_than_the_baseline(setup):
    report, blessing = evaluate(setup, "zero", "better", baseline="shifted")
    assert report["blessed"] is True
    assert blessing_state(blessing) == (1, {constants.BLESSED_FILE_NAME})


def test_blessed_when_equal_to_the_baseline(setup):
    report, blessing = evaluate(setup, "zero", "equal", baseline="zero_copy")
    assert (report["metrics"]["all"]["nme_inter_ocular"]
            == report["baseline"]["metrics"]["all"]["nme_inter_ocular"])
    assert report["blessed"] is True
    assert blessing_state(blessing) == (1, {constants.BLESSED_FILE_NAME})


def test_baseline_that_is_the_model_itself_is_not_compared(setup):
    report, blessing = evaluate(setup, "zero", "self", baseline="zero")
    assert "baseline" not in report
    assert report["blessed"] is True


def test_not_blessed_above_the_threshold(setup):
    report, blessing = evaluate(setup, "zero", "strict", max_nme=0.5)
    assert report["metrics"]["all"]["nme_inter_ocular"] > 0.5
    assert report["blessed"] is False and "above the threshold" in report["reason"]
    assert blessing_state(blessing) == (0, {constants.NOT_BLESSED_FILE_NAME})


def test_missing_split_is_a_clear_error(setup, tmp_path):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "none")
    examples.split_names = artifact_utils.encode_split_names(["test"])
    with pytest.raises(ValueError, match="split 'test'.*has no files"):
        executor.split_files(examples, "test")


def test_per_face_errors_are_kept_for_both_models(setup):
    report, _ = evaluate(setup, "shifted", "per_face", baseline="zero")
    errors = evaluation.read_face_errors(
        str(setup["tmp"] / "run_per_face" / "evaluation" / executor.FACE_ERRORS_FILE))
    assert len(errors["face_id"]) == report["metrics"]["all"]["count"]
    assert errors["candidate"].mean() == pytest.approx(
        report["metrics"]["all"]["nme_inter_ocular"], rel=1e-5)
    assert errors["baseline"].mean() == pytest.approx(
        report["baseline"]["metrics"]["all"]["nme_inter_ocular"], rel=1e-5)
    paired = report["paired"]
    assert paired["mean"] == pytest.approx((errors["candidate"] - errors["baseline"]).mean())
    assert paired["low"] <= paired["mean"] <= paired["high"]
    assert f"{paired['mean']:+.3f} points" in report["reason"]


def test_a_worse_model_within_a_wide_tolerance_is_blessed(setup):
    """The tolerance is what a noisy equal model needs; a wide one lets the shift pass."""
    report, _ = evaluate(setup, "shifted", "tolerant", baseline="zero", tolerance=(50.0, 0.0))
    assert report["paired"]["mean"] > 0 and report["blessed"] is True


def test_faces_of_several_spans_are_scored_once_each(setup):
    report, _ = evaluate(setup, "zero", "two_spans",
                         examples=[setup["examples"], setup["examples"]])
    single, _ = evaluate(setup, "zero", "one_span")
    assert report["metrics"]["all"]["count"] == single["metrics"]["all"]["count"]
    assert len(report["examples"]) == 2 * len(single["examples"])


# --- decide ------------------------------------------------------------------------------

def paired_for(candidate: float, baseline: float, tolerance: float = 0.05) -> dict:
    """compare() of two constant error vectors: the difference is exact."""
    return evaluation.compare(np.full(12, candidate), np.full(12, baseline), tolerance, 0.0)


@pytest.mark.parametrize("current, max_nme, baseline, blessed, words", [
    (5.0, 10.0, None, True, "<= 10.000%"),
    (10.0, 10.0, None, True, "<= 10.000%"),
    (10.001, 10.0, None, False, "above the threshold"),
    (float("nan"), 10.0, None, False, "above the threshold"),
    (5.0, 10.0, 4.0, False, "worse than the blessed baseline's: baseline 4.000%"),
    (5.0, 10.0, 5.0, True, "baseline 5.000%; paired difference +0.000"),
    (5.0, 10.0, 6.0, True, "baseline 6.000%"),
    (5.04, 10.0, 5.0, True, "paired difference +0.040 points"),   # within 0.05
    (5.06, 10.0, 5.0, False, "tolerance 0.050"),
    (12.0, 10.0, 20.0, False, "above the threshold"),
])
def test_decide(current, max_nme, baseline, blessed, words):
    ok, reason = evaluation.decide(current, max_nme,
                                   None if baseline is None else paired_for(current, baseline))
    assert ok is blessed
    assert words in reason


def test_the_tolerance_is_the_larger_of_absolute_and_relative():
    errors = np.full(8, 20.0)
    assert evaluation.compare(errors, errors, 0.05, 0.01)["tolerance"] == pytest.approx(0.2)
    assert evaluation.compare(errors, errors, 0.5, 0.01)["tolerance"] == pytest.approx(0.5)


def test_two_equal_models_differing_by_noise_are_not_refused():
    """The demo's case: two identical runs scored 19.767% and 19.770%. Per face, the
    differences are noise around zero, within the default tolerance."""
    rng = np.random.default_rng(1)
    baseline = rng.gamma(4.0, 5.0, size=12)
    candidate = baseline + rng.normal(0, 0.01, size=12)
    paired = evaluation.compare(candidate, baseline, 0.05, 0.01)
    assert paired["low"] < 0.03 and paired["within_tolerance"]
    assert evaluation.decide(float(candidate.mean()), 100.0, paired)[0] is True


def test_headline_nme_falls_back_to_box_diagonal():
    assert metrics.headline_nme({"nme_inter_ocular": 3.0, "nme_box_diagonal": 1.0}) == 3.0
    assert metrics.headline_nme({"nme_inter_ocular": None, "nme_box_diagonal": 1.0}) == 1.0


def test_component_spec_builds():
    from tfx import types
    component = LandmarkEvaluator(examples=types.Channel(type=standard_artifacts.Examples),
                                  model=types.Channel(type=standard_artifacts.Model),
                                  split="test", max_nme=7.5)
    assert set(component.outputs) == {"evaluation", "blessing"}
    assert component.outputs["blessing"].type == standard_artifacts.ModelBlessing
    assert component.exec_properties["split"] == "test"
    assert component.exec_properties["max_nme"] == 7.5


# --- the Evaluator and `facealign evaluate` score alike ------------------------------------

def test_evaluator_and_the_evaluate_command_agree_on_the_same_faces(demo_data, tmp_path):
    """A real DAN (untrained, so its answers depend on the pixels) scored twice on the 60 demo
    faces with their detector boxes: by the Evaluator on LandmarkExampleGen's output (a test
    source: every face in the test split) and by `facealign evaluate` on the folder."""
    from tfx.dsl.components.base import base_beam_executor

    from components.landmark_example_gen import executor as example_gen_executor
    from facealign import cli
    from facealign.core.config import DanConfig
    from trainer.dan_model import build_dan_model

    root = demo_data / "300w"
    records, _ = read_dataset(root, boxes=[root / "boxes.csv"], name="demo")
    frame = canonical.CanonicalFrame.from_mean_shape(
        geometry.procrustes_mean([r.landmarks for r in records]), SIZE)
    keras.utils.set_random_seed(3)
    dan = build_dan_model(frame.mean_shape, np.full((SIZE, SIZE), 100.0, np.float32),
                          np.full((SIZE, SIZE), 50.0, np.float32),
                          DanConfig(stages=2, base_filters=4, fc_units=16, dropout=0.0))
    model_dir = tmp_path / "dan" / "Format-Serving"
    export_saved_model(dan, frame.mean_shape, str(model_dir))
    model = model_artifact(tmp_path / "dan", 7)

    raw = standard_artifacts.Examples()
    raw.uri = str(tmp_path / "raw")
    raw.id = 1
    sources = [{"name": "demo", "format": "300w", "root": str(root),
                "boxes": [str(root / "boxes.csv")], "split": "test"}]
    example_gen_executor.Executor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=["--direct_num_workers=1", "--direct_running_mode=in_memory"],
        tmp_dir=str(tmp_path / "tmp"))).Do(
        {}, {"examples": [raw]},
        {"sources": json.dumps(sources), "eval_count": 0, "seed": 0, "on_error": "skip",
         "eval_fraction": 0.0, "requested_span": -1})

    evaluation_artifact = standard_artifacts.ModelEvaluation()
    evaluation_artifact.uri = str(tmp_path / "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    executor.Executor().Do({spec.EXAMPLES_KEY: [raw], spec.MODEL_KEY: [model]},
                           {spec.EVALUATION_KEY: [evaluation_artifact],
                            spec.BLESSING_KEY: [blessing]},
                           {spec.SPLIT_KEY: "test", spec.MAX_NME_KEY: 1e9,
                            spec.FAILURE_THRESHOLD_KEY: THRESHOLD})
    report = json.loads((tmp_path / "evaluation" / spec.METRICS_FILE).read_text())
    pipeline_figures = report["metrics"]["all"]

    out = tmp_path / "evaluate.json"
    assert cli.main(["evaluate", "--model", str(model_dir), "--data", str(root),
                     "--boxes", str(root / "boxes.csv"), "--json", str(out),
                     "--threshold", str(THRESHOLD)]) == 0
    command_figures = json.loads(out.read_text())

    print(f"\nNME inter-ocular: Evaluator {pipeline_figures['nme_inter_ocular']:.6f}%, "
          f"facealign evaluate {command_figures['nme_inter_ocular']:.6f}%")
    assert pipeline_figures["count"] == command_figures["count"] == len(records) == 60
    assert pipeline_figures["nme_inter_ocular"] == pytest.approx(
        command_figures["nme_inter_ocular"], abs=1e-3)
    for key, value in command_figures.items():
        assert pipeline_figures[key] == pytest.approx(value, abs=1e-3), key
    # The untrained DAN really moved the points away from S0 in the box.
    mean_shape_figures = expected_summary([(r, r.subset) for r in records],
                                          frame.mean_shape, (0, 0))
    assert abs(pipeline_figures["nme_inter_ocular"]
               - mean_shape_figures["nme_inter_ocular"]) > 1e-3
