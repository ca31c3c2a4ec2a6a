"""What the pipeline did, read back from ML Metadata and the artifacts: plain records.

The run report (pipeline/run_report.py) renders these; nothing here writes.
MLMD holds the runs (contexts of type pipeline_run), their executions (each
one's node from its context of type node) and the artifacts each execution
produced; the artifacts' folders hold the rest (the ingest report, the
anomalies, the model's metadata, the Evaluator's figures). An artifact whose
folder is gone, or a run that failed before writing it, gives a record saying
what is missing instead of an error, so an old or damaged root still reports.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib

from facealign.core import model_paths
from facealign.core.config import Config

# Execution.State numbers (ml_metadata's metadata_store_pb2) as the report names them.
STATES = {0: "unknown", 1: "new", 2: "running", 3: "complete", 4: "failed", 5: "cached",
          6: "canceled"}


@dataclasses.dataclass
class Execution:
    id: int
    node: str                 # the pipeline's node id, e.g. "Trainer"
    state: str                # one of STATES' names
    started: float            # seconds since the epoch
    seconds: float            # until its last update


@dataclasses.dataclass
class Run:
    name: str
    started: float
    executions: list[Execution]


@dataclasses.dataclass
class IngestedData:
    """LandmarkExampleGen's faces (accepted, rejected with reasons) and the TFDV anomalies of
    the same run."""
    artifact_id: int
    run: str
    accepted: int | None
    rejected: int | None
    per_split: dict[str, int]
    rejects: list[dict]                # {"file", "reason", "dataset"}
    anomalies: list[str] | None        # None: no ExampleAnomalies found (run stopped, deleted)
    missing: str | None = None
    span: int | None = None            # the span ingested (0: a source without {SPAN})
    version: int | None = None
    fingerprint: str | None = None     # of the source files read
    drift: dict | None = None          # DriftCheck's drift_report.json, with spans


@dataclasses.dataclass
class TrainedModel:
    artifact_id: int
    run: str
    uri: str
    metadata: dict | None              # facealign's model metadata; None with `missing`
    missing: str | None = None


@dataclasses.dataclass
class Evaluation:
    artifact_id: int
    run: str
    model_uri: str | None
    baseline_uri: str | None
    report: dict | None                # metrics.json: metrics, baseline, blessed, reason
    ced_png: pathlib.Path | None
    blessed: bool | None               # None: no blessing recorded
    reason: str
    missing: str | None = None
    face_errors: dict | None = None    # face_errors.csv (evaluation.read_face_errors)


@dataclasses.dataclass
class Push:
    artifact_id: int
    run: str
    pushed: bool
    version: str | None
    destination: str | None


@dataclasses.dataclass
class ServingFolder:
    base: pathlib.Path
    versions: list[int]

    @property
    def current(self) -> int | None:
        """The version TF Serving's "latest" policy serves: the newest numeric folder."""
        return max(self.versions) if self.versions else None


@dataclasses.dataclass
class Sweep:
    source: str                        # where the trials come from
    columns: list[str]
    rows: list[dict]


@dataclasses.dataclass
class RunHistory:
    """Everything newest first."""
    pipeline: str
    store: str
    runs: list[Run]
    data: list[IngestedData]
    models: list[TrainedModel]
    evaluations: list[Evaluation]
    pushes: list[Push]
    serving: ServingFolder
    sweeps: list[Sweep]


