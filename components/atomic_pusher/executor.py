"""The standard Pusher, but a version folder appears all at once, with its evaluation.

TF Serving polls `<base>/<model>/` for numeric version folders; the stock
Pusher copies straight into `<base>/<version>/`, so a server can see a half
copied version. This executor only adapts TFX: it reads the blessing, the
model and the destination and calls push.py, which copies through a hidden
staging folder and a rename, and adds to the copy the Evaluator's figures (in
its metadata record, so a serving consumer can read how good the version it
calls is) and TF Serving's batching parameters file, measured on the pushed
model's serving signature on this machine (batch_timing.py). TF Serving takes
that file as a server flag, not from the version folder: start it with
``--enable_batching --batching_parameters_file=<base>/<version>/assets.extra/<the
file>`` (or a copy); ``facealign serve`` takes the same flags. A model whose
signature cannot be timed is pushed without the file, with a warning.
"""
from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.utils import io_utils, proto_utils

from components.atomic_pusher import push, spec
from components.landmark_evaluator.spec import BLESSING_EVALUATION_FILE
from facealign.core import faults


def _blessing_evaluation(input_dict) -> dict | None:
    blessing = artifact_utils.get_single_instance(
        input_dict[spec.MODEL_BLESSING_KEY])
    path = os.path.join(blessing.uri, BLESSING_EVALUATION_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as handle:
        return json.load(handle)


class Executor(pusher_executor.Executor):
    """Pushes a blessed model to `<base_directory>/<version>` atomically."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[spec.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[spec.PUSH_DESTINATION_KEY], destination)
        base = destination.filesystem.base_directory
        if not base:
            raise ValueError("Pusher needs push_destination.filesystem.base_directory")
        version, serving_path = push.push_version(model_path, base,
                                                  _blessing_evaluation(input_dict),
                                                  push.measured_batching_parameters(model_path))
        logging.info("Model version %s published at %s", version, serving_path)
        faults.reached(self._context, "after_version")  # served, yet not in MLMD
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
