"""A run killed inside any component completes when started again and pushes no version twice
(facealign/core/faults.py kills the process the hard way, SIGKILL, where FACEALIGN_FAULT says)."""
import os
import pathlib
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
from test_component_pusher import fake_saved_model
from test_pipeline_e2e import pipeline_args, versions

from components.atomic_pusher import push
from facealign.core import faults
from facealign.core.model_format import ModelMetadata

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNNING, COMPLETE, CACHED = 2, 3, 5
# In the order they run: each run of the chain dies in the next one.
NODES = ["LandmarkExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Augment",
         "Trainer", "LandmarkEvaluator", "Pusher"]
FAST = ["model.dan.stages=1", "trainer.steps_per_epoch=2"]


# --- the hook -------------------------------------------------------------------------------

def _reach(fault: str | None, node: str, point: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != faults.FAULT_ENV}
    if fault is not None:
        env[faults.FAULT_ENV] = fault
    code = (f"from facealign.core import faults; faults.reached({node!r}, {point!r}); "
            "print('alive')")
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("fault, dies", [
    (None, False), ("Augment", True), ("Augment:after_crops", True),
    ("Augment:after_outputs", False), ("Trainer", False)])
def test_the_process_dies_only_where_the_fault_names(fault, dies):
    result = _reach(fault, "Augment", "after_crops")
    if dies:
        assert result.returncode == -signal.SIGKILL and result.stdout == ""
        assert "FACEALIGN_FAULT: killing process" in result.stderr
        assert "in Augment at after_crops" in result.stderr
    else:
        assert result.returncode == 0 and result.stdout == "alive\n"


def test_an_executor_knows_its_node_from_its_context():
    context = SimpleNamespace(pipeline_node=SimpleNamespace(node_info=SimpleNamespace(id="Pusher")))
    assert faults.node_id(context) == "Pusher"
    assert faults.node_id(None) is None   # an executor called by a unit test


# --- the Pusher, killed between its version and MLMD ----------------------------------------

def test_a_model_pushed_before_is_not_pushed_again(tmp_path):
    model = fake_saved_model(tmp_path / "model")
    other = fake_saved_model(tmp_path / "other")     # same graph, other variables
    base = str(tmp_path / "serving")
    first, path = push.push_version(str(model), base, {"metrics": {"nme": 1.0}})
    assert ModelMetadata.read(path).evaluation == {"metrics": {"nme": 1.0}}
    # the push added its evaluation to the metadata: still the same model
    assert push.push_version(str(model), base) == (first, path)
    second, _ = push.push_version(str(other), base)
    assert int(second) > int(first)
    assert push.push_version(str(model), base)[0] == first
    assert sorted(os.listdir(base)) == sorted([first, second])


def test_a_version_without_its_graph_is_not_the_model(tmp_path):
    """On an object store saved_model.pb is copied last: a version without it is partial."""
    model = fake_saved_model(tmp_path / "model")
    base = tmp_path / "serving"
    partial = fake_saved_model(base / "100")
    (partial / "variables" / "variables.data-00000-of-00001").write_bytes(
        (model / "variables" / "variables.data-00000-of-00001").read_bytes())
    (partial / "saved_model.pb").unlink()
    assert push.version_holding(str(model), str(base)) is None
    (partial / "saved_model.pb").write_bytes((model / "saved_model.pb").read_bytes())
    assert push.version_holding(str(model), str(base)) == "100"


# --- the pipeline, killed in each component in turn -----------------------------------------

def _executions(root: pathlib.Path) -> list[tuple[int, str, str, int]]:
    """(execution id, node id, execution type, state) of every node's execution: opening
    the store also shows it survived the kills."""
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(str(root / "metadata.sqlite")))
    types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    return sorted((execution.id, context.name.split(".", 1)[-1], types[execution.type_id],
                   execution.last_known_state)
                  for context in store.get_contexts_by_type("node")
                  for execution in store.get_executions_by_context(context.id))


def _run(tmp_path, fault: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != faults.FAULT_ENV}
    if fault:
        env[faults.FAULT_ENV] = fault
    return subprocess.run(pipeline_args(tmp_path, *FAST), env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)


def _left_behind(root: pathlib.Path, node: str, execution_id: int) -> str:
    """The killed execution's output folders and how many files each holds."""
    described = []
    for folder in sorted(root.glob(f"{node}/*/{execution_id}")):
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        described.append(f"{folder.parent.name}/{execution_id}: {len(files)} files "
                         f"({', '.join(files[:4])}{', ...' if len(files) > 4 else ''})")
    return "; ".join(described) or "no output folder"


@pytest.mark.e2e
@pytest.mark.slow
def test_a_run_killed_in_each_component_completes_and_pushes_once(tmp_path):
    root = tmp_path / "root"
    report = []
    for step, node in enumerate(NODES):
        before = max((row[0] for row in _executions(root)), default=0) if step else 0
        result = _run(tmp_path, node)
        assert result.returncode == -signal.SIGKILL, (node, result.stderr[-3000:])
        assert f" in {node} at " in result.stderr
        new = {name: (eid, state) for eid, name, kind, state in _executions(root)
               if eid > before and kind != "Resolver"}
        # one component further each time: the one killed last ran again, this one died
        assert new[node][1] == RUNNING
        if step:
            assert new[NODES[step - 1]][1] == COMPLETE
        assert all(new[earlier][1] == CACHED for earlier in NODES[:max(step - 1, 0)])
        # a version appears only when the Pusher dies after renaming it into place
        assert len(versions(tmp_path)) == (1 if node == "Pusher" else 0)
        report.append(f"{node}: {_left_behind(root, node, new[node][0])}")

    [killed_push] = versions(tmp_path)
    final = _run(tmp_path, None)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"is already served as version {killed_push} (" in final.stdout
    assert "; not pushed again" in final.stdout
    assert versions(tmp_path) == [killed_push]

    before = max(row[0] for row in _executions(root))
    further = _run(tmp_path, None)
    assert further.returncode == 0, further.stderr[-3000:]
    rerun = [(node, state) for eid, node, kind, state in _executions(root)
             if eid > before and kind != "Resolver"]
    assert sorted(node for node, _ in rerun) == sorted(NODES)
    assert all(state == CACHED for _, state in rerun), rerun
    assert versions(tmp_path) == [killed_push]
    # TFX never revisits the killed executions: each kill left one RUNNING behind
    stale = [node for _, node, _, state in _executions(root) if state == RUNNING]
    assert sorted(stale) == sorted(NODES)
    print("\n".join(["left behind by each kill:", *report]))
