"""Runs an exported model over canonical examples and scores it per subset.

Predictions come from the SavedModel's `predict_canonical` signature (the
canonical crop in, canonical landmarks out) and are mapped back to original
image pixels with each example's `to_original`, so the scores are measured
where the ground truth was annotated.
"""
from __future__ import annotations

import collections
import dataclasses

import numpy as np
import tensorflow as tf

from facealign import canonical_example, examples, metrics

CANONICAL_SIGNATURE = "predict_canonical"


@dataclasses.dataclass
class Predictions:
    predicted: np.ndarray  # [B, N, 2] original image pixels
    ground_truth: np.ndarray
    subsets: list[str]


def read_layout(files: list[str]) -> tuple[int, int]:
    """(landmark count, image size) from the first example of the files."""
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(1):
        example = tf.train.Example.FromString(record.numpy())
        feature = example.features.feature
        return (len(feature[examples.LANDMARKS].float_list.value) // 2,
                int(feature[examples.IMAGE_SIZE].int64_list.value[0]))
    raise ValueError(f"no examples in {files}")


def to_original(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Applies per-example 2x3 affines [B, 2, 3] to points [B, N, 2]."""
    return np.einsum("bij,bnj->bni", affine[:, :, :2], points) + affine[:, None, :, 2]


def predict(saved_model_dir: str, files: list[str], batch_size: int = 64) -> Predictions:
    model = tf.saved_model.load(saved_model_dir)
    predict_fn = model.signatures[CANONICAL_SIGNATURE]
    num_landmarks, size = read_layout(files)
    dataset = (tf.data.TFRecordDataset(files, compression_type="GZIP")
               .batch(batch_size)
               .map(lambda s: canonical_example.parse_canonical_examples(s, num_landmarks, size),
                    num_parallel_calls=tf.data.AUTOTUNE)
               .prefetch(2))
    predicted, truth, subsets = [], [], []
    for batch in dataset:
        canonical = predict_fn(image=batch[examples.IMAGE])["landmarks"].numpy()
        predicted.append(to_original(canonical, batch[examples.TO_ORIGINAL].numpy()))
        truth.append(batch[examples.ORIGINAL_LANDMARKS].numpy())
        subsets.extend(s.decode() for s in batch[examples.SUBSET].numpy())
    return Predictions(np.concatenate(predicted), np.concatenate(truth), subsets)


def score(predictions: Predictions, threshold: float) -> dict:
    """{"all": summary, "<subset>": summary, ...}."""
    by_subset = collections.defaultdict(list)
    for i, subset in enumerate(predictions.subsets):
        by_subset[subset].append(i)
    result = {"all": metrics.summary(predictions.predicted, predictions.ground_truth, threshold)}
    for subset, index in sorted(by_subset.items()):
        result[subset] = metrics.summary(predictions.predicted[index],
                                         predictions.ground_truth[index], threshold)
    return result


def headline_errors(predictions: Predictions) -> np.ndarray:
    """Per-face errors used for CED plots: inter-ocular for 68 points, else box diagonal."""
    normalisation = ("inter_ocular" if predictions.ground_truth.shape[1] == 68
                     else "box_diagonal")
    return metrics.face_errors(predictions.predicted, predictions.ground_truth, normalisation)
