"""LandmarkEvaluator: a TFX component (spec, executor) in the tfx-addons style."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts

from components.landmark_evaluator import executor
from components.landmark_evaluator.spec import LandmarkEvaluatorSpec


class LandmarkEvaluator(base_component.BaseComponent):
    """Scores a landmark model through its serving signature and writes a standard ModelBlessing.

    Inputs: `examples` (LandmarkExampleGen's raw faces: photo bytes, detector
    box, landmarks), `model` (the candidate) and optionally `baseline_model`
    (the latest blessed one). Parameters: `split` (the held-out split scored),
    `max_nme` (percent), `failure_threshold` and the tolerance of the paired
    comparison (`tolerance_absolute` NME points, `tolerance_relative` of the
    baseline's NME). Outputs: `evaluation` (metrics.json, face_errors.csv, ced.png)
    and `blessing` (BLESSED / NOT_BLESSED, evaluation.json).
    """

    SPEC_CLASS = LandmarkEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples, model, baseline_model=None, split: str = "eval",
                 max_nme: float = 10.0, failure_threshold: float = 0.08,
                 tolerance_absolute: float = 0.05, tolerance_relative: float = 0.01):
        super().__init__(spec=LandmarkEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, split=split,
            max_nme=float(max_nme), failure_threshold=float(failure_threshold),
            tolerance_absolute=float(tolerance_absolute),
            tolerance_relative=float(tolerance_relative),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing)))
