"""LandmarkExampleGen's channel and parameter keys and its ComponentSpec, defined once.

component.py builds the component from these, driver.py resolves the span, and
executor.py reads its inputs, outputs and exec properties by the same names
(tfx-addons style).
"""
from __future__ import annotations

from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

# Parameters.
SOURCES_KEY = "sources"          # JSON list of data.sources entries, paths absolute
EVAL_COUNT_KEY = "eval_count"    # train-source faces held out for validation (or 0)...
EVAL_FRACTION_KEY = "eval_fraction"  # ... or this fraction of them, by a stable hash (or 0)
TRAIN_FRACTION_KEY = "train_fraction"  # data.train_fraction: the training faces used (1: all)
SEED_KEY = "seed"                # the hold-out draw
ON_ERROR_KEY = "on_error"        # "skip" or "fail"
REQUESTED_SPAN_KEY = "requested_span"  # data.range.span: a span number, or -1 for the latest
# What the driver resolves before the cache is looked up (TFX's names, as its ExampleGen):
# a changed span, version or fingerprint is a new execution.
SPAN_KEY = example_gen_utils.SPAN_PROPERTY_NAME
VERSION_KEY = example_gen_utils.VERSION_PROPERTY_NAME
FINGERPRINT_KEY = example_gen_utils.FINGERPRINT_PROPERTY_NAME
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
        EVAL_FRACTION_KEY: ExecutionParameter(type=float),
        TRAIN_FRACTION_KEY: ExecutionParameter(type=float, optional=True),
        SEED_KEY: ExecutionParameter(type=int),
        ON_ERROR_KEY: ExecutionParameter(type=str),
        REQUESTED_SPAN_KEY: ExecutionParameter(type=int),
    }
    INPUTS = {}
    OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
