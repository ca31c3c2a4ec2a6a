"""LandmarkExampleGen: a custom TFX ExampleGen for annotated face datasets."""
from __future__ import annotations

import json

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts

from components.landmark_example_gen import executor
from components.landmark_example_gen.driver import SpanDriver
from components.landmark_example_gen.spec import LandmarkExampleGenSpec


class LandmarkExampleGen(base_beam_component.BaseBeamComponent):
    """Raw annotated faces as tf.Examples, split train / eval / test.

    Parameters: `sources` (data.sources entries with absolute paths, see
    pipeline/; a root may hold {SPAN} and {VERSION}), `eval_count` or
    `eval_fraction` and `seed` (the validation hold-out), `train_fraction` (the
    share of the other training faces used; 1: all), `on_error`, and
    `requested_span` (data.range.span: -1 for the latest; an int or a
    RuntimeParameter). Output `examples`: gzipped raw-face tf.Examples per split
    (feature names in facealign/core/examples.py) and `ingest_report.json`,
    labelled with the span and version read.
    """

    SPEC_CLASS = LandmarkExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = SpanDriver

    def __init__(self, sources: list[dict], eval_count: int | None, seed: int = 0,
                 on_error: str = "skip", eval_fraction: float | None = None,
                 requested_span=-1, train_fraction: float = 1.0):
        super().__init__(spec=LandmarkExampleGenSpec(
            sources=json.dumps(sources, sort_keys=True),
            eval_count=int(eval_count or 0), eval_fraction=float(eval_fraction or 0.0),
            seed=int(seed), on_error=on_error, requested_span=requested_span,
            train_fraction=float(train_fraction),
            examples=types.Channel(type=standard_artifacts.Examples)))
