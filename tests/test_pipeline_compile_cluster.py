"""trainer.cluster: the compiled Kubeflow V2 / Vertex AI spec runs the Trainer as a Vertex AI
custom job (TFX's Google Cloud Trainer) with the configured worker pools. Nothing reaches
Google Cloud: the spec is read only."""
import json
import pathlib

import pytest

from facealign import cli
from facealign.core import config
from facealign.core.config import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
IMAGE = "europe-docker.pkg.dev/my-project/images/facealign:1"
CLUSTER = ["trainer.cluster.project=my-project", "trainer.cluster.region=europe-west4",
           "trainer.cluster.machine_type=n1-standard-16",
           "trainer.cluster.accelerator_type=NVIDIA_TESLA_T4",
           "trainer.cluster.accelerator_count=2", "trainer.cluster.replica_count=3"]


def _compile(tmp_path, *overrides):
    out = tmp_path / "pipeline.json"
    args = ["compile", "--config", str(REPO / "pipeline.yaml"), "--output", str(out),
            "--image", IMAGE, "--pipeline-root", "gs://bucket/root"]
    for item in overrides:
        args += ["--set", item]
    assert cli.main(args) == 0
    spec = json.loads(out.read_text())["pipelineSpec"]
    trainer = spec["root"]["dag"]["tasks"]["Trainer"]
    custom_config = json.loads(trainer["inputs"]["parameters"]["custom_config"]["runtimeValue"]
                               ["constantValue"]["stringValue"])
    executor = spec["deploymentSpec"]["executors"][trainer["componentRef"]["name"]
                                                   .replace("comp-", "") + "_executor"]
    return custom_config, executor["container"]


def test_a_cluster_runs_the_trainer_as_a_vertex_job_with_its_worker_pools(tmp_path):
    custom_config, container = _compile(tmp_path, *CLUSTER)
    args = container["args"]
    assert args[args.index("--executor_class_path") + 1] == \
        "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"
    assert custom_config["ai_platform_enable_vertex"] is True
    assert custom_config["ai_platform_vertex_region"] == "europe-west4"
    job = custom_config["ai_platform_training_args"]
    assert job["project"] == "my-project"
    machine = {"machine_type": "n1-standard-16", "accelerator_type": "NVIDIA_TESLA_T4",
               "accelerator_count": 2}
    # pool 0: the chief; pool 1: the other workers. Vertex sets TF_CONFIG on every replica.
    assert job["job_spec"]["worker_pool_specs"] == [
        {"machine_spec": machine, "replica_count": 1, "container_spec": {"image_uri": IMAGE}},
        {"machine_spec": machine, "replica_count": 2, "container_spec": {"image_uri": IMAGE}}]
    # run_fn still reads its configuration, the cluster and the strategy included
    trainer_cfg = custom_config["facealign"]["trainer"]
    assert trainer_cfg["distribution"] == "auto" and trainer_cfg["cluster"]["replica_count"] == 3


def test_one_replica_without_accelerators_is_one_pool(tmp_path):
    custom_config, _ = _compile(tmp_path, "trainer.cluster.project=my-project")
    assert custom_config["ai_platform_training_args"]["job_spec"]["worker_pool_specs"] == [
        {"machine_spec": {"machine_type": "n1-standard-8"}, "replica_count": 1,
         "container_spec": {"image_uri": IMAGE}}]
    assert custom_config["ai_platform_vertex_region"] == "us-central1"


def test_without_a_cluster_the_trainer_is_the_standard_one(tmp_path):
    custom_config, container = _compile(tmp_path)
    args = container["args"]
    assert args[args.index("--executor_class_path") + 1] == \
        "tfx.components.trainer.executor.GenericExecutor"
    assert set(custom_config) == {"facealign"}


@pytest.mark.parametrize("overrides, message", [
    (["trainer.cluster.replica_count=2"], r"trainer\.cluster\.project: required key is missing"),
    (CLUSTER + ["trainer.cluster.accelerator_count=0"],
     r"trainer\.cluster\.accelerator_count: give accelerator_type and a positive "
     r"accelerator_count together"),
    (CLUSTER + ["trainer.cluster.accelerator_type=T4"],
     r"trainer\.cluster\.accelerator_type: String should match pattern"),
    (CLUSTER + ["trainer.cluster.replica_count=0"],
     r"trainer\.cluster\.replica_count: Input should be greater than or equal to 1"),
    (CLUSTER + ["trainer.distribution=none"],
     r"trainer\.distribution: is none, but trainer\.cluster\.replica_count is 3: the replicas "
     r"would each train alone"),
    (CLUSTER + ["trainer.cluster.gpus=2"], r"trainer\.cluster\.gpus: unknown key"),
])
def test_cluster_settings_are_validated(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.load(REPO / "pipeline.yaml", overrides)
