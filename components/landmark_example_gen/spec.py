"""LandmarkExampleGen's channel and parameter keys and its ComponentSpec, defined once.

component.py builds the component from these and executor.py reads its
inputs, outputs and exec properties by the same names (tfx-addons style).
"""
from __future__ import annotations

from tfx import types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

# Parameters.
SOURCES_KEY = "sources"          # JSON list of data.sources entries, paths absolute
EVAL_COUNT_KEY = "eval_count"    # train-source faces held out for validation
SEED_KEY = "seed"                # the hold-out draw
ON_ERROR_KEY = "on_error"        # "skip" or "fail"
# Output channel: raw faces, split train / eval / test.
EXAMPLES_KEY = "examples"
# The ingest report (accepted counts per split, every reject with its reason) in the output.
REPORT_FILE = "ingest_report.json"
# Custom properties of the output artifact.
ACCEPTED_FACES_PROPERTY = "accepted_faces"
REJECTED_INPUTS_PROPERTY = "rejected_inputs"


class LandmarkExampleGenSpec(types.ComponentSpec):
    PARAMETERS = {
        SOURCES_KEY: ExecutionParameter(type=str),
        EVAL_COUNT_KEY: ExecutionParameter(type=int),
        SEED_KEY: ExecutionParameter(type=int),
        ON_ERROR_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {}
    OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
