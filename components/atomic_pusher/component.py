"""`AtomicPusher(...)`: the standard TFX Pusher with the atomic executor.

Inputs: `model` and `model_blessing` (the Evaluator's); parameter: the
filesystem push destination `base_directory`; output: `pushed_model`. The keys
are the standard Pusher's (spec.py). The pushed version also gets the Evaluator's
figures and TF Serving batching parameters measured on it (executor.py).
"""
from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components.atomic_pusher import executor


def AtomicPusher(model, model_blessing, base_directory: str):
    return tfx.components.Pusher(
        model=model,
        model_blessing=model_blessing,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=base_directory)),
        custom_executor_spec=executor_spec.ExecutorClassSpec(executor.Executor),
    )
