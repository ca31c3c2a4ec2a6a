"""Warm start: a new training continues from the weights of an exported model.

Real 300-W training takes many hours and a working session a few, so every
run continues from the last blessed model instead of from random weights
(`trainer.warm_start`). The exported SavedModel holds only tf.Variables, not
Keras' layer paths, so weights are matched by the order in which the
`predict_canonical` graph reads them: the parent's saved signature and the
same signature traced on the new model read an identical architecture's
variables in the same order. Names and shapes are checked pairwise, and the
architecture recorded in the parent's metadata first, so a mismatch is an
error naming the difference instead of a silently scrambled model.

A DAN parent with fewer stages grows the cascade, as the paper trains it:
its stages are loaded and kept, and only the new stages train. The other way,
`rebuild(..., stages=K)` cuts an exported DAN short to its first K stages (to
serve or time stage 1 alone; never to train): the same weights, read first in
the same order, the later stages left out.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from facealign.core import model_format, model_paths
from trainer import export, flip_average

# The settings that decide the shapes of the weights, per model kind.
ARCHITECTURE_KEYS = {"dan": ("stages", "fc_units", "base_filters", "input_batchnorm"),
                     "aan": ("base_filters", "units_per_block", "embedding_dim", "embedding",
                             "attention")}
# What a parent exported before a setting existed was built as.
LEGACY_DEFAULTS = {"input_batchnorm": False}


class WarmStartError(ValueError):
    """The model to start from cannot give its weights to this one; the message says why."""


def _metadata(folder: str) -> dict:
    """An exported model's metadata record as the dict the checks here read; a malformed one
    is a WarmStartError naming the file and the field."""
    try:
        return model_format.ModelMetadata.read(folder).to_dict()
    except model_format.ModelFormatError as exc:
        raise WarmStartError(str(exc)) from None


def architecture_differences(parent: dict, model_cfg: dict, num_landmarks: int,
                             image_size: int, first_stages: bool = False) -> list[str]:
    """What differs between a parent's metadata and the model about to be trained.

    first_stages: the model is a DAN of the parent's first stages only (fewer stages are
    no difference then).
    """
    theirs = (parent.get("config") or {}).get("model") or {}
    kind = model_cfg["name"]
    found = []
    if theirs.get("name", parent.get("model")) != kind:
        found.append(f"model.name is {theirs.get('name', parent.get('model'))!r} there, "
                     f"{kind!r} here")
        return found
    if parent.get("num_landmarks") != num_landmarks:
        found.append(f"{parent.get('num_landmarks')} landmarks there, {num_landmarks} here")
    if parent.get("image_size") != image_size:
        found.append(f"image size {parent.get('image_size')} there, {image_size} here")
    for key in ARCHITECTURE_KEYS[kind]:
        there = (theirs.get(kind) or {}).get(key, LEGACY_DEFAULTS.get(key))
        here = model_cfg[kind].get(key, LEGACY_DEFAULTS.get(key))
        if kind == "dan" and key == "stages" and there is not None and there < here:
            continue                            # growing the cascade
        if kind == "dan" and key == "stages" and first_stages and there is not None \
                and there > here:
            continue                            # the parent cut short
        if kind == "dan" and key == "input_batchnorm" and grown_stages(parent, model_cfg) == 1:
            continue                            # stage 1 has no input BatchNorm
        if there != here:
            found.append(f"model.{kind}.{key} is {there!r} there, {here!r} here")
    return found


def grown_stages(parent: dict, model_cfg: dict) -> int:
    """The stages a DAN parent with fewer stages gives (kept as they are); 0 when none."""
    if model_cfg["name"] != "dan":
        return 0
    there = (((parent.get("config") or {}).get("model") or {}).get("dan") or {}).get("stages")
    return int(there) if there is not None and there < model_cfg["dan"]["stages"] else 0


def _read_order(model: keras.Model, mean_shape, image_size: int) -> list:
    """The model's variables in the order its predict_canonical graph reads them."""
    graph = export.serving_graph(model, mean_shape, image_size)
    traced = tf.function(graph.canonical).get_concrete_function(
        tf.TensorSpec([None, image_size, image_size, 1], tf.uint8))
    # captured_inputs keep the graph's capture order (`variables` does not); the loaded
    # signature's `variables` follow its saved capture order.
    by_handle = {id(variable.value.handle): variable for variable in model.variables}
    return [by_handle[id(handle)] for handle in traced.captured_inputs]


