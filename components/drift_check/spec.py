"""DriftCheck's channel and parameter keys, report file and ComponentSpec, defined once."""
from __future__ import annotations

from tfx import types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

# Parameters.
THRESHOLDS_KEY = "thresholds"      # JSON {raw feature: largest divergence} (validation.drift)
ACCEPT_DRIFT_KEY = "accept_drift"  # 1: report the drift and go on (validation.accept_drift)
# Input channels.
STATISTICS_KEY = "statistics"                  # StatisticsGen's, of this run's span
EARLIER_STATISTICS_KEY = "earlier_statistics"  # every StatisticsGen output so far (a resolver)
# Output channel: TFDV's anomalies (drift only) and the report.
DRIFT_KEY = "drift"
REPORT_FILE = "drift_report.json"
ANOMALIES_FILE = "SchemaDiff.pb"   # where TFX's ExampleValidator writes its anomalies
SPLIT = "train"                    # the split compared
# Custom property of the output: 1 when a threshold was crossed.
DRIFTED_PROPERTY = "drifted"


class DriftCheckSpec(types.ComponentSpec):
    PARAMETERS = {
        THRESHOLDS_KEY: ExecutionParameter(type=str),
        ACCEPT_DRIFT_KEY: ExecutionParameter(type=int),
    }
    INPUTS = {
        STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        EARLIER_STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics,
                                                 optional=True),
    }
    OUTPUTS = {DRIFT_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies)}
