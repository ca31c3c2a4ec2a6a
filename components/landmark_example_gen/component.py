"""LandmarkExampleGen: a custom TFX ExampleGen for annotated face datasets."""
from __future__ import annotations

import json

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts

from components.landmark_example_gen import executor
from components.landmark_example_gen.spec import LandmarkExampleGenSpec


class LandmarkExampleGen(base_beam_component.BaseBeamComponent):
    """Raw annotated faces as tf.Examples, split train / eval / test.

    Parameters: `sources` (data.sources entries with absolute paths, see
    pipeline/), `eval_count` and `seed` (the validation hold-out), `on_error`.
    Output `examples`: gzipped raw-face tf.Examples per split (feature names
    in facealign/core/examples.py) and `ingest_report.json`.
    """

    SPEC_CLASS = LandmarkExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, sources: list[dict], eval_count: int, seed: int = 0,
                 on_error: str = "skip"):
        super().__init__(spec=LandmarkExampleGenSpec(
            sources=json.dumps(sources, sort_keys=True), eval_count=int(eval_count),
            seed=int(seed), on_error=on_error,
            examples=types.Channel(type=standard_artifacts.Examples)))
