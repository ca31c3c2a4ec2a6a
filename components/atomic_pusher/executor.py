"""The standard Pusher, but a version folder appears all at once, with its evaluation.

TF Serving polls `<base>/<model>/` for numeric version folders. The stock
Pusher copies straight into `<base>/<version>/`, so a server can see a half
copied version. Here the model is copied into a hidden staging folder beside
it (a name TF Serving ignores) and then renamed, which is atomic on one
POSIX filesystem. Object stores have no atomic rename; there the copy falls
back to the stock behaviour (saved_model.pb written last).

The pushed copy's metadata record (facealign/core/model_format.py) also gets the
Evaluator's figures (from the blessing artifact), so a serving consumer can
read how good the version it calls is.

The pushed copy also gets its batching parameters file: TF Serving's
batching parameters (the text file its --batching_parameters_file flag takes),
measured on the pushed model's serving signature on this machine
(batch_timing.py says how and by which rules; a few seconds). TF Serving takes
that file as a server flag, not from the version folder: start it with
``--enable_batching --batching_parameters_file=<base>/<version>/assets.extra/<the
file>`` (or a copy); ``facealign serve`` takes the same flags.
A model whose signature cannot be timed (it does not load, or has no warmup
requests) is pushed without the file, with a warning.
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
from tfx.types import artifact_utils
from tfx.utils import io_utils, proto_utils

from components.atomic_pusher import batch_timing, spec
from components.landmark_evaluator.spec import BLESSING_EVALUATION_FILE
from facealign.core import model_format

STAGING_PREFIX = ".incoming-"


def add_evaluation(model_dir: str, evaluation: dict | None) -> bool:
    """Merges the evaluation into the model's metadata record; False when there is none."""
    if evaluation is None or not model_format.has_metadata(model_dir):
        return False
    metadata = model_format.ModelMetadata.read(model_dir)
    metadata.updated(evaluation=evaluation).write(model_dir)
    return True


def _blessing_evaluation(input_dict) -> dict | None:
    blessing = artifact_utils.get_single_instance(
        input_dict[spec.MODEL_BLESSING_KEY])
    path = os.path.join(blessing.uri, BLESSING_EVALUATION_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as handle:
        return json.load(handle)


def measured_batching_parameters(model_path: str) -> str | None:
    """The batching parameters file's text for the model, timed here (batch_timing.py), or
    None (with a warning) when its serving signature cannot be timed."""
    from trainer.precision import cpu_model

    try:
        timings = batch_timing.time_signature(model_path)
    except Exception as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        logging.warning("no %s: the model's serving signature could not be timed (%s: %s)",
                        model_format.BATCHING_FILE, type(exc).__name__, first_line)
        return None
    cpus = os.cpu_count() or 1
    parameters = batch_timing.choose(timings, cpus)
    logging.info("batching parameters from %s: %s", timings, parameters)
    return model_format.batching_parameters_text(
        parameters, batch_timing.describe(timings, cpu_model(), cpus))


def _is_local(path: str) -> bool:
    return "://" not in path


def publish_atomically(model_path: str, base_directory: str, version: str,
                       evaluation: dict | None = None, batching: str | None = None) -> str:
    """Copies a SavedModel (+ its evaluation and batching parameters file text) to
    base/version via a staging folder and a rename."""
    target = os.path.join(base_directory, version)
    if os.path.exists(target):
        raise FileExistsError(f"model version {target} already exists")
    os.makedirs(base_directory, exist_ok=True)
    staging = os.path.join(base_directory, f"{STAGING_PREFIX}{version}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(model_path, staging)
        add_evaluation(staging, evaluation)
        if batching is not None:
            model_format.write_batching_parameters(staging, batching)
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
        version = next_version(base)
        evaluation = _blessing_evaluation(input_dict)
        batching = measured_batching_parameters(model_path)
        if _is_local(base):
            serving_path = publish_atomically(model_path, base, version, evaluation, batching)
        else:
            serving_path = os.path.join(base, version)
            io_utils.copy_dir(model_path, serving_path, deny_regex_patterns=[r"saved_model\.pb"])
            add_evaluation(serving_path, evaluation)
            if batching is not None:
                model_format.write_batching_parameters(serving_path, batching)
            io_utils.copy_file(os.path.join(model_path, "saved_model.pb"),
                               os.path.join(serving_path, "saved_model.pb"))
        logging.info("Model version %s published at %s", version, serving_path)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
