"""The standard Pusher, but a version folder appears all at once, with its evaluation.

TF Serving polls `<base>/<model>/` for numeric version folders. The stock
Pusher copies straight into `<base>/<version>/`, so a server can see a half
copied version. Here the model is copied into a hidden staging folder beside
it (a name TF Serving ignores) and then renamed, which is atomic on one
POSIX filesystem. Object stores have no atomic rename; there the copy falls
back to the stock behaviour (saved_model.pb written last).

The pushed copy's assets.extra/facealign_metadata.json also gets the
Evaluator's figures (from the blessing artifact), so a serving consumer can
read how good the version it calls is.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components.landmark_evaluator.executor import BLESSING_EVALUATION_FILE

STAGING_PREFIX = ".incoming-"
METADATA = os.path.join("assets.extra", "facealign_metadata.json")  # trainer/export.py writes it


def add_evaluation(model_dir: str, evaluation: dict | None) -> bool:
    """Merges the evaluation into the model's metadata file; False when there is none."""
    path = os.path.join(model_dir, METADATA)
    if evaluation is None or not fileio.exists(path):
        return False
    with fileio.open(path, "r") as handle:
        metadata = json.load(handle)
    metadata["evaluation"] = evaluation
    with fileio.open(path, "w") as handle:
        handle.write(json.dumps(metadata, indent=1))
    return True


def _blessing_evaluation(input_dict) -> dict | None:
    blessing = artifact_utils.get_single_instance(
        input_dict[standard_component_specs.MODEL_BLESSING_KEY])
    path = os.path.join(blessing.uri, BLESSING_EVALUATION_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as handle:
        return json.load(handle)


def _is_local(path: str) -> bool:
    return "://" not in path


def publish_atomically(model_path: str, base_directory: str, version: str,
                       evaluation: dict | None = None) -> str:
    """Copies a SavedModel (+ its evaluation) to base/version via a staging folder and a rename."""
    target = os.path.join(base_directory, version)
    if os.path.exists(target):
        raise FileExistsError(f"model version {target} already exists")
    os.makedirs(base_directory, exist_ok=True)
    staging = os.path.join(base_directory, f"{STAGING_PREFIX}{version}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(model_path, staging)
        add_evaluation(staging, evaluation)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def next_version(base_directory: str) -> str:
    """A Unix-time version, bumped past any version already there."""
    version = int(time.time())
    if fileio.exists(base_directory):
        names = [n.strip("/") for n in fileio.listdir(base_directory)]  # "123/" on GCS/S3
        existing = [int(n) for n in names if n.isdigit()]
        version = max([version, *(v + 1 for v in existing)])
    return str(version)


class Executor(pusher_executor.Executor):
    """Pushes a blessed model to `<base_directory>/<version>` atomically."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base = destination.filesystem.base_directory
        if not base:
            raise ValueError("Pusher needs push_destination.filesystem.base_directory")
        version = next_version(base)
        evaluation = _blessing_evaluation(input_dict)
        if _is_local(base):
            serving_path = publish_atomically(model_path, base, version, evaluation)
        else:
            serving_path = os.path.join(base, version)
            io_utils.copy_dir(model_path, serving_path, deny_regex_patterns=[r"saved_model\.pb"])
            add_evaluation(serving_path, evaluation)
            io_utils.copy_file(os.path.join(model_path, "saved_model.pb"),
                               os.path.join(serving_path, "saved_model.pb"))
        logging.info("Model version %s published at %s", version, serving_path)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
