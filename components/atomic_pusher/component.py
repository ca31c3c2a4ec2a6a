"""`AtomicPusher(...)`: the standard TFX Pusher with the atomic executor."""
from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components.atomic_pusher import executor


def AtomicPusher(model, model_blessing, base_directory: str):  # noqa: N802 (a component)
    return tfx.components.Pusher(
        model=model,
        model_blessing=model_blessing,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=base_directory)),
        custom_executor_spec=executor_spec.ExecutorClassSpec(executor.Executor),
    )
