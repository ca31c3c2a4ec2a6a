"""AtomicPusher's channel and parameter keys, defined once.

AtomicPusher is TFX's standard Pusher (its PusherSpec) with another executor,
so its keys are the standard ones; they are named here so that the component,
the executor and the pipeline refer to one place.
"""
from __future__ import annotations

from tfx.types import standard_component_specs

# Input channels.
MODEL_KEY = standard_component_specs.MODEL_KEY                    # "model"
MODEL_BLESSING_KEY = standard_component_specs.MODEL_BLESSING_KEY  # "model_blessing"
# Parameter: a PushDestination proto (JSON); only filesystem.base_directory is used.
PUSH_DESTINATION_KEY = standard_component_specs.PUSH_DESTINATION_KEY
# Output channel.
PUSHED_MODEL_KEY = standard_component_specs.PUSHED_MODEL_KEY      # "pushed_model"
