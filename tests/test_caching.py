"""TFX caching follows the data: a changed configuration key re-executes the
components that read it and those downstream of them, and nothing else.

One full run of the demo pipeline (the tiny settings of test_pipeline_e2e),
then one re-run per key class, each with one key changed from the full run's
configuration; MLMD says per node id which executions ran (COMPLETE) and
which were taken from the cache (CACHED). The re-runs that keep the trained
model come first: once another model is blessed, it becomes the baseline of
the first run's model and that Evaluator would rightly run again.

Resolver nodes (the baseline resolver, and the warm-start one when
configured) only query MLMD; TFX records them as COMPLETE on every run, so
they are listed apart, in brackets, and not counted as re-executions.
"""
import pytest
from test_pipeline_e2e import node_executions, run_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COMPLETE, CACHED = 3, 5
ALL = ("LandmarkExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Augment",
       "Trainer", "LandmarkEvaluator", "Pusher")
FROM_TRAINER = {"Trainer", "LandmarkEvaluator", "Pusher"}
CHANGES = {  # one changed key -> the components that must run again
    "evaluator.max_nme=99.0": {"LandmarkEvaluator", "Pusher"},
    "serving.model_name=facealign-renamed": {"Pusher"},
    "trainer.learning_rate=0.002": FROM_TRAINER,
    "model.dan.dropout=0.25": FROM_TRAINER,
    "augment.rotation_sigma_deg=15": {"Augment"} | FROM_TRAINER,
}


# One DAN stage: what re-executes depends on the keys, not on the cascade (half the
# Trainer's time in the four runs that train).
ONE_STAGE = "model.dan.stages=1"


def _states(tmp_path, before: int) -> dict[str, int]:
    return dict(node_executions(tmp_path)[before:])


@pytest.fixture(scope="module")
def reruns(tmp_path_factory):
    """{change: {node id: state}}, plus "(full run)", in the order they ran."""
    tmp_path = tmp_path_factory.mktemp("caching")
    run_pipeline(tmp_path, ONE_STAGE)
    table = {"(full run)": _states(tmp_path, 0)}
    for change in CHANGES:
        before = len(node_executions(tmp_path))
        run_pipeline(tmp_path, ONE_STAGE, change)
        table[change] = _states(tmp_path, before)
    lines = [f"{'changed key':<38} re-executed (COMPLETE)  [resolver nodes: state]"]
    for change, states in table.items():
        ran = [node for node in ALL if states.get(node) == COMPLETE]
        resolvers = ", ".join(f"{node}: {state}" for node, state in states.items()
                              if node not in ALL)
        lines.append(f"{change:<38} {', '.join(ran) or '-'}  [{resolvers}]")
    print("\n" + "\n".join(lines))
    return table, "\n".join(lines)


def test_the_full_run_executes_every_component(reruns):
    table, text = reruns
    assert {node: table["(full run)"].get(node) for node in ALL} == dict.fromkeys(ALL, COMPLETE), \
        text


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_key_re_executes_only_what_reads_it(reruns, change):
    table, text = reruns
    states = table[change]
    assert set(ALL) <= set(states), f"{change}: nodes missing from the run\n{text}"
    unexpected = {node: state for node, state in states.items()
                  if node in ALL and state not in (COMPLETE, CACHED)}
    assert not unexpected, f"{change}: {unexpected}\n{text}"
    ran = {node for node in ALL if states[node] == COMPLETE}
    assert ran == CHANGES[change], f"{change}: re-executed {sorted(ran)}\n{text}"
