"""Stops the pipeline on data-validation anomalies, with a readable report.

TFX's ExampleValidator records anomalies but never fails a run; a model
trained on, say, landmarks of the wrong length would be garbage, so the first
component that consumes the data refuses to go on.
"""
from __future__ import annotations

import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils

from facealign.core import examples as names

ANOMALIES_FILE = "SchemaDiff.pb"
# Free-text identifiers: SchemaGen infers a closed string domain for them from
# the training split, so every new id or folder elsewhere would be "unexpected".
IDENTIFIER_FEATURES = frozenset({names.RAW_FACE_ID, names.RAW_IMAGE_PATH, names.RAW_SUBSET,
                                 names.RAW_DATASET})
_UNEXPECTED_STRING = anomalies_pb2.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES


class DataAnomalies(RuntimeError):
    pass


def anomaly_lines(anomalies_artifact) -> list[str]:
    lines = []
    for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies_artifact], split),
                            ANOMALIES_FILE)
        if not tf.io.gfile.exists(path):
            continue
        anomalies = anomalies_pb2.Anomalies()
        with tf.io.gfile.GFile(path, "rb") as handle:
            anomalies.ParseFromString(handle.read())
        for feature, info in sorted(anomalies.anomaly_info.items()):
            reasons = [r for r in info.reason
                       if not (feature in IDENTIFIER_FEATURES and r.type == _UNEXPECTED_STRING)]
            if not reasons:
                continue
            detail = "; ".join(r.description or r.short_description for r in reasons)
            lines.append(f"split {split}, feature {feature!r}: {info.short_description}: {detail}")
        if anomalies.HasField("dataset_anomaly_info"):
            lines.append(f"split {split}: {anomalies.dataset_anomaly_info.description}")
    return lines


def raise_on_anomalies(anomalies_artifact) -> None:
    lines = anomaly_lines(anomalies_artifact)
    if lines:
        raise DataAnomalies("data validation found anomalies; the pipeline stops here:\n  "
                            + "\n  ".join(lines))
