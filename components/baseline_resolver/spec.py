"""The baseline resolver's channel keys and node id, defined once.

The resolver node is built in pipeline/pipeline.py with these input keys, the
strategy (strategy.py) reads and returns them, and the Evaluator takes its
`model` output as the baseline.
"""
from __future__ import annotations

MODEL_KEY = "model"                    # every Model in the pipeline -> the baseline model
MODEL_BLESSING_KEY = "model_blessing"  # every ModelBlessing -> the baseline's blessing
CANDIDATE_KEY = "candidate"            # the Trainer's model being evaluated, never its baseline
NODE_ID = "latest_blessed_model_resolver"
