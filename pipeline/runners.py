"""Where the pipeline runs: locally (LocalDagRunner, ML Metadata in an SQLite file or on a
MySQL / MariaDB server, Beam DirectRunner by default) or compiled for Kubeflow Pipelines v2
/ Vertex AI."""
from __future__ import annotations

import os
import pathlib
import socket

from absl import logging
from tfx import v1 as tfx

from facealign.core import faults
from facealign.core.config import Config, ConfigError
from pipeline import run_lock
from pipeline.pipeline import create_pipeline

DEFAULT_IMAGE = "facealign:latest"
START_MYSQL = ("start one, e.g. on Debian: `apt-get install mariadb-server && service mariadb "
               "start`, or a private one: `mariadb-install-db --datadir=DIR && mariadbd "
               "--datadir=DIR --port=PORT --bind-address=127.0.0.1`")


class MetadataStoreError(RuntimeError):
    """The ML Metadata store cannot be opened; the message says what to do."""


def metadata_path(cfg: Config) -> pathlib.Path:
    if cfg.pipeline.metadata_path:
        return cfg.resolve(cfg.pipeline.metadata_path)
    return cfg.resolve(cfg.pipeline.root) / "metadata.sqlite"


def metadata_connection_config(cfg: Config):
    """MLMD's connection: pipeline.mysql's server when set, else the SQLite file.

    The MySQL password comes from the environment variable pipeline.mysql.password_env.
    """
    mysql = cfg.pipeline.mysql
    if mysql is None:
        path = metadata_path(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        return tfx.orchestration.metadata.sqlite_metadata_connection_config(str(path))
    password = None
    if mysql.password_env:
        password = os.environ.get(mysql.password_env)
        if password is None:
            raise ConfigError(f"pipeline.mysql.password_env: the environment variable "
                              f"{mysql.password_env} is not set (it holds the password of "
                              f"{mysql.user!r})")
    return tfx.orchestration.metadata.mysql_metadata_connection_config(
        host=mysql.host, port=mysql.port, database=mysql.database, username=mysql.user,
        password=password)


def check_mysql_store(cfg: Config, connection_config) -> None:
    """Opens pipeline.mysql's store once (MLMD creates the database and its tables), or says
    why it cannot: MLMD's own error names neither the server nor the cause."""
    from ml_metadata.metadata_store import metadata_store

    mysql = cfg.pipeline.mysql
    try:
        metadata_store.MetadataStore(connection_config)
    except RuntimeError as exc:
        where = f"{mysql.host}:{mysql.port}"
        try:
            socket.create_connection((mysql.host, mysql.port), timeout=5).close()
        except OSError as reason:
            raise MetadataStoreError(
                f"pipeline.mysql: no MySQL / MariaDB server answers at {where} ({reason}); "
                f"{START_MYSQL}") from None
        secret = f"the password in ${mysql.password_env}" if mysql.password_env else \
            "no password (pipeline.mysql.password_env is not set)"
        raise MetadataStoreError(
            f"pipeline.mysql: the server at {where} refused user {mysql.user!r} with {secret}, "
            f"or may not let it create database {mysql.database!r}: {exc}") from None


def run_local(cfg: Config, wait_for_lock_s: float = 0) -> None:
    """Runs the pipeline here, holding its run lock (pipeline/run_lock.py): a second run on
    the same root or MySQL pipeline waits wait_for_lock_s seconds, then RunLockedError.

    With FACEALIGN_FAULT naming a node (facealign/core/faults.py), the process kills itself
    once that node's executor has returned, before MLMD records it.
    """
    mysql = cfg.pipeline.mysql
    connection = metadata_connection_config(cfg)
    if mysql is not None:
        check_mysql_store(cfg, connection)
    root = cfg.pipeline.root if "://" in cfg.pipeline.root else cfg.resolve(cfg.pipeline.root)
    password = os.environ.get(mysql.password_env) if mysql and mysql.password_env else None
    with run_lock.hold(root, mysql, password, cfg.pipeline.name, wait_for_lock_s) as unlocked:
        for warning in unlocked:
            logging.warning("%s", warning)
        pipeline = create_pipeline(cfg, metadata_connection_config=connection)
        fault = faults.target()
        for component in pipeline.components if fault else []:
            executor_class = getattr(getattr(component, "executor_spec", None),
                                     "executor_class", None)
            if component.id == fault[0] and executor_class is not None:
                faults.kill_after_do(executor_class, component.id)
        tfx.orchestration.LocalDagRunner().run(pipeline)


def compile_kubeflow_v2(cfg: Config, output: str, image: str = DEFAULT_IMAGE,
                        pipeline_root: str | None = None) -> str:
    """Writes the pipeline spec JSON; the image must have facealign installed.

    With trainer.cluster the Trainer runs as a Vertex AI custom job in the same image.
    """
    path = pathlib.Path(output).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=str(path.parent), output_filename=path.name)
    runner.run(create_pipeline(cfg, pipeline_root=pipeline_root, kubeflow=True,
                               trainer_image=image))
    return str(path)
