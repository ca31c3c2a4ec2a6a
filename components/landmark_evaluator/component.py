"""LandmarkEvaluator: a TFX component (spec, executor) in the tfx-addons style."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.landmark_evaluator import executor


class LandmarkEvaluatorSpec(types.ComponentSpec):
    PARAMETERS = {
        "split": ExecutionParameter(type=str),
        "max_nme": ExecutionParameter(type=float),
        "failure_threshold": ExecutionParameter(type=float),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class LandmarkEvaluator(base_component.BaseComponent):
    """Scores a landmark model per subset and writes a standard ModelBlessing."""

    SPEC_CLASS = LandmarkEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples, model, baseline_model=None, split: str = "eval",
                 max_nme: float = 10.0, failure_threshold: float = 0.08):
        super().__init__(spec=LandmarkEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, split=split,
            max_nme=float(max_nme), failure_threshold=float(failure_threshold),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing)))