def open_store(cfg: Config):
    """The pipeline's MLMD store (SQLite read-only); MetadataStoreError when there is none."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    from pipeline import runners

    if cfg.pipeline.mysql is None:
        path = runners.metadata_path(cfg)
        if not path.is_file():
            raise runners.MetadataStoreError(
                f"no ML Metadata at {path}: the pipeline has not run with this root yet "
                f"(facealign run --config ...)")
        connection = runners.metadata_connection_config(cfg)
        connection.sqlite.connection_mode = \
            metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
        try:
            return metadata_store.MetadataStore(connection), str(path)
        except RuntimeError as exc:     # not MLMD's file, or one it would have to upgrade
            raise runners.MetadataStoreError(
                f"{path}: not a readable ML Metadata store ({str(exc).splitlines()[0][:200]})"
            ) from None
    connection = runners.metadata_connection_config(cfg)
    runners.check_mysql_store(cfg, connection)
    mysql = cfg.pipeline.mysql
    return (metadata_store.MetadataStore(connection),
            f"mysql://{mysql.host}:{mysql.port}/{mysql.database}")


def read_history(cfg: Config) -> RunHistory:
    from pipeline import runners

    store, where = open_store(cfg)
    runs, run_of_execution, node_of_execution = read_runs(store, cfg.pipeline.name)
    if not runs:
        raise runners.MetadataStoreError(f"{where}: no run of pipeline {cfg.pipeline.name!r} "
                                         f"recorded")
    outputs = produced_artifacts(store, run_of_execution, node_of_execution)
    serving_base = cfg.resolve(cfg.serving.base_dir) / cfg.serving.model_name
    return RunHistory(
        pipeline=cfg.pipeline.name, store=where, runs=runs,
        data=read_data(outputs), models=read_models(outputs),
        evaluations=read_evaluations(outputs), pushes=read_pushes(outputs),
        serving=ServingFolder(serving_base, sorted(model_paths.numeric_versions(serving_base))),
        sweeps=read_sweeps(cfg, outputs))


def read_runs(store, pipeline_name: str):
    """(runs newest first, {execution id: run name}, {execution id: node id})."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    mine = {e.id for e in store.get_executions_by_context(pipeline.id)} if pipeline else set()
    node_of_execution = {}
    for context in store.get_contexts_by_type("node"):
        node = context.name.split(".", 1)[-1]        # "<pipeline name>.<node id>"
        for execution in store.get_executions_by_context(context.id):
            node_of_execution[execution.id] = node
    runs, run_of_execution = [], {}
    for context in store.get_contexts_by_type("pipeline_run"):
        executions = [e for e in store.get_executions_by_context(context.id) if e.id in mine]
        if not executions:
            continue
        executions.sort(key=lambda e: (e.create_time_since_epoch, e.id))
        for execution in executions:
            run_of_execution[execution.id] = context.name
        runs.append(Run(context.name, context.create_time_since_epoch / 1e3, [
            Execution(e.id, node_of_execution.get(e.id, "?"), STATES.get(e.last_known_state,
                                                                         "unknown"),
                      e.create_time_since_epoch / 1e3,
                      max(0.0, (e.last_update_time_since_epoch - e.create_time_since_epoch)
                          / 1e3))
            for e in executions]))
    runs.sort(key=lambda r: r.started, reverse=True)
    return runs, run_of_execution, node_of_execution


@dataclasses.dataclass
class _Output:
    artifact: object        # ml_metadata's Artifact proto
    type_name: str
    run: str                # the run whose execution first produced it
    runs: set               # every run that output it (cached executions repeat the outputs)
    node: str


def produced_artifacts(store, run_of_execution: dict, node_of_execution: dict) -> list[_Output]:
    """The artifacts the pipeline's executions output, newest first."""
    from ml_metadata.proto import metadata_store_pb2

    events = store.get_events_by_execution_ids(list(run_of_execution))
    first, runs = {}, {}
    for event in sorted(events, key=lambda e: e.execution_id):
        if event.type not in (metadata_store_pb2.Event.OUTPUT,
                              metadata_store_pb2.Event.DECLARED_OUTPUT):
            continue
        first.setdefault(event.artifact_id, event.execution_id)
        runs.setdefault(event.artifact_id, set()).add(run_of_execution[event.execution_id])
    artifacts = store.get_artifacts_by_id(list(first))
    type_names = {t.id: t.name for t in store.get_artifact_types_by_id(
        list({a.type_id for a in artifacts}))}
    outputs = [_Output(a, type_names.get(a.type_id, "?"), run_of_execution[first[a.id]],
                       runs[a.id], node_of_execution.get(first[a.id], "?"))
               for a in artifacts if a.state != metadata_store_pb2.Artifact.ABANDONED]
    outputs.sort(key=lambda o: (o.artifact.create_time_since_epoch, o.artifact.id), reverse=True)
    return outputs


def custom(artifact, name: str, default=None):
    """A custom property's value (TFX writes ints and strings)."""
    if name not in artifact.custom_properties:
        return default
    value = artifact.custom_properties[name]
    return getattr(value, value.WhichOneof("value") or "string_value", default)


def read_json(path: str):
    """A JSON file of an artifact (local or an object store's); OSError when unreadable."""
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path) as handle:
            return json.loads(handle.read())
    except tf.errors.OpError as exc:       # NotFoundError and the like are not OSErrors
        raise OSError(exc.message) from None


def read_data(outputs: list[_Output]) -> list[IngestedData]:
    from components.augment import anomalies as anomalies_lib
    from components.drift_check import spec as drift_spec
    from components.landmark_example_gen import spec as example_gen_spec

    found = []
    for output in outputs:
        artifact = output.artifact
        if output.type_name != "Examples" or \
                example_gen_spec.ACCEPTED_FACES_PROPERTY not in artifact.custom_properties:
            continue
        record = IngestedData(artifact.id, output.run,
                              custom(artifact, example_gen_spec.ACCEPTED_FACES_PROPERTY),
                              custom(artifact, example_gen_spec.REJECTED_INPUTS_PROPERTY),
                              {}, [], None)
        try:
            report = read_json(os.path.join(artifact.uri, example_gen_spec.REPORT_FILE))
            record.per_split, record.rejects = report["per_split"], report["rejects"]
            record.span, record.version = report.get("span"), report.get("version")
            record.fingerprint = report.get("fingerprint")
        except (OSError, ValueError, KeyError) as exc:
            record.missing = str(exc)
        same_run = [o for o in outputs if o.type_name == "ExampleAnomalies"
                    and output.run in o.runs]
        drift = [o for o in same_run
                 if drift_spec.DRIFTED_PROPERTY in o.artifact.custom_properties]
        if drift:
            try:
                record.drift = read_json(os.path.join(drift[0].artifact.uri,
                                                      drift_spec.REPORT_FILE))
            except (OSError, ValueError):
                pass
        validations = [o for o in same_run if o not in drift]
        if validations and os.path.isdir(validations[0].artifact.uri):
            from tfx.types import standard_artifacts

            anomalies = standard_artifacts.ExampleAnomalies()
            anomalies.set_mlmd_artifact(validations[0].artifact)
            record.anomalies = anomalies_lib.anomaly_lines(anomalies)
        found.append(record)
    return found


