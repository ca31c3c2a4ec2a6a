"""Scores an exported model the way a TF Serving client calls it.

Raw faces, as LandmarkExampleGen writes them (the photo's encoded bytes and
the detector box; feature names in facealign/core/examples.py), go through the
SavedModel's `serving_tf_example` signature, which crops, normalises,
predicts and maps back to the photo inside the graph. The predictions are
compared with the examples' own annotated landmarks, in the photo's pixels.

The Evaluator (on the pipeline's held-out split) and `facealign evaluate` (on
any annotated folder) both score through `predict` and `score` here, so the
figures that bless a model are the ones its clients get.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import tensorflow as tf

from facealign.core import metrics
from facealign.core.examples import RAW_FACE_ID
from facealign.core.model_format import TF_EXAMPLE  # raw tf.Examples in, as served
from facealign.core.raw_example import parse_example

SERVING_INPUT = "examples"
BATCH_SIZE = 32


class EvaluationError(ValueError):
    """The model or the faces cannot be scored (not a facealign SavedModel, landmark counts)."""


@dataclasses.dataclass
class Predictions:
    predicted: np.ndarray      # [B, N, 2] original image pixels
    ground_truth: np.ndarray   # [B, N, 2] the annotation, original image pixels
    subsets: list[str]
    face_ids: list[str]


def read_examples(files: list[str]) -> Iterator[bytes]:
    """The serialized tf.Examples of gzipped TFRecord files, in file order."""
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        yield record.numpy()


def _batches(items: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def serving_landmarks(saved_model_dir: str) -> Callable[[list[bytes]], np.ndarray]:
    """A function: serialized raw tf.Examples -> landmarks [B, N, 2] from the serving signature."""
    try:
        model = tf.saved_model.load(saved_model_dir)
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"{saved_model_dir}: not a SavedModel ({exc})") from None
    if TF_EXAMPLE not in model.signatures:
        raise EvaluationError(f"{saved_model_dir}: not a facealign SavedModel (no "
                              f"{TF_EXAMPLE!r} signature; it has "
                              f"{sorted(model.signatures)})")

    def landmarks(batch: list[bytes]) -> np.ndarray:
        # Through `model` on every call: the loaded object owns the variables.
        outputs = model.signatures[TF_EXAMPLE](**{SERVING_INPUT: tf.constant(batch)})
        return outputs["landmarks"].numpy()

    return landmarks


def predict(model: str | Callable[[list[bytes]], np.ndarray],
            serialized_examples: Iterable[bytes], batch_size: int = BATCH_SIZE,
            progress: Callable[[Iterable], Iterable] | None = None) -> Predictions:
    """Landmarks for raw tf.Examples through the serving signature, with their annotations.

    model: a SavedModel folder (its serving_tf_example signature), or a function
    of the same contract as serving_landmarks' (serialized raw tf.Examples ->
    landmarks [B, N, 2] in the photos' pixels), e.g. for a .tflite or .onnx
    export (serving.canonical_model.example_landmarks).
    progress: optional wrapper of the batch iterator (e.g. tqdm) for a command line.
    """
    landmarks_of = model if callable(model) else serving_landmarks(model)
    predicted, truth, subsets, face_ids = [], [], [], []
    batches = _batches(serialized_examples, batch_size)
    for batch in (progress(batches) if progress else batches):
        points = landmarks_of(batch)
        for serialized in batch:
            face = parse_example(serialized)
            if face["landmarks"].shape != points.shape[1:]:
                raise EvaluationError(f"face {face['face_id']}: the model predicts "
                                      f"{points.shape[1]} landmarks, the data has "
                                      f"{len(face['landmarks'])}")
            truth.append(face["landmarks"])
            subsets.append(face["subset"])
            face_ids.append(face["face_id"])
        predicted.append(points)
    if not predicted:
        raise EvaluationError("no faces to evaluate")
    return Predictions(np.concatenate(predicted), np.stack(truth), subsets, face_ids)


def score(predictions: Predictions, threshold: float) -> dict:
    """{"all": summary, "<subset>": summary, ...} (metrics.summary: NME %, AUC, failure %)."""
    by_subset = collections.defaultdict(list)
    for i, subset in enumerate(predictions.subsets):
        by_subset[subset].append(i)
    result = {"all": metrics.summary(predictions.predicted, predictions.ground_truth, threshold)}
    for subset, index in sorted(by_subset.items()):
        result[subset] = metrics.summary(predictions.predicted[index],
                                         predictions.ground_truth[index], threshold)
    return result


def headline_errors(predictions: Predictions) -> np.ndarray:
    """Per-face errors for CED plots: inter-ocular for 68 points, else box diagonal."""
    normalization = metrics.default_normalization(predictions.ground_truth.shape[1])
    return metrics.face_errors(predictions.predicted, predictions.ground_truth, normalization)


def compare(candidate_errors: np.ndarray, baseline_errors: np.ndarray,
            absolute: float, relative: float) -> dict:
    """The paired comparison a blessing rests on (per-face errors in percent): the mean
    difference with its bootstrap interval, the tolerance (the larger of `absolute` points
    and `relative` of the baseline's NME) and whether the difference is within it."""
    paired = metrics.paired_difference(candidate_errors, baseline_errors)
    baseline_nme = float(np.mean(baseline_errors))
    tolerance = max(absolute, relative * baseline_nme)
    return {**paired, "baseline_nme": baseline_nme, "tolerance": tolerance,
            "tolerance_absolute": absolute, "tolerance_relative": relative,
            "within_tolerance": paired["mean"] <= tolerance}


def decide(current: float, max_nme: float, paired: dict | None = None) -> tuple[bool, str]:
    """(blessed, reason): the headline NME at most max_nme and, against a baseline, the mean
    paired difference on the same faces within the tolerance (compare): an equal model is
    not refused for noise, a worse one is."""
    if not current <= max_nme:  # also refuses NaN
        return False, f"NME {current:.3f}% is above the threshold {max_nme:.3f}%"
    if paired is None:
        return True, f"NME {current:.3f}% <= {max_nme:.3f}%"
    against = (f"baseline {paired['baseline_nme']:.3f}%; paired difference "
               f"{paired['mean']:+.3f} points ({100 * paired['confidence']:.0f}% CI "
               f"{paired['low']:+.3f}..{paired['high']:+.3f}, {paired['faces']} faces), "
               f"tolerance {paired['tolerance']:.3f}")
    if not paired["within_tolerance"]:
        return False, f"NME {current:.3f}% is worse than the blessed baseline's: {against}"
    return True, f"NME {current:.3f}% <= {max_nme:.3f}%, {against}"


FACE_ERRORS_COLUMNS = ("face_id", "subset", "candidate", "baseline")


def write_face_errors(path: str, predictions: Predictions, candidate: np.ndarray,
                      baseline: np.ndarray | None) -> None:
    """One row a face: its id, subset and headline error (percent) under both models."""
    with tf.io.gfile.GFile(path, "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(FACE_ERRORS_COLUMNS)
        for i, face_id in enumerate(predictions.face_ids):
            writer.writerow([face_id, predictions.subsets[i], f"{candidate[i]:.6f}",
                             "" if baseline is None else f"{baseline[i]:.6f}"])


def read_face_errors(path: str) -> dict:
    """{"face_id": [...], "subset": [...], "candidate": array, "baseline": array or None}."""
    with tf.io.gfile.GFile(path) as handle:
        rows = list(csv.DictReader(handle))
    has_baseline = bool(rows) and rows[0]["baseline"] != ""
    return {"face_id": [r["face_id"] for r in rows], "subset": [r["subset"] for r in rows],
            "candidate": np.array([float(r["candidate"]) for r in rows]),
            "baseline": np.array([float(r["baseline"]) for r in rows]) if has_baseline
            else None}


def unique_faces(serialized_examples: Iterable[bytes]) -> Iterator[bytes]:
    """Each face once (by face id, the first met): held-out sets of several spans may
    share faces (a test source is in every span's examples)."""
    seen = set()
    for serialized in serialized_examples:
        face_id = tf.train.Example.FromString(serialized).features.feature[
            RAW_FACE_ID].bytes_list.value[0]
        if face_id not in seen:
            seen.add(face_id)
            yield serialized
