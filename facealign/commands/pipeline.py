"""`facealign run` (the whole pipeline, locally) and `facealign compile`."""
from __future__ import annotations

import time

from facealign.commands.config import add_config_arguments
from facealign.core import config
from facealign.core.errors import UserError


def add_parser(sub) -> None:
    run = sub.add_parser("run", help="run the TFX pipeline locally (LocalDagRunner; MLMD in "
                                     "SQLite, or on MySQL / MariaDB with pipeline.mysql)")
    add_config_arguments(run)
    run.add_argument("--wait-for-lock", type=float, default=0, metavar="SECONDS",
                     help="when another run holds this pipeline (same root, or same "
                          "pipeline.mysql database and name), wait up to SECONDS for it to "
                          "end; default: stop at once with exit code 2")
    run.set_defaults(handler=run_pipeline)

    comp = sub.add_parser("compile", help="compile the pipeline for an orchestrator")
    add_config_arguments(comp)
    comp.add_argument("--target", choices=["kubeflow-v2", "airflow"], default="kubeflow-v2",
                      help="kubeflow-v2: Kubeflow Pipelines v2 / Vertex AI pipeline spec; "
                           "airflow: an Airflow DAG file (TFX's AirflowDagRunner)")
    comp.add_argument("--output", required=True,
                      help="pipeline spec JSON to write (airflow: the DAG .py file)")
    comp.add_argument("--image", default="facealign:latest",
                      help="kubeflow-v2: container image with facealign installed")
    comp.add_argument("--pipeline-root",
                      help="kubeflow-v2: remote pipeline root, e.g. gs://bucket/root")
    comp.add_argument("--schedule", help="airflow: the DAG's schedule, e.g. @daily or a cron "
                                         "line (default: none, runs only when triggered)")
    comp.set_defaults(handler=compile_pipeline)


def run_pipeline(args) -> int:
    from pipeline import runners

    cfg = config.load(args.config, args.overrides)
    started = time.monotonic()
    print(f"facealign run: pipeline {cfg.pipeline.name!r}, root {cfg.resolve(cfg.pipeline.root)}",
          flush=True)
    if args.wait_for_lock < 0:
        raise UserError(f"--wait-for-lock: {args.wait_for_lock:g} s; give 0 or more")
    try:
        runners.run_local(cfg, wait_for_lock_s=args.wait_for_lock)
    except runners.MetadataStoreError as exc:
        raise UserError(str(exc)) from None
    except runners.run_lock.RunLockedError as exc:
        hint = "" if args.wait_for_lock else "; --wait-for-lock SECONDS waits for it"
        raise UserError(f"{exc}{hint}") from None
    print(f"facealign run: finished in {time.monotonic() - started:.0f} s; models under "
          f"{cfg.resolve(cfg.serving.base_dir) / cfg.serving.model_name}", flush=True)
    return 0


def compile_pipeline(args) -> int:
    cfg = config.load(args.config, args.overrides)
    if args.target == "airflow":
        path = compile_airflow(args, cfg)
    else:
        if args.schedule is not None:
            raise UserError("--schedule is for --target airflow")
        from pipeline import runners

        path = runners.compile_kubeflow_v2(cfg, args.output, args.image, args.pipeline_root)
    print(f"facealign compile: wrote {path}")
    return 0


def compile_airflow(args, cfg: config.Config) -> str:
    from pipeline import airflow_dag

    if args.pipeline_root is not None:
        raise UserError("--pipeline-root is for kubeflow-v2; for airflow set the config's "
                        "root: --set pipeline.root=PATH")
    if not args.output.endswith(".py"):
        raise UserError(f"--output {args.output}: Airflow reads DAGs only from .py files")
    try:
        return airflow_dag.write_dag_file(args.config, args.overrides, args.output,
                                          cfg.pipeline.name, args.schedule)
    except airflow_dag.AirflowMissing as exc:
        raise UserError(str(exc)) from None
