"""Builds the facealign `tfx.dsl.Pipeline` from a validated configuration.

Orchestrator-neutral (penguin-template style): the local runner and the
Kubeflow V2 compiler both call `create_pipeline`, and nothing here depends on
where it will run.
"""
from __future__ import annotations

from tfx import v1 as tfx

from components.atomic_pusher.component import AtomicPusher
from components.augment.component import Augment
from components.baseline_resolver.strategy import LatestBlessedOtherModelStrategy
from components.landmark_evaluator.component import LandmarkEvaluator
from components.landmark_example_gen.component import LandmarkExampleGen
from facealign.config import Config

RUN_FN = "trainer.run.run_fn"
TUNER_FN = "trainer.tuning.tuner_fn"


def source_entries(cfg: Config) -> list[dict]:
    """data.sources with paths resolved against the configuration's folder."""
    entries = []
    for source in cfg.data.sources:
        entry = source.model_dump()
        entry["root"] = str(cfg.resolve(source.root))
        entry["boxes"] = [str(cfg.resolve(b)) for b in source.boxes]
        if source.annotations:
            entry["annotations"] = str(cfg.resolve(source.annotations))
        entries.append(entry)
    return entries


def evaluation_split(cfg: Config) -> str:
    """The held-out test split when a test source is configured, else eval."""
    return "test" if any(s.split == "test" for s in cfg.data.sources) else "eval"


def baseline_resolver(trainer, kubeflow: bool):
    """The latest blessed model to compare a new one with.

    Locally the candidate is excluded (LatestBlessedOtherModelStrategy), so an
    unchanged re-run is fully cached. The Kubeflow V2 compiler translates only
    TFX's own strategies into its queries, so there TFX's
    LatestBlessedModelStrategy is used; caching on Vertex is the service's own.
    """
    channels = {
        "model": tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        "model_blessing": tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing)}
    if kubeflow:
        strategy = tfx.dsl.experimental.LatestBlessedModelStrategy
    else:
        strategy = LatestBlessedOtherModelStrategy
        channels["candidate"] = trainer.outputs["model"]
    return tfx.dsl.Resolver(strategy_class=strategy, **channels).with_id(
        "latest_blessed_model_resolver")


def create_components(cfg: Config, kubeflow: bool = False) -> list:
    example_gen = LandmarkExampleGen(sources=source_entries(cfg), eval_count=cfg.data.eval_count,
                                     seed=cfg.data.seed, on_error=cfg.data.on_error)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    # The schema is inferred from the training split only, so eval and test
    # are validated against what the model will be trained on.
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"],
                                          infer_feature_shape=True,
                                          exclude_splits=["eval", "test"])
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    aug = cfg.augment
    augment = Augment(examples=example_gen.outputs["examples"],
                      anomalies=example_validator.outputs["anomalies"],
                      image_size=aug.image_size, face_fraction=aug.face_fraction,
                      copies=aug.copies, mirror=aug.mirror,
                      translation_sigma=aug.translation_sigma,
                      rotation_sigma_deg=aug.rotation_sigma_deg, scale_sigma=aug.scale_sigma,
                      seed=aug.seed)
    # tuner.enabled: a KerasTuner sweep (trainer/tuning.py) on the same data; the
    # Trainer then trains with its best hyperparameters (trainer/run.py).
    tuner = tfx.components.Tuner(
        tuner_fn=TUNER_FN,
        examples=augment.outputs["canonical_examples"],
        transform_graph=augment.outputs["canonical_frame"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config={"facealign": cfg.model_dump(mode="json")}) if cfg.tuner.enabled else None
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=augment.outputs["canonical_examples"],
        transform_graph=augment.outputs["canonical_frame"],
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config={"facealign": cfg.model_dump(mode="json")})
    baseline = baseline_resolver(trainer, kubeflow)
    evaluator = LandmarkEvaluator(
        examples=augment.outputs["canonical_examples"], model=trainer.outputs["model"],
        baseline_model=(baseline.outputs["model"] if cfg.evaluator.compare_to_baseline
                        else None),
        split=evaluation_split(cfg), max_nme=cfg.evaluator.max_nme,
        failure_threshold=cfg.evaluator.failure_threshold)
    pusher = AtomicPusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        base_directory=str(cfg.resolve(cfg.serving.base_dir) / cfg.serving.model_name))
    nodes = [example_gen, statistics_gen, schema_gen, example_validator, augment, trainer,
             evaluator, pusher]
    if cfg.evaluator.compare_to_baseline:
        nodes.insert(6, baseline)
    if tuner is not None:
        nodes.insert(nodes.index(trainer), tuner)
    return nodes


def create_pipeline(cfg: Config, *, pipeline_root: str | None = None,
                    metadata_connection_config=None,
                    beam_pipeline_args: list[str] | None = None,
                    kubeflow: bool = False) -> tfx.dsl.Pipeline:
    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline.name,
        pipeline_root=pipeline_root or str(cfg.resolve(cfg.pipeline.root)),
        components=create_components(cfg, kubeflow),
        enable_cache=cfg.pipeline.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args if beam_pipeline_args is not None
        else list(cfg.beam.args))
