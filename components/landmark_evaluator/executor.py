"""Scores the trained model, compares it with the last blessed one, blesses.

The model is scored through its `serving_tf_example` signature on the
held-out split of LandmarkExampleGen's raw faces (evaluation.py; of one span,
or of several: each face once): photos and detector boxes in, as a TF
Serving client sends them, against the annotated landmarks in the photos'
pixels. A model is blessed when its headline NME (inter-ocular for 68
points, box diagonal otherwise) is at most `max_nme` percent and, when a
baseline is given (the latest blessed model, resolved through MLMD by the
pipeline), its mean paired difference with the baseline on the same faces
is within the tolerance (evaluation.compare). The per-face errors of both
are kept (face_errors.csv), so publishing and reports read them instead of
scoring again. The blessing artifact
follows the conventions of TFX's own Evaluator (`blessed` custom property,
BLESSED / NOT_BLESSED file), so the standard Pusher and
LatestBlessedModelStrategy understand it. The output files' names are in spec.py.
"""
from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from components.landmark_evaluator import evaluation, spec
from components.landmark_evaluator.spec import (
    BLESSING_EVALUATION_FILE,
    CED_FILE,
    FACE_ERRORS_FILE,
    METRICS_FILE,
)
from facealign.core import faults, metrics


def split_files(examples: types.Artifact, split: str) -> list[str]:
    files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*"))
    if not files:
        raise ValueError(f"split {split!r} of {examples.uri} has no files")
    return sorted(files)


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = input_dict[spec.EXAMPLES_KEY]
        model = artifact_utils.get_single_instance(input_dict[spec.MODEL_KEY])
        baselines = input_dict.get(spec.BASELINE_MODEL_KEY) or []
        evaluation_artifact = artifact_utils.get_single_instance(
            output_dict[spec.EVALUATION_KEY])
        blessing = artifact_utils.get_single_instance(output_dict[spec.BLESSING_KEY])
        split = exec_properties[spec.SPLIT_KEY]
        threshold = float(exec_properties[spec.FAILURE_THRESHOLD_KEY])
        files = [f for artifact in examples for f in split_files(artifact, split)]

        def faces():
            return evaluation.unique_faces(evaluation.read_examples(files))

        current = evaluation.predict(path_utils.serving_model_path(model.uri), faces())
        report = {"split": split, "model": model.uri, "examples": files,
                  "spans": sorted({a.span for a in examples}),
                  "metrics": evaluation.score(current, threshold)}
        curves = {"candidate": evaluation.headline_errors(current)}   # fractions, for the CED
        candidate_errors = 100 * curves["candidate"]                   # percent, as the NME
        baseline_errors = paired = None
        if baselines and baselines[0].uri != model.uri:
            base = evaluation.predict(path_utils.serving_model_path(baselines[0].uri), faces())
            report["baseline"] = {"model": baselines[0].uri,
                                  "metrics": evaluation.score(base, threshold)}
            curves["baseline"] = evaluation.headline_errors(base)
            baseline_errors = 100 * curves["baseline"]
            paired = evaluation.compare(candidate_errors, baseline_errors,
                                        float(exec_properties[spec.TOLERANCE_ABSOLUTE_KEY]),
                                        float(exec_properties[spec.TOLERANCE_RELATIVE_KEY]))
            report["paired"] = paired
        nme = metrics.headline_nme(report["metrics"]["all"])
        blessed, reason = evaluation.decide(nme, float(exec_properties[spec.MAX_NME_KEY]),
                                            paired)
        report["blessed"], report["reason"] = blessed, reason

        io_utils.write_string_file(os.path.join(evaluation_artifact.uri, METRICS_FILE),
                                   json.dumps(report, indent=2))
        evaluation.write_face_errors(os.path.join(evaluation_artifact.uri, FACE_ERRORS_FILE),
                                     current, candidate_errors, baseline_errors)
        metrics.plot_ced(curves, os.path.join(evaluation_artifact.uri, CED_FILE), threshold,
                         title=f"CED on split {split!r}")
        faults.reached(self._context, "before_blessing")  # metrics written, no blessing
        self._write_blessing(blessing, model, baselines, blessed, reason)
        io_utils.write_string_file(
            os.path.join(blessing.uri, BLESSING_EVALUATION_FILE),
            json.dumps({"split": split, "failure_threshold": threshold,
                        "metrics": report["metrics"], "reason": reason}, indent=1))
        logging.info("Evaluation: %s", json.dumps(report["metrics"]["all"]))
        print(f"Evaluator: scored {len(candidate_errors)} faces of span(s) {report['spans']}",
              flush=True)
        print(f"Evaluator: {'BLESSED' if blessed else 'NOT blessed'}: {reason}", flush=True)

    @staticmethod
    def _write_blessing(blessing, model, baselines, blessed: bool, reason: str) -> None:
        blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY,
                                            model.uri)
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY,
                                         model.id)
        if baselines:
            blessing.set_string_custom_property(
                constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baselines[0].uri)
            blessing.set_int_custom_property(
                constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baselines[0].id)
        blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY,
                                            reason)
        name = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
        io_utils.write_string_file(os.path.join(blessing.uri, name), "")
        blessing.set_int_custom_property(
            constants.ARTIFACT_PROPERTY_BLESSED_KEY,
            constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE)
