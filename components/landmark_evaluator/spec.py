"""LandmarkEvaluator's channel and parameter keys, output files and ComponentSpec, defined once.

component.py builds the component from these, executor.py reads its inputs,
outputs and exec properties by the same names (tfx-addons style), and the
Pusher finds the figures it copies into a pushed model by BLESSING_EVALUATION_FILE.
"""
from __future__ import annotations

from tfx import types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

# Parameters.
SPLIT_KEY = "split"                          # the held-out split scored: "eval" or "test"
MAX_NME_KEY = "max_nme"                      # percent; the blessing threshold
FAILURE_THRESHOLD_KEY = "failure_threshold"  # normalised error counted as a failure (AUC range)
TOLERANCE_ABSOLUTE_KEY = "tolerance_absolute"  # NME points a candidate may lose
TOLERANCE_RELATIVE_KEY = "tolerance_relative"  # ... or this fraction of the baseline's NME
# Input channels.
EXAMPLES_KEY = "examples"                    # LandmarkExampleGen's raw faces (of 1+ spans)
MODEL_KEY = "model"                          # the Trainer's model
BASELINE_MODEL_KEY = "baseline_model"        # the latest blessed model; optional
# Output channels.
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"

# Files in the output artifacts.
METRICS_FILE = "metrics.json"                # evaluation: the full report
CED_FILE = "ced.png"                         # evaluation: candidate (and baseline) CED curves
FACE_ERRORS_FILE = "face_errors.csv"         # evaluation: each face's error under both models
# Beside the blessing marker: the figures the Pusher writes into the pushed model's metadata.
BLESSING_EVALUATION_FILE = "evaluation.json"


class LandmarkEvaluatorSpec(types.ComponentSpec):
    PARAMETERS = {
        SPLIT_KEY: ExecutionParameter(type=str),
        MAX_NME_KEY: ExecutionParameter(type=float),
        FAILURE_THRESHOLD_KEY: ExecutionParameter(type=float),
        TOLERANCE_ABSOLUTE_KEY: ExecutionParameter(type=float),
        TOLERANCE_RELATIVE_KEY: ExecutionParameter(type=float),
    }
    INPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }
