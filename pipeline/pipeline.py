"""Builds the facealign `tfx.dsl.Pipeline` from a validated configuration.

Orchestrator-neutral (penguin-template style): the local runner and the
Kubeflow V2 compiler both call `create_pipeline`, and nothing here depends on
where it will run.
"""
from __future__ import annotations

from tfx import v1 as tfx

from components.atomic_pusher.component import AtomicPusher
from components.augment import spec as augment_spec
from components.augment.component import Augment
from components.baseline_resolver import spec as resolver_spec
from components.baseline_resolver.strategy import LatestBlessedOtherModelStrategy
from components.drift_check import spec as drift_spec
from components.drift_check.component import DriftCheck
from components.landmark_evaluator import spec as evaluator_spec
from components.landmark_evaluator.component import LandmarkEvaluator
from components.landmark_example_gen import spec as example_gen_spec
from components.landmark_example_gen.component import LandmarkExampleGen
from components.span_resolver import spec as span_spec
from components.span_resolver import strategy as span_strategy
from facealign.core import config as config_lib
from facealign.core import spans, splits
from facealign.core.config import ClusterSection, Config

RUN_FN = "trainer.run.run_fn"
TUNER_FN = "trainer.tuning.tuner_fn"


def evaluation_split(cfg: Config) -> str:
    """The held-out test split when a test source is configured, else eval."""
    return (splits.TEST if any(s.split == splits.TEST for s in cfg.data.sources)
            else splits.EVAL)


def baseline_resolver(trainer, kubeflow: bool):
    """The latest blessed model to compare a new one with.

    Locally the candidate is excluded (LatestBlessedOtherModelStrategy), so an
    unchanged re-run is fully cached. The Kubeflow V2 compiler translates only
    TFX's own strategies into its queries, so there TFX's
    LatestBlessedModelStrategy is used; caching on Vertex is the service's own.
    """
    channels = {
        resolver_spec.MODEL_KEY: tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        resolver_spec.MODEL_BLESSING_KEY: tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ModelBlessing)}
    if kubeflow:
        strategy = tfx.dsl.experimental.LatestBlessedModelStrategy
    else:
        strategy = LatestBlessedOtherModelStrategy
        channels[resolver_spec.CANDIDATE_KEY] = trainer.outputs["model"]
    return tfx.dsl.Resolver(strategy_class=strategy, **channels).with_id(resolver_spec.NODE_ID)


def warm_start_resolver(cfg: Config):
    """The latest blessed model the Trainer continues from (trainer.warm_start: latest_blessed).

    TFX's own strategy: the candidate does not exist yet when the Trainer starts.
    """
    if cfg.trainer.warm_start != config_lib.LATEST_BLESSED:
        return None
    return tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        **{resolver_spec.MODEL_KEY: tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
           resolver_spec.MODEL_BLESSING_KEY: tfx.dsl.Channel(
               type=tfx.types.standard_artifacts.ModelBlessing)},
    ).with_id("warm_start_model_resolver")


def spanned(cfg: Config) -> bool:
    """Whether a source arrives in spans ({SPAN} in its root)."""
    return any(spans.is_spanned(s) for s in cfg.source_entries())


def check_kubeflow(cfg: Config) -> None:
    """What the Kubeflow V2 compiler cannot express, refused with the key to change.

    It runs custom drivers of TFX's own ExampleGen only, and translates only TFX's
    LatestArtifactStrategy and LatestBlessedModelStrategy: a rolling window of spans and
    a fixed evaluation set need custom resolvers, and the drift check the previous span's
    statistics. There each run reads the span its `span` runtime parameter names.
    """
    if cfg.data.range.rolling_window > 1:
        raise config_lib.ConfigError("data.range.rolling_window: must be 1 for Kubeflow V2 "
                                     "(its compiler has no resolver for a rolling range)")
    if cfg.evaluator.evaluation_set != "this_run":
        raise config_lib.ConfigError("evaluator.evaluation_set: must be this_run for Kubeflow "
                                     "V2 (its compiler has no resolver for a fixed set)")


def span_resolver(node_id: str, producer, output_key: str, strategy, **settings):
    """A resolver over every artifact `producer` wrote under output_key in this pipeline, in
    any run (the producer's output channel would give this run's only), after the producer."""
    every_run = tfx.dsl.Channel(type=producer.outputs[output_key].type,
                                producer_component_id=producer.id, output_key=output_key)
    node = tfx.dsl.Resolver(strategy_class=strategy, config=settings,
                            **{span_spec.ARTIFACTS_KEY: every_run}).with_id(node_id)
    node.add_upstream_node(producer)
    return node


def vertex_training_config(cluster: ClusterSection, image: str | None) -> dict:
    """trainer.cluster as the custom_config of TFX's Google Cloud Trainer (a Vertex AI job).

    Worker pool 0 is the chief, pool 1 the other replica_count - 1 workers, alike: the
    machine type, the accelerators and the image (with facealign installed; the executor
    sets the command). Vertex sets TF_CONFIG on every replica, so `trainer.distribution:
    auto` trains them with MultiWorkerMirroredStrategy (trainer/distribution.py).
    """
    if not image:
        raise ValueError("trainer.cluster needs the image its replicas run (compile --image)")
    vertex = tfx.extensions.google_cloud_ai_platform
    machine = {"machine_type": cluster.machine_type}
    if cluster.accelerator_type:
        machine.update(accelerator_type=cluster.accelerator_type,
                       accelerator_count=cluster.accelerator_count)
    pools = [{"machine_spec": dict(machine), "replica_count": count,
              "container_spec": {"image_uri": image}}
             for count in (1, cluster.replica_count - 1) if count > 0]
    return {vertex.TRAINING_ARGS_KEY: {"project": cluster.project,
                                       "job_spec": {"worker_pool_specs": pools}},
            vertex.ENABLE_VERTEX_KEY: True,
            vertex.VERTEX_REGION_KEY: cluster.region}


