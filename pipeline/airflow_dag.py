"""`facealign compile --target airflow`: an Airflow DAG file for the pipeline.

The file builds the pipeline when Airflow parses it (TFX's AirflowDagRunner turns each
component into a task), so it stays in step with pipeline.yaml and the code: it holds only
the config's absolute path and the --set overrides, never a snapshot of the pipeline.
"""
from __future__ import annotations

import importlib.util
import pathlib

INSTALL_AIRFLOW = "pip install -e '.[airflow]'"

# Airflow needs a start_date; a fixed one keeps the DAG the same at every parse, and
# catchup=False stops Airflow from running every interval since then. max_active_runs=1:
# a run that outlasts its interval makes the next one wait, as `facealign run`'s lock does
# (two runs on one pipeline root would train twice and race at the push).
TEMPLATE = '''\
"""Airflow DAG of facealign pipeline {name!r}, written by `facealign compile --target airflow`.

Parsed by Airflow: it reads the config below (with its overrides) and builds the TFX pipeline
each time, so edits to the config take effect without recompiling.
"""
import datetime

from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

import pipeline.pipeline
import pipeline.runners
from facealign.core import config

CONFIG = {config_path!r}
OVERRIDES = {overrides!r}

airflow_dag_config = {{
    "schedule": {schedule!r},
    "start_date": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    "catchup": False,
    "max_active_runs": 1,
}}

cfg = config.load(CONFIG, OVERRIDES)
tfx_pipeline = pipeline.pipeline.create_pipeline(
    cfg, metadata_connection_config=pipeline.runners.metadata_connection_config(cfg))
DAG = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config)).run(tfx_pipeline)
'''


class AirflowMissing(RuntimeError):
    """Apache Airflow is not installed; the message says how to install it."""


def require_airflow() -> None:
    """find_spec, not import: importing airflow writes an airflow.cfg into AIRFLOW_HOME."""
    if importlib.util.find_spec("airflow") is None:
        raise AirflowMissing(f"--target airflow needs Apache Airflow: {INSTALL_AIRFLOW}")


def write_dag_file(config_path: str | pathlib.Path, overrides: list[str], output: str,
                   pipeline_name: str, schedule: str | None = None) -> str:
    """Writes the DAG file; Airflow picks it up from its dags folder (only *.py files)."""
    require_airflow()
    path = pathlib.Path(output).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TEMPLATE.format(
        name=pipeline_name, config_path=str(pathlib.Path(config_path).resolve()),
        overrides=list(overrides), schedule=schedule))
    return str(path)