def read_models(outputs: list[_Output]) -> list[TrainedModel]:
    from tfx.utils import path_utils

    from facealign.core.model_format import ModelFormatError, ModelMetadata

    found = []
    for output in outputs:
        if output.type_name != "Model":
            continue
        uri = output.artifact.uri
        try:
            metadata = ModelMetadata.read(path_utils.serving_model_path(uri)).to_dict()
            found.append(TrainedModel(output.artifact.id, output.run, uri, metadata))
        except (OSError, ModelFormatError) as exc:    # deleted, or not facealign's
            found.append(TrainedModel(output.artifact.id, output.run, uri, None,
                                      f"no model metadata under {uri} ({exc})"))
    return found


def read_evaluations(outputs: list[_Output]) -> list[Evaluation]:
    from tfx.components.evaluator import constants

    from components.landmark_evaluator import evaluation as scoring
    from components.landmark_evaluator.spec import CED_FILE, FACE_ERRORS_FILE, METRICS_FILE

    blessed_key = constants.ARTIFACT_PROPERTY_BLESSED_KEY   # the names the Evaluator writes
    blessings = {o.run: o.artifact for o in reversed(outputs) if o.type_name == "ModelBlessing"
                 and blessed_key in o.artifact.custom_properties}
    found = []
    for output in outputs:
        if output.type_name != "ModelEvaluation":
            continue
        uri = output.artifact.uri
        blessing = blessings.get(output.run)
        evaluation = Evaluation(
            output.artifact.id, output.run,
            custom(blessing, constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY)
            if blessing else None,
            custom(blessing, constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY)
            if blessing else None,
            None, None,
            bool(custom(blessing, blessed_key)) if blessing else None,
            custom(blessing, constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY, "")
            if blessing else "")
        try:
            evaluation.report = read_json(os.path.join(uri, METRICS_FILE))
            evaluation.model_uri = evaluation.report.get("model", evaluation.model_uri)
            evaluation.reason = evaluation.reason or evaluation.report.get("reason", "")
            if evaluation.blessed is None and "blessed" in evaluation.report:
                evaluation.blessed = bool(evaluation.report["blessed"])
        except (OSError, ValueError) as exc:
            evaluation.missing = str(exc)
        ced = pathlib.Path(uri) / CED_FILE
        evaluation.ced_png = ced if ced.is_file() else None
        errors = pathlib.Path(uri) / FACE_ERRORS_FILE
        if errors.is_file():
            evaluation.face_errors = scoring.read_face_errors(str(errors))
        found.append(evaluation)
    return found


def read_pushes(outputs: list[_Output]) -> list[Push]:
    return [Push(o.artifact.id, o.run, bool(custom(o.artifact, "pushed", 0)),
                 custom(o.artifact, "pushed_version"), custom(o.artifact, "pushed_destination"))
            for o in outputs if o.type_name == "PushedModel"]


def read_sweeps(cfg: Config, outputs: list[_Output]) -> list[Sweep]:
    """`facealign tune`'s trials.csv (trainer/tuning.write_report) and the pipeline Tuner's
    tuner_results.json, where they exist."""
    sweeps = []
    trials_csv = cfg.resolve(cfg.tuner.directory) / cfg.sweep_name / "trials.csv"
    if trials_csv.is_file():
        with open(trials_csv, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
        sweeps.append(Sweep(f"facealign tune: {trials_csv}", list(reader.fieldnames or []),
                            rows))
    for output in outputs:
        if output.type_name != "TunerResults":
            continue
        path = os.path.join(output.artifact.uri, "tuner_results.json")
        try:
            rows = read_json(path)
        except (OSError, ValueError):
            sweeps.append(Sweep(f"pipeline Tuner, run {output.run}: {path} missing", [], []))
            continue
        columns = list(dict.fromkeys(key for row in rows for key in row))
        sweeps.append(Sweep(f"pipeline Tuner, run {output.run}", columns, rows))
    return sweeps
