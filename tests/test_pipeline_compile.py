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


def spanned_config(tmp_path, *lines) -> pathlib.Path:
    """pipeline.yaml with its demo source read as spans of arrivals/."""
    text = (REPO / "pipeline.yaml").read_text().replace(
        "root: demo_data/300w\n", f'root: "{tmp_path}/arrivals/{{SPAN}}"\n').replace(
        "boxes: [demo_data/300w/boxes.csv]", f'boxes: ["{tmp_path}/arrivals/{{SPAN}}/boxes.csv"]'
    ).replace("  eval_count: 12 ", "  eval_fraction: 0.2 ").replace(
        "augment:\n", f"augment:\n  mean_shape: {tmp_path}/mean_shape.json\n")
    path = tmp_path / "spans.yaml"
    path.write_text(text + "\n".join(lines) + "\n")
    return path


def test_the_kubeflow_spec_takes_the_span_as_a_runtime_parameter(tmp_path):
    out = tmp_path / "pipeline.json"
    assert cli.main(["compile", "--config", str(spanned_config(tmp_path)), "--output",
                     str(out), "--pipeline-root", "gs://bucket/root"]) == 0
    spec, tasks = _tasks(out)
    assert spec["root"]["inputDefinitions"]["parameters"]["span"] == {"type": "INT"}
    example_gen = tasks["LandmarkExampleGen"]["inputs"]["parameters"]["requested_span"]
    assert example_gen["componentInputParameter"] == "span"
    # no drift check there: it needs a custom resolver of the previous span's statistics
    assert "DriftCheck" not in tasks


def test_kubeflow_refuses_what_its_compiler_cannot_resolve(tmp_path, capsys):
    config = spanned_config(tmp_path)
    for override, key in [("data.range.rolling_window=3", "data.range.rolling_window"),
                          ("evaluator.evaluation_set=all_spans", "evaluator.evaluation_set")]:
        code = cli.main(["compile", "--config", str(config), "--output",
                         str(tmp_path / "p.json"), "--set", override])
        assert code == 2
        assert f"{key}: must be" in capsys.readouterr().err
