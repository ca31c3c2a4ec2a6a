"""`facealign compile --target airflow`: the DAG file it writes, and a real run of that DAG by
Airflow's own dag.test() (SQLite, no scheduler) that trains and pushes the tiny demo model."""
import ast
import importlib.util
import json
import os
import pathlib
import sqlite3
import subprocess
import sys

import pytest

from facealign import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
# find_spec, not pytest.importorskip: importing airflow here would write an airflow.cfg into
# ~/airflow (its default AIRFLOW_HOME); only the subprocesses below import it, in tmp_path.
needs_airflow = pytest.mark.skipif(importlib.util.find_spec("airflow") is None,
                                   reason="Apache Airflow is not installed "
                                          "(pip install -e '.[airflow]', or make airflow)")

# Parses the DAG file the way the scheduler does (DagBag), runs it with dag.test() and writes
# what the test checks; exits 1 when the file does not import or a task fails.
RUN_DAG = """\
import json, sys
from airflow.models import DagBag

dag_file, result_file = sys.argv[1:]
bag = DagBag(dag_folder=dag_file, include_examples=False)
if bag.import_errors or len(bag.dags) != 1:
    sys.exit(f"DAG file not loaded: {bag.import_errors or list(bag.dags)}")
[dag] = bag.dags.values()
run = dag.test()
with open(result_file, "w") as f:
    json.dump({"dag_id": dag.dag_id, "task_ids": dag.task_ids, "run_id": run.run_id,
               "state": str(run.state)}, f)
sys.exit(0 if run.state == "success" else 1)
"""


def compile_args(dag_file, *overrides):
    args = ["compile", "--target", "airflow", "--config", str(REPO / "pipeline.yaml"),
            "--output", str(dag_file)]
    for item in overrides:
        args += ["--set", item]
    return args


def module_constants(path) -> dict:
    """The DAG file's top-level NAME = <literal> assignments (and the DAG config's keys)."""
    constants = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if isinstance(node.value, ast.Dict):
                constants[node.targets[0].id] = {
                    ast.literal_eval(key): value for key, value in
                    zip(node.value.keys, node.value.values)}
            else:
                try:
                    constants[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    pass  # a call: the pipeline and the DAG, built at parse time
    return constants


@needs_airflow
def test_the_dag_file_names_the_config_and_its_overrides(tmp_path, capsys):
    dag_file = tmp_path / "dags" / "facealign_demo.py"
    overrides = ["trainer.batch_size=16", "pipeline.root=/data/runs"]
    assert cli.main([*compile_args(dag_file, *overrides), "--schedule", "@daily"]) == 0
    assert str(dag_file) in capsys.readouterr().out
    compile(dag_file.read_text(), str(dag_file), "exec")   # valid Python
    constants = module_constants(dag_file)
    assert constants["CONFIG"] == str(REPO / "pipeline.yaml")
    assert constants["OVERRIDES"] == overrides
    dag_config = constants["airflow_dag_config"]
    assert ast.literal_eval(dag_config["schedule"]) == "@daily"
    assert ast.literal_eval(dag_config["catchup"]) is False
    assert ast.literal_eval(dag_config["max_active_runs"]) == 1   # scheduled runs queue


def test_without_airflow_the_command_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "airflow", None)   # `import airflow` fails, find_spec: None
    dag_file = tmp_path / "facealign_demo.py"
    assert cli.main(compile_args(dag_file)) == 2
    assert capsys.readouterr().err.strip() == (
        "facealign compile: error: --target airflow needs Apache Airflow: "
        "pip install -e '.[airflow]'")
    assert not dag_file.exists()


def test_a_dag_file_must_end_in_py(tmp_path, capsys):
    """Airflow skips other files in its dags folder: the DAG would silently never appear."""
    assert cli.main(compile_args(tmp_path / "facealign_demo.txt")) == 2
    assert "Airflow reads DAGs only from .py files" in capsys.readouterr().err


def component_executions(root) -> dict:
    """{component id: [state, ...]} from the pipeline's MLMD store.

    Under Airflow TFX runs its pre-IR launchers: executions carry a component_id property
    (no "node" contexts) and a "component_run" context named "<pipeline>.<run id>.<id>".
    States: 3 COMPLETE, 5 CACHED (what those launchers record for a Resolver).
    """
    with sqlite3.connect(root / "metadata.sqlite") as db:
        rows = db.execute(
            "SELECT p.string_value, e.last_known_state FROM Execution e "
            "JOIN ExecutionProperty p ON p.execution_id = e.id AND p.name = 'component_id' "
            "ORDER BY e.id").fetchall()
        contexts = [name for (name,) in db.execute(
            "SELECT c.name FROM Context c JOIN Type t ON t.id = c.type_id "
            "WHERE t.name = 'component_run'")]
    executions: dict = {}
    for component_id, state in rows:
        executions.setdefault(component_id, []).append(state)
    return executions, contexts


@pytest.mark.e2e
@pytest.mark.slow
@needs_airflow
def test_airflow_runs_the_compiled_dag_and_pushes_a_model(tmp_path):
    from tests.test_pipeline_e2e import IN_MEMORY, TINY

    root, serving = tmp_path / "root", tmp_path / "serving"
    dag_file = tmp_path / "dags" / "facealign_demo.py"
    assert cli.main(compile_args(dag_file, f"pipeline.root={root}",
                                 f"serving.base_dir={serving}", *TINY, IN_MEMORY)) == 0

    airflow_home = tmp_path / "airflow"
    airflow_home.mkdir()
    env = {**os.environ, "AIRFLOW_HOME": str(airflow_home),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
           # Parsing imports TensorFlow and builds the pipeline: more than the default 30 s
           # on a busy machine.
           "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
           # This checkout's facealign, as an installed one would be; the cwd is tmp_path,
           # so the DAG file cannot lean on the repository's.
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

    def airflow(*args, timeout):
        result = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                                cwd=tmp_path, env=env, timeout=timeout)
        if result.returncode != 0:
            pytest.fail(f"{args[:3]} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
        return result

    airflow("-m", "airflow", "db", "migrate", timeout=300)
    (tmp_path / "run_dag.py").write_text(RUN_DAG)
    result_file = tmp_path / "result.json"
    run = airflow(str(tmp_path / "run_dag.py"), str(dag_file), str(result_file), timeout=900)
    assert "Evaluator: BLESSED" in run.stdout + run.stderr

    result = json.loads(result_file.read_text())
    assert result["dag_id"] == "facealign-demo" and result["state"] == "success"
    [version] = [p for p in (serving / "facealign-demo").iterdir()]
    assert (version / "saved_model.pb").is_file()

    executions, contexts = component_executions(root)
    assert set(executions) == set(result["task_ids"])   # every task recorded its execution
    for component_id, states in executions.items():
        expected = 5 if component_id.startswith("latest_blessed_model_resolver") else 3
        assert states == [expected], f"{component_id}: {states}"
    # The executions belong to the Airflow run, not to some other runner's.
    assert sorted(contexts) == sorted(f"facealign-demo.{result['run_id']}.{task_id}"
                                      for task_id in result["task_ids"])
