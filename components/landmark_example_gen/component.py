"""LandmarkExampleGen: a custom TFX ExampleGen for annotated face datasets."""
from __future__ import annotations

import json

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.landmark_example_gen import executor


class LandmarkExampleGenSpec(types.ComponentSpec):
    PARAMETERS = {
        "sources": ExecutionParameter(type=str),   # JSON list of data.sources entries
        "eval_count": ExecutionParameter(type=int),
        "seed": ExecutionParameter(type=int),
        "on_error": ExecutionParameter(type=str),
    }
    INPUTS = {}
    OUTPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}


class LandmarkExampleGen(base_beam_component.BaseBeamComponent):
    """Raw annotated faces as tf.Examples, split train / eval / test."""

    SPEC_CLASS = LandmarkExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, sources: list[dict], eval_count: int, seed: int = 0,
                 on_error: str = "skip"):
        """`sources`: data.sources entries with absolute paths (see pipeline/)."""
        super().__init__(spec=LandmarkExampleGenSpec(
            sources=json.dumps(sources, sort_keys=True), eval_count=int(eval_count),
            seed=int(seed), on_error=on_error,
            examples=types.Channel(type=standard_artifacts.Examples)))
