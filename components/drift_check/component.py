"""DriftCheck: a custom TFX component (spec, executor) in the tfx-addons style."""
from __future__ import annotations

import json

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts

from components.drift_check import executor
from components.drift_check.spec import DriftCheckSpec


class DriftCheck(base_component.BaseComponent):
    """Stops a run whose span drifted from the previous span beyond validation.drift.

    TFX 1.21's ExampleValidator takes no baseline statistics, so this compares
    them with TFDV itself. Inputs: `statistics` (this span's) and
    `earlier_statistics` (every StatisticsGen output so far; the previous span's
    is chosen by its span number). Output `drift`: TFDV's drift anomalies and
    `drift_report.json` (feature, divergence, threshold, both spans' values).
    """

    SPEC_CLASS = DriftCheckSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, statistics, thresholds: dict[str, float], accept_drift: bool = False,
                 earlier_statistics=None):
        super().__init__(spec=DriftCheckSpec(
            statistics=statistics, earlier_statistics=earlier_statistics,
            thresholds=json.dumps(thresholds, sort_keys=True), accept_drift=int(accept_drift),
            drift=types.Channel(type=standard_artifacts.ExampleAnomalies)))
