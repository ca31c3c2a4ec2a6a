"""The same pipeline compiles for Kubeflow Pipelines v2 / Vertex AI."""
import json
import pathlib

from facealign import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
COMPONENTS = {"LandmarkExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Augment",
              "Trainer", "LandmarkEvaluator", "Pusher"}


def _tasks(path):
    spec = json.loads(path.read_text())["pipelineSpec"]
    return spec, spec["root"]["dag"]["tasks"]


def test_compiles_with_every_component(tmp_path, capsys):
    out = tmp_path / "spec" / "pipeline.json"
    assert cli.main(["compile", "--config", str(REPO / "pipeline.yaml"), "--output", str(out),
                     "--image", "registry.example/facealign:1", "--pipeline-root",
                     "gs://bucket/root"]) == 0
    assert str(out) in capsys.readouterr().out
    spec, tasks = _tasks(out)
    assert COMPONENTS <= set(tasks)
    assert any(name.startswith("latest_blessed_model_resolver") for name in tasks)
    assert spec["pipelineInfo"]["name"] == "facealign-demo"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()
              if "container" in e}
    assert images == {"registry.example/facealign:1"}
    # The Trainer consumes the Augment outputs, the Pusher the Evaluator's blessing.
    trainer_inputs = tasks["Trainer"]["inputs"]["artifacts"]
    assert trainer_inputs["examples"]["taskOutputArtifact"]["producerTask"] == "Augment"
    pusher_inputs = tasks["Pusher"]["inputs"]["artifacts"]
    assert pusher_inputs["model_blessing"]["taskOutputArtifact"]["producerTask"] == \
        "LandmarkEvaluator"


def test_without_baseline_comparison_no_resolver(tmp_path):
    out = tmp_path / "pipeline.json"
    assert cli.main(["compile", "--config", str(REPO / "pipeline.yaml"), "--output", str(out),
                     "--set", "evaluator.compare_to_baseline=false"]) == 0
    _, tasks = _tasks(out)
    assert COMPONENTS <= set(tasks)
    assert not any(name.startswith("latest_blessed") for name in tasks)