def load_weights(model: keras.Model, inference: keras.Model, path: str, model_cfg: dict,
                 mean_shape, first_stages: bool = False) -> dict:
    """Copies the weights of the SavedModel at `path` (a version or a base folder) into `model`.

    inference: the exported view of `model` (the same model for a DAN; the
    AAN without its intermediate heads, which keep their fresh weights).
    Returns the parent's lineage entry for the new model's metadata; its
    "kept_stages" says how many leading DAN stages came from a parent with
    fewer stages (they are not trained again), else 0.
    first_stages: `model` may be a DAN with fewer stages than the parent: it gets the
    parent's first stages (rebuild's `stages`), the later ones are left out.
    """
    folder = model_paths.resolve_model_dir(path)
    metadata = _metadata(folder)
    mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)
    image_size = int(inference.inputs[0].shape[1])
    differences = architecture_differences(metadata, model_cfg, len(mean_shape), image_size,
                                           first_stages)
    if differences:
        raise WarmStartError(f"cannot warm-start from {folder}: " + "; ".join(differences))
    loaded = tf.saved_model.load(folder)   # kept referenced: its variables die with it
    theirs = loaded.signatures[model_format.PREDICT_CANONICAL].variables
    ours = _read_order(inference, mean_shape, image_size)
    kept = grown_stages(metadata, model_cfg)
    if kept:   # the parent's stages are read first, in the same order
        ours = ours[:len(theirs)]
    elif first_stages:   # ours are the parent's first stages, read first
        theirs = theirs[:len(ours)]
    if len(theirs) != len(ours):
        raise WarmStartError(f"cannot warm-start from {folder}: it has {len(theirs)} weights, "
                             f"this model {len(ours)}")
    for index, (source, target) in enumerate(zip(theirs, ours)):
        name = source.name.split(":")[0]
        if tuple(source.shape) != tuple(target.shape) or not name.endswith(target.name):
            raise WarmStartError(
                f"cannot warm-start from {folder}: weight {index} is {name} "
                f"{tuple(source.shape)} there, {target.path} {tuple(target.shape)} here")
    for source, target in zip(theirs, ours):
        target.assign(source.numpy())
    grown = f" (its {kept} stage(s) kept; the new ones train)" if kept else ""
    print(f"warm start: {len(ours)} weights from {folder}{grown}", flush=True)
    return {**lineage_of(folder, metadata), "kept_stages": kept}


def lineage_of(folder: str, metadata: dict) -> dict:
    """The parent's identity and cumulative training (its own and its ancestors').

    Models exported before lineage was recorded count their own training from
    their epochs (at most max_epochs_per_stage per stage where even those were
    not recorded), steps per epoch, batch size and training seconds.
    """
    lineage = metadata.get("lineage")
    if lineage is None:
        trainer_cfg = (metadata.get("config") or {}).get("trainer") or {}
        epochs = metadata.get("epochs_per_stage") or [
            int(trainer_cfg.get("max_epochs_per_stage") or 0)] * int(metadata.get("stages") or 1)
        steps = sum(epochs) * int(trainer_cfg.get("steps_per_epoch") or 0)
        lineage = {"cumulative_steps": steps,
                   "cumulative_samples": steps * int(trainer_cfg.get("batch_size") or 0),
                   "cumulative_seconds": float(metadata.get("training_seconds") or 0.0),
                   "generation": 1}
    curve = metadata.get("validation_curve")
    if curve is None:   # one point per stage: where the parent ended
        curve = [{"stage": stage, "samples": lineage["cumulative_samples"],
                  "nme_inter_pupil": nme,
                  "nme_inter_ocular": (metadata.get("validation_nme_inter_ocular_per_stage")
                                       or [None] * (stage))[stage - 1]}
                 for stage, nme in enumerate(
                     metadata.get("validation_nme_inter_pupil_per_stage") or [], start=1)]
    return {"parent": folder, "parent_exported_at": metadata.get("exported_at"),
            "validation_curve": curve,
            "spans_per_generation": lineage.get("spans_per_generation")
            or [[] for _ in range(int(lineage["generation"]))],
            **{key: lineage[key] for key in ("cumulative_steps", "cumulative_samples",
                                             "cumulative_seconds", "generation")}}


