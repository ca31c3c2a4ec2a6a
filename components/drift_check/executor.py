"""Compares this span's raw-face statistics with the previous span's, with TFDV.

Each configured feature gets TFDV's drift comparator in a schema inferred
from this span (Jensen-Shannon divergence for numbers, L-infinity distance
for categories); `tfdv.validate_statistics` with the previous span's
statistics measures them. A measure above its threshold stops the run
(DriftError, naming the feature, the measure and both spans' values) unless
validation.accept_drift is set; either way the report is written first.
"""
from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx import types
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.drift_check import spec
from facealign.core.data.report import DataError

_CATEGORICAL = (statistics_pb2.FeatureNameStatistics.STRING,
                statistics_pb2.FeatureNameStatistics.BYTES)


class DriftError(DataError):
    """A span drifted beyond a configured threshold."""


def previous_span(current: types.Artifact, earlier: list[types.Artifact]):
    """The newest statistics of the largest span below the current one, or None."""
    below = [a for a in earlier if a.span < current.span and a.uri != current.uri]
    return max(below, key=lambda a: (a.span, a.id)) if below else None


def summary(feature: statistics_pb2.FeatureNameStatistics) -> str:
    """A feature's value in one span, as people read it: the mean, or the top categories."""
    if feature.HasField("num_stats"):
        return f"mean {feature.num_stats.mean:.4g}"
    values = feature.string_stats.top_values[:3]
    return "top " + ", ".join(f"{v.value} ({v.frequency:.0f})" for v in values)


def measure(current: statistics_pb2.DatasetFeatureStatisticsList,
            previous: statistics_pb2.DatasetFeatureStatisticsList,
            thresholds: dict[str, float]) -> tuple[list[dict], anomalies_pb2.Anomalies]:
    """[{feature, comparator, value, threshold, drifted, previous, current}] per configured
    feature present in this span, and TFDV's anomalies."""
    schema = tfdv.infer_schema(current)
    now, before = tfdv.DatasetListView(current), tfdv.DatasetListView(previous)
    kinds = {}
    for name, threshold in thresholds.items():
        feature = now.get_default_slice_or_die().get_feature(tfdv.FeaturePath([name]))
        if feature is None:
            continue
        categorical = feature.proto().type in _CATEGORICAL
        comparator = tfdv.get_feature(schema, name).drift_comparator
        if categorical:
            comparator.infinity_norm.threshold = threshold
        else:
            comparator.jensen_shannon_divergence.threshold = threshold
        kinds[name] = "L-infinity distance" if categorical else "Jensen-Shannon divergence"
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=previous)
    rows = []
    for info in anomalies.drift_skew_info:
        name = info.path.step[0]
        for drift in info.drift_measurements:
            old = before.get_default_slice_or_die().get_feature(tfdv.FeaturePath([name]))
            new = now.get_default_slice_or_die().get_feature(tfdv.FeaturePath([name]))
            rows.append({"feature": name, "comparator": kinds.get(name, str(drift.type)),
                         "value": round(drift.value, 4), "threshold": drift.threshold,
                         "drifted": drift.value > drift.threshold,
                         "previous": summary(old.proto()) if old else "absent",
                         "current": summary(new.proto())})
    return sorted(rows, key=lambda r: r["feature"]), anomalies


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        current = artifact_utils.get_single_instance(input_dict[spec.STATISTICS_KEY])
        baseline = previous_span(current, input_dict.get(spec.EARLIER_STATISTICS_KEY) or [])
        out = artifact_utils.get_single_instance(output_dict[spec.DRIFT_KEY])
        out.span = current.span
        out.split_names = artifact_utils.encode_split_names([spec.SPLIT])
        thresholds = json.loads(exec_properties[spec.THRESHOLDS_KEY])
        accept = bool(exec_properties[spec.ACCEPT_DRIFT_KEY])
        report = {"span": current.span, "previous_span": None, "split": spec.SPLIT,
                  "accept_drift": accept, "features": [], "drifted": []}
        anomalies = anomalies_pb2.Anomalies()
        if baseline is not None and thresholds:
            rows, anomalies = measure(
                stats_artifact_utils.load_statistics(current, spec.SPLIT).proto(),
                stats_artifact_utils.load_statistics(baseline, spec.SPLIT).proto(), thresholds)
            report.update(previous_span=baseline.span, features=rows,
                          drifted=[r["feature"] for r in rows if r["drifted"]])
        split_dir = artifact_utils.get_split_uri([out], spec.SPLIT)
        tf.io.gfile.makedirs(split_dir)
        with tf.io.gfile.GFile(os.path.join(split_dir, spec.ANOMALIES_FILE), "wb") as handle:
            handle.write(anomalies.SerializeToString())
        report_path = os.path.join(out.uri, spec.REPORT_FILE)
        with tf.io.gfile.GFile(report_path, "w") as handle:
            json.dump(report, handle, indent=1)
        out.set_int_custom_property(spec.DRIFTED_PROPERTY, int(bool(report["drifted"])))
        if baseline is None:
            print(f"DriftCheck: span {current.span} is the first: nothing to compare",
                  flush=True)
            return
        lines = [f"{r['feature']}: {r['comparator']} {r['value']:.3g} > {r['threshold']:.3g} "
                 f"(span {baseline.span}: {r['previous']}; span {current.span}: "
                 f"{r['current']})" for r in report["features"] if r["drifted"]]
        if not lines:
            print(f"DriftCheck: span {current.span} against span {baseline.span}: "
                  f"{len(report['features'])} features within their thresholds", flush=True)
        elif accept:
            print("DriftCheck: drift accepted (validation.accept_drift): " + "; ".join(lines),
                  flush=True)
        else:
            raise DriftError(report_path, "span drifted from the previous span: "
                             + "; ".join(lines) + ". Check the new faces; to train on them "
                             "anyway, run again with --set validation.accept_drift=true")
