"""Resolves the span a run ingests, before TFX looks up its cache.

TFX's file-based ExampleGen does this in its driver: the span, version and
input fingerprint become execution properties, so a new span or a changed
folder is a new execution, and an unchanged one a cache hit. The launcher of
the local and Airflow runners runs this driver; the Kubeflow V2 runner runs
custom drivers of TFX's own ExampleGen only, so there the executor resolves
the span itself (executor.resolve_inputs) and the cache key is the requested
span, a runtime parameter.
"""
from __future__ import annotations

import copy
import json

from tfx.dsl.components.base import base_driver as legacy_driver
from tfx.orchestration import data_types_utils
from tfx.orchestration.portable import base_driver, data_types
from tfx.proto.orchestration import driver_output_pb2

from components.landmark_example_gen import spec
from facealign.core import spans


def resolve_inputs(exec_properties: dict) -> spans.Resolution:
    """The sources, span, version and fingerprint this execution reads."""
    return spans.resolve(json.loads(exec_properties[spec.SOURCES_KEY]),
                         int(exec_properties.get(spec.REQUESTED_SPAN_KEY, spans.LATEST)))


def resolution_of(exec_properties: dict) -> spans.Resolution:
    """What the driver resolved where the runner ran it; else (Kubeflow V2) resolved now."""
    if exec_properties.get(spec.SPAN_KEY) is None:
        return resolve_inputs(exec_properties)
    version = exec_properties.get(spec.VERSION_KEY)
    return spans.Resolution(json.loads(exec_properties[spec.SOURCES_KEY]),
                            int(exec_properties[spec.SPAN_KEY]),
                            None if version is None else int(version),
                            exec_properties[spec.FINGERPRINT_KEY])


def resolved_properties(resolution: spans.Resolution) -> dict:
    properties = {spec.SOURCES_KEY: json.dumps(resolution.sources, sort_keys=True),
                  spec.SPAN_KEY: resolution.span, spec.FINGERPRINT_KEY: resolution.fingerprint}
    if resolution.version is not None:
        properties[spec.VERSION_KEY] = resolution.version
    return properties


def label_examples(artifact, resolution: spans.Resolution) -> None:
    """Span and version on the Examples artifact (properties of TFX's Examples type), the
    fingerprint as TFX's ExampleGen records it."""
    artifact.span = resolution.span
    if resolution.version is not None:
        artifact.version = resolution.version
    artifact.set_string_custom_property(spec.FINGERPRINT_KEY, resolution.fingerprint)


class SpanDriver(legacy_driver.BaseDriver, base_driver.BaseDriver):
    """The portable launcher's custom driver for LandmarkExampleGen (a subclass of the legacy
    driver too, which TFX's components require of a DRIVER_CLASS, as its ExampleGen's is)."""

    def __init__(self, metadata_handle):
        legacy_driver.BaseDriver.__init__(self, metadata_handle)
        base_driver.BaseDriver.__init__(self, metadata_handle)

    def resolve_exec_properties(self, exec_properties: dict, pipeline_info,
                                component_info) -> dict:
        """The pre-IR launcher's (Airflow's) hook: its cache lookup and the executor see the
        resolved span, version and fingerprint, as with run()."""
        del pipeline_info, component_info
        resolution = resolve_inputs(exec_properties)
        _report(resolution)
        return {**exec_properties, **resolved_properties(resolution)}

    def run(self, execution_info: data_types.ExecutionInfo
            ) -> driver_output_pb2.DriverOutput:
        resolution = resolve_inputs(execution_info.exec_properties)
        result = driver_output_pb2.DriverOutput()
        for key, value in {**execution_info.exec_properties,
                           **resolved_properties(resolution)}.items():
            if value is not None:
                data_types_utils.set_metadata_value(result.exec_properties[key], value)
        for key, artifacts in execution_info.output_dict.items():
            for artifact in artifacts:
                labelled = copy.deepcopy(artifact)
                label_examples(labelled, resolution)
                result.output_artifacts[key].artifacts.append(labelled.mlmd_artifact)
        _report(resolution)
        return result


def _report(resolution: spans.Resolution) -> None:
    print(f"ExampleGen: span {resolution.span}"
          + (f", version {resolution.version}" if resolution.version is not None else "")
          + f" ({resolution.fingerprint})", flush=True)