def rebuild(path, precision: str | None = "float32", flip_average: bool | None = None,
            stages: int | None = None):
    """(Keras model, its exported view, SavedModel folder, metadata) of an exported model.

    The architecture comes from the metadata's configuration, the weights from
    the SavedModel (load_weights checks them): a SavedModel back as Keras, for
    exporting it again (other formats, a newer exporter). For an AAN the model
    is the training model with fresh intermediate heads; the view is the exported one
    (flip-averaged when its configuration says so).
    precision None: the one the model was trained in (as recorded; `auto` resolved here).
    flip_average: the view with / without test-time flip averaging; None: as recorded.
    stages: a DAN's first `stages` stages only (1: stage 1 alone); None: all of them.
    """
    from facealign.core.config import ModelSection
    from trainer.aan_model import build_aan_model, inference_model
    from trainer.dan_model import build_dan_model

    folder = model_paths.resolve_model_dir(path)
    metadata = _metadata(folder)
    try:
        model_cfg = ModelSection(**metadata["config"]["model"])
        mean_shape = np.asarray(metadata["mean_shape"], np.float32).reshape(-1, 2)
        size = int(metadata["image_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WarmStartError(f"{folder}: no usable model configuration in its metadata "
                             f"({exc})") from None
    if stages is not None:
        if model_cfg.name != "dan" or not 1 <= stages <= model_cfg.dan.stages:
            what = (f"a {model_cfg.dan.stages}-stage DAN" if model_cfg.name == "dan"
                    else f"model {model_cfg.name!r}, not a DAN")
            raise WarmStartError(f"{folder}: cannot keep the first {stages} stage(s): it is "
                                 f"{what}")
        model_cfg = model_cfg.model_copy(
            update={"dan": model_cfg.dan.model_copy(update={"stages": stages})})
    if precision is None:
        from trainer import precision as precisions

        recorded = metadata.get("precision") or metadata["config"]["trainer"]["precision"]
        precision = precisions.choose(recorded)[0]
    zeros = np.zeros((size, size), np.float32)   # the pixel statistics are weights: loaded
    if model_cfg.name == "aan":
        model = build_aan_model(mean_shape, zeros, zeros + 1, model_cfg.aan, precision=precision)
        view = inference_model(model)
    else:
        model = view = build_dan_model(mean_shape, zeros, zeros + 1, model_cfg.dan,
                                       precision=precision)
    load_weights(model, view, folder, model_cfg.model_dump(mode="json"), mean_shape,
                 first_stages=stages is not None)
    if flip_average is not None:
        model_cfg = model_cfg.model_copy(update={"flip_average": flip_average})
    return model, exported_view(view, model_cfg), folder, metadata


def exported_view(view: keras.Model, model_cfg) -> keras.Model:
    """The model as served: `view` flip-averaged when model_cfg.flip_average says so (it reads
    the same weights in the same order, so loading into `view` loads it)."""
    return flip_average.flip_averaged(view) if model_cfg.flip_average else view


def export_again(path, out: str, warmup_faces=None, flip_average: bool | None = None,
                 stages: int | None = None) -> str:
    """Exports an exported model again with this checkout's exporter (its current serving graph),
    weights, precision and metadata unchanged; returns `out`. flip_average True / False
    serves it with / without test-time flip averaging (recorded as model.flip_average in
    its metadata's configuration); None keeps its setting. stages: a DAN's first `stages`
    stages only (recorded as model.dan.stages); None keeps them all."""
    _, view, _, metadata = rebuild(path, precision=None, flip_average=flip_average,
                                   stages=stages)
    kept = {k: v for k, v in metadata.items() if k not in model_format.REWRITTEN_BY_EXPORT}
    model = dict(metadata["config"]["model"])
    if flip_average is not None:
        model["flip_average"] = flip_average
    if stages is not None:
        model["dan"] = {**model["dan"], "stages": stages}
    kept["config"] = {**metadata["config"], "model": model}
    export.export_saved_model(view, metadata["mean_shape"], str(out), metadata=kept,
                              image_size=metadata["image_size"], warmup_faces=warmup_faces)
    return str(out)
