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


# --- a single-file export (.tflite, .onnx) and the JSON sidecar beside it -----------------------

MODEL_FILE_SUFFIXES = (".tflite", ".onnx")   # `facealign export --format tflite | onnx`
SIDECAR_SUFFIX = ".json"                     # model.tflite -> model.tflite.json


def is_model_file(path) -> bool:
    """Whether `path` names a LiteRT or ONNX export (by its suffix; it may not exist)."""
    return pathlib.Path(path).suffix.lower() in MODEL_FILE_SUFFIXES


def read_sidecar(path) -> dict:
    """The sidecar of the export `path` (trainer/litert_export.sidecar writes it), checked.

    An export holds only the network on canonical crops; the sidecar holds
    what turns it into a face aligner: the canonical S0 the crop fits to a
    box and the crop size. FileNotFoundError or ValueError name the file and
    the field.
    """
    import json

    import numpy as np

    sidecar = pathlib.Path(os.fspath(path) + SIDECAR_SUFFIX)
    try:
        info = json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: its sidecar {sidecar.name} is missing (written beside "
                                "the model by `facealign export`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{sidecar}: not a readable JSON file ({exc})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{sidecar}: expected a JSON object")
    size = info.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise ValueError(f"{sidecar}: field image_size: expected an integer >= 8, got {size!r}")
    try:
        shape = np.asarray(info.get("mean_shape"), np.float64)
    except (TypeError, ValueError):
        shape = np.zeros(0)
    if shape.ndim != 2 or shape.shape[1] != 2 or len(shape) < 3 or not np.isfinite(shape).all():
        raise ValueError(f"{sidecar}: field mean_shape: expected [N, 2] finite canonical "
                         "points (N >= 3)")
    if np.ptp(shape, axis=0).min() <= 0:
        raise ValueError(f"{sidecar}: field mean_shape: the points have no extent")
    count = info.get("num_landmarks", len(shape))
    if count != len(shape):
        raise ValueError(f"{sidecar}: field num_landmarks: {count!r}, but mean_shape has "
                         f"{len(shape)} points")
    return info
