"""Fault injection: kill the pipeline process inside a named component, as a real kill would.

Set FACEALIGN_FAULT to a pipeline node id (`Augment`, `StatisticsGen`, `Pusher`...),
optionally with a point (`Augment:after_outputs`), and the process sends itself SIGKILL
when it gets there: no cleanup, no exception handlers, MLMD left with a RUNNING execution
and the outputs as far as they were written. tests/test_faults.py uses it to show that
a run started again completes and pushes no version twice.

The points: our executors call `reached` at one place where their outputs are partly
written (each executor names its point); pipeline/runners.run_local adds `after_outputs`
to the named node (any executor, TFX's own too): its Do returned, MLMD not yet told. A
node id without a point stops at the first point the node reaches. No TensorFlow here.
"""
from __future__ import annotations

import functools
import os
import signal
import sys

FAULT_ENV = "FACEALIGN_FAULT"
AFTER_OUTPUTS = "after_outputs"


def target() -> tuple[str, str | None] | None:
    """(node id, point or None) named by FACEALIGN_FAULT, or None when it is unset."""
    value = os.environ.get(FAULT_ENV, "").strip()
    if not value:
        return None
    node, _, point = value.partition(":")
    return node, point or None


def node_id(where) -> str | None:
    """The node id of `where`: a string, or an executor's context (TFX's
    BaseExecutor.Context); None for an executor called outside a pipeline (unit tests)."""
    if where is None or isinstance(where, str):
        return where
    node = getattr(where, "pipeline_node", None)
    return node.node_info.id if node is not None else None


def reached(where, point: str) -> None:
    """Kills this process with SIGKILL when FACEALIGN_FAULT names this node (and point)."""
    wanted = target()
    if wanted is None:
        return
    node = node_id(where)
    if node != wanted[0] or wanted[1] not in (None, point):
        return
    print(f"{FAULT_ENV}: killing process {os.getpid()} in {node} at {point}",
          file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after_do(executor_class, node: str) -> None:
    """Makes executor_class.Do reach AFTER_OUTPUTS for `node` once the original Do returned:
    the process dies before the launcher publishes the execution to MLMD. Patches the
    class in this process (LocalDagRunner runs executors in-process)."""
    original = executor_class.Do
    if getattr(original, "_facealign_fault", False):
        return

    @functools.wraps(original)
    def do_then_maybe_die(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        reached(node_id(getattr(self, "_context", None)) or node, AFTER_OUTPUTS)
        return result

    do_then_maybe_die._facealign_fault = True
    executor_class.Do = do_then_maybe_die
