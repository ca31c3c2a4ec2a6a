"""Where a model is: a SavedModel folder, or a TF Serving base path of numbered versions.

TF Serving users think in base paths, so every place that takes a model
(`--model`, warm start, the Python API, the local server) accepts both and
follows TF Serving's default "latest" policy. Plain file-system logic, no
TensorFlow, so a bad path is reported before anything heavy is imported.
"""
from __future__ import annotations

import os
import pathlib


def is_saved_model(folder) -> bool:
    folder = pathlib.Path(folder)
    return (folder / "saved_model.pb").is_file() or (folder / "saved_model.pbtxt").is_file()


def numeric_versions(base_path) -> dict[int, pathlib.Path]:
    """{version: folder} of a TF Serving base path's numbered folders holding a SavedModel.

    Other folders (the Pusher's hidden staging folders, tmp...) are not versions.
    """
    found = {}
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return found
    for entry in entries:
        if entry.name.isdigit() and entry.is_dir() and is_saved_model(entry.path):
            found[int(entry.name)] = pathlib.Path(entry.path)
    return found


def resolve_model_dir(path) -> str:
    """A SavedModel folder: `path` itself, or its newest version (TF Serving's "latest" policy)."""
    folder = pathlib.Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: no such model folder")
    if is_saved_model(folder):
        return os.fspath(path)
    versions = numeric_versions(folder)
    if not versions:
        raise FileNotFoundError(f"{path}: not a SavedModel folder (no saved_model.pb) nor a "
                                f"base folder of numbered SavedModel versions")
    return os.fspath(versions[max(versions)])