def create_components(cfg: Config, kubeflow: bool = False,
                      trainer_image: str | None = None) -> list:
    """The pipeline's components; kubeflow with trainer.cluster: the Trainer runs on Vertex AI
    in trainer_image."""
    if kubeflow:
        check_kubeflow(cfg)
    # The span: data.range.span here; on Kubeflow a runtime parameter of each run.
    requested_span = (tfx.dsl.experimental.RuntimeParameter(
        name="span", ptype=int, default=cfg.data.range.span) if kubeflow
        else cfg.data.range.span)
    example_gen = LandmarkExampleGen(sources=cfg.source_entries(), eval_count=cfg.data.eval_count,
                                     eval_fraction=cfg.data.eval_fraction, seed=cfg.data.seed,
                                     on_error=cfg.data.on_error, requested_span=requested_span,
                                     train_fraction=cfg.data.train_fraction)
    raw_examples = example_gen.outputs[example_gen_spec.EXAMPLES_KEY]
    statistics_gen = tfx.components.StatisticsGen(examples=raw_examples)
    statistics = statistics_gen.outputs["statistics"]
    # The schema is inferred from the training split only, so eval and test
    # are validated against what the model will be trained on; with spans, from the first
    # span's, kept for every later one (span_strategy.EarliestArtifactStrategy).
    schema_gen = tfx.components.SchemaGen(statistics=statistics, infer_feature_shape=True,
                                          exclude_splits=["eval", "test"])
    schema = schema_gen.outputs["schema"]
    with_spans = spanned(cfg) and not kubeflow
    first_schema = span_resolver(span_spec.FIRST_SCHEMA_ID, schema_gen, "schema",
                                 span_strategy.EarliestArtifactStrategy) if with_spans else None
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics,
        schema=first_schema.outputs[span_spec.ARTIFACTS_KEY] if with_spans else schema)
    # With spans: this span against the previous one (validation.drift), before Augment.
    earlier_statistics = drift = None
    if with_spans:
        earlier_statistics = span_resolver(span_spec.EARLIER_STATISTICS_ID, statistics_gen,
                                           "statistics", span_strategy.EveryArtifactStrategy)
        drift = DriftCheck(statistics=statistics, thresholds=cfg.validation.drift,
                           accept_drift=cfg.validation.accept_drift,
                           earlier_statistics=earlier_statistics.outputs[span_spec.ARTIFACTS_KEY])
    augment = Augment(examples=raw_examples, settings=cfg.augment,
                      anomalies=example_validator.outputs["anomalies"],
                      mean_shape_file=(str(cfg.resolve(cfg.augment.mean_shape))
                                       if cfg.augment.mean_shape else None),
                      drift=drift.outputs[drift_spec.DRIFT_KEY] if drift else None)
    crops = augment.outputs[augment_spec.CANONICAL_EXAMPLES_KEY]
    # The Trainer's examples: this span's crops, or those of the last spans (each cropped
    # once, in the run that ingested it).
    training_spans = span_resolver(
        span_spec.TRAINING_SPANS_ID, augment, augment_spec.CANONICAL_EXAMPLES_KEY,
        span_strategy.RollingSpansStrategy,
        window=cfg.data.range.rolling_window) if cfg.data.range.rolling_window > 1 else None
    train_examples = training_spans.outputs[span_spec.ARTIFACTS_KEY] if training_spans else crops
    # The Evaluator's faces: this run's held-out faces, or a set fixed across spans.
    evaluation_spans = None
    if cfg.evaluator.evaluation_set != "this_run":
        evaluation_spans = span_resolver(
            span_spec.EVALUATION_SPANS_ID, example_gen, example_gen_spec.EXAMPLES_KEY,
            span_strategy.EvaluationSpansStrategy,
            pinned_span=(cfg.evaluator.pinned_span if cfg.evaluator.pinned_span is not None
                         else -1))
    evaluation_examples = (evaluation_spans.outputs[span_spec.ARTIFACTS_KEY]
                           if evaluation_spans else raw_examples)
    # tuner.enabled: a KerasTuner sweep (trainer/tuning.py) on the same data; the
    # Trainer then trains with its best hyperparameters (trainer/run.py).
    tuner = tfx.components.Tuner(
        tuner_fn=TUNER_FN,
        examples=augment.outputs[augment_spec.CANONICAL_EXAMPLES_KEY],
        transform_graph=augment.outputs[augment_spec.CANONICAL_FRAME_KEY],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=config_lib.custom_config(cfg, config_lib.TUNER_SECTIONS)
    ) if cfg.tuner.enabled else None
    warm_start = warm_start_resolver(cfg)
    trainer_args = dict(
        run_fn=RUN_FN,
        examples=train_examples,
        transform_graph=augment.outputs[augment_spec.CANONICAL_FRAME_KEY],
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        base_model=warm_start.outputs["model"] if warm_start else None,
        custom_config=config_lib.custom_config(cfg, config_lib.TRAINER_SECTIONS))
    if kubeflow and cfg.trainer.cluster is not None:   # the Trainer as a Vertex AI custom job
        trainer_args["custom_config"].update(
            vertex_training_config(cfg.trainer.cluster, trainer_image))
        trainer = tfx.extensions.google_cloud_ai_platform.Trainer(**trainer_args)
    else:
        trainer = tfx.components.Trainer(**trainer_args)
    baseline = baseline_resolver(trainer, kubeflow)
    # Scored through the serving signature on the held-out raw faces (photo + detector
    # box), as a TF Serving client calls the model; not on Augment's crops.
    evaluator = LandmarkEvaluator(
        examples=evaluation_examples, model=trainer.outputs["model"],
        baseline_model=(baseline.outputs[resolver_spec.MODEL_KEY]
                        if cfg.evaluator.compare_to_baseline else None),
        split=evaluation_split(cfg), max_nme=cfg.evaluator.max_nme,
        failure_threshold=cfg.evaluator.failure_threshold,
        tolerance_absolute=cfg.evaluator.tolerance.absolute,
        tolerance_relative=cfg.evaluator.tolerance.relative)
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs[evaluator_spec.BLESSING_KEY],
        base_directory=str(cfg.resolve(cfg.serving.base_dir) / cfg.serving.model_name))
    # In the order they run; the optional ones (None) where they sit in that order.
    nodes = [example_gen, statistics_gen, schema_gen, first_schema, example_validator,
             earlier_statistics, drift, augment, training_spans, tuner, warm_start, trainer,
             baseline if cfg.evaluator.compare_to_baseline else None, evaluation_spans,
             evaluator, pusher]
    return [node for node in nodes if node is not None]


def create_pipeline(cfg: Config, *, pipeline_root: str | None = None,
                    metadata_connection_config=None,
                    beam_pipeline_args: list[str] | None = None,
                    kubeflow: bool = False, trainer_image: str | None = None) -> tfx.dsl.Pipeline:
    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline.name,
        pipeline_root=pipeline_root or str(cfg.resolve(cfg.pipeline.root)),
        components=create_components(cfg, kubeflow, trainer_image),
        enable_cache=cfg.pipeline.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args if beam_pipeline_args is not None
        else list(cfg.beam.args))
