"""Resolver strategies over the artifacts of earlier runs, chosen by span.

TFX's ExampleGen ingests one span a run; what a run needs from earlier ones
(the last spans to train on, the same evaluation faces every run, the
previous span's statistics) comes from MLMD through these strategies. The
Kubeflow V2 compiler translates only TFX's LatestArtifactStrategy and
LatestBlessedModelStrategy, so they are used by the local and Airflow
runners only (pipeline/pipeline.py says what Kubeflow does instead).
"""
from __future__ import annotations

from tfx.dsl.components.common import resolver

from components.span_resolver.spec import ARTIFACTS_KEY


def newest_per_span(artifacts) -> dict:
    """{span: its newest artifact} (the latest version, or the latest re-ingestion)."""
    newest = {}
    for artifact in sorted(artifacts, key=lambda a: (_version(a), a.id)):
        newest[artifact.span] = artifact
    return newest


def _version(artifact) -> int:
    return artifact.version if "version" in artifact.mlmd_artifact.properties else 0


def rolling_spans(artifacts, window: int) -> list:
    """The newest artifact of each of the `window` largest spans, oldest span first."""
    newest = newest_per_span(artifacts)
    return [newest[span] for span in sorted(newest)[-window:]]


def evaluation_spans(artifacts, pinned_span: int | None) -> list:
    """The newest artifact of `pinned_span`, or of every span when None."""
    newest = newest_per_span(artifacts)
    if pinned_span is None:
        return [newest[span] for span in sorted(newest)]
    return [newest[pinned_span]] if pinned_span in newest else []


class RollingSpansStrategy(resolver.ResolverStrategy):
    """`artifacts`: the newest of each of the last `window` spans (TFX's RollingRange)."""

    def __init__(self, window: int = 1):
        self._window = int(window)

    def resolve_artifacts(self, store, input_dict):
        return {ARTIFACTS_KEY: rolling_spans(input_dict.get(ARTIFACTS_KEY, []), self._window)}


class EvaluationSpansStrategy(resolver.ResolverStrategy):
    """`artifacts`: the fixed evaluation set's examples (evaluator.evaluation_set)."""

    def __init__(self, pinned_span: int = -1):
        self._pinned = None if int(pinned_span) < 0 else int(pinned_span)

    def resolve_artifacts(self, store, input_dict):
        return {ARTIFACTS_KEY: evaluation_spans(input_dict.get(ARTIFACTS_KEY, []), self._pinned)}


class EveryArtifactStrategy(resolver.ResolverStrategy):
    """`artifacts`: all of them; the consumer chooses (DriftCheck: the previous span)."""

    def resolve_artifacts(self, store, input_dict):
        return {ARTIFACTS_KEY: list(input_dict.get(ARTIFACTS_KEY, []))}


class EarliestArtifactStrategy(resolver.ResolverStrategy):
    """`artifacts`: the first one produced (the first span's schema, kept for every span)."""

    def resolve_artifacts(self, store, input_dict):
        artifacts = sorted(input_dict.get(ARTIFACTS_KEY, []), key=lambda a: a.id)
        return {ARTIFACTS_KEY: artifacts[:1]}
