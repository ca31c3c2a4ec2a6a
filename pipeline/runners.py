"""Where the pipeline runs: locally (LocalDagRunner, SQLite MLMD, Beam
DirectRunner by default) or compiled for Kubeflow Pipelines v2 / Vertex AI."""
from __future__ import annotations

import pathlib

from tfx import v1 as tfx

from facealign.config import Config
from pipeline.pipeline import create_pipeline

DEFAULT_IMAGE = "facealign:latest"


def metadata_path(cfg: Config) -> pathlib.Path:
    if cfg.pipeline.metadata_path:
        return cfg.resolve(cfg.pipeline.metadata_path)
    return cfg.resolve(cfg.pipeline.root) / "metadata.sqlite"


def run_local(cfg: Config) -> None:
    path = metadata_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = create_pipeline(
        cfg, metadata_connection_config=tfx.orchestration.metadata
        .sqlite_metadata_connection_config(str(path)))
    tfx.orchestration.LocalDagRunner().run(pipeline)


def compile_kubeflow_v2(cfg: Config, output: str, image: str = DEFAULT_IMAGE,
                        pipeline_root: str | None = None) -> str:
    """Writes the pipeline spec JSON; the image must have facealign installed."""
    path = pathlib.Path(output).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=str(path.parent), output_filename=path.name)
    runner.run(create_pipeline(cfg, pipeline_root=pipeline_root, kubeflow=True))
    return str(path)
