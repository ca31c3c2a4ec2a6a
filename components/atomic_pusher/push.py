"""Pushing a model version so that TF Serving never sees half of it: plain functions.

A version folder appears all at once: copied into a hidden staging folder
beside it (a name TF Serving ignores) and renamed, atomic on one POSIX
filesystem; on an object store, which has no rename, saved_model.pb is
copied last. The copy's metadata gets the Evaluator's figures and, beside it,
TF Serving's batching parameters timed on this machine (batch_timing.py).
The Pusher's executor and `facealign publish` call these.

A model is pushed once: a run killed after its version appeared but before MLMD recorded
the push runs the Pusher again, which finds the version holding the same files (the
push's own additions under assets.extra aside) and reports it instead of copying again.
"""
from __future__ import annotations

import os
import shutil
import time

from absl import logging
from tfx.dsl.io import fileio
from tfx.utils import io_utils

from components.atomic_pusher import batch_timing
from facealign.core import model_format

STAGING_PREFIX = ".incoming-"


def add_evaluation(model_dir: str, evaluation: dict | None) -> bool:
    """Merges the evaluation into the model's metadata record; False when there is none."""
    if evaluation is None or not model_format.has_metadata(model_dir):
        return False
    metadata = model_format.ModelMetadata.read(model_dir)
    metadata.updated(evaluation=evaluation).write(model_dir)
    return True


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


def _model_files(model_dir: str) -> list[str]:
    """The model's files, relative, variables first (where two models differ soonest);
    assets.extra is left out: the push adds the evaluation and batching parameters there."""
    files = []
    for folder, _, names in fileio.walk(model_dir):
        relative = os.path.relpath(folder, model_dir)
        for name in names:
            files.append(os.path.normpath(os.path.join(relative, name)))
    files = [f for f in files if f.split(os.sep)[0] != model_format.EXTRA_DIR]
    return sorted(files, key=lambda f: (not f.startswith("variables"), f))


def _same_bytes(first: str, second: str, chunk: int = 1 << 20) -> bool:
    with fileio.open(first, "rb") as a, fileio.open(second, "rb") as b:
        while True:
            block = a.read(chunk)
            if block != b.read(chunk):
                return False
            if not block:
                return True


def version_holding(model_path: str, base_directory: str) -> str | None:
    """The version under base_directory that holds this very model, or None. Compares the
    files themselves (two models differ within the first block of their variables), so
    it needs no record of its own and knows the versions pushed before it existed."""
    if not fileio.exists(base_directory):
        return None
    files = _model_files(model_path)
    names = [n.strip("/") for n in fileio.listdir(base_directory)]
    for version in sorted((n for n in names if n.isdigit()), key=int, reverse=True):
        folder = os.path.join(base_directory, version)
        if _model_files(folder) == files and all(
                _same_bytes(os.path.join(model_path, f), os.path.join(folder, f))
                for f in files):
            return version
    return None


def push_version(model_path: str, base_directory: str, evaluation: dict | None = None,
                 batching: str | None = None) -> tuple[str, str]:
    """(version, folder): the model pushed as the next version under base_directory, with
    its evaluation and batching parameters text; the version that already holds it when
    it was pushed before."""
    pushed = version_holding(model_path, base_directory)
    if pushed is not None:
        serving_path = os.path.join(base_directory, pushed)
        print(f"Pusher: {model_path} is already served as version {pushed} "
              f"({serving_path}); not pushed again", flush=True)
        return pushed, serving_path
    version = next_version(base_directory)
    if _is_local(base_directory):
        return version, publish_atomically(model_path, base_directory, version, evaluation,
                                           batching)
    serving_path = os.path.join(base_directory, version)
    io_utils.copy_dir(model_path, serving_path, deny_regex_patterns=[r"saved_model\.pb"])
    add_evaluation(serving_path, evaluation)
    if batching is not None:
        model_format.write_batching_parameters(serving_path, batching)
    io_utils.copy_file(os.path.join(model_path, "saved_model.pb"),
                       os.path.join(serving_path, "saved_model.pb"))
    return version, serving_path
