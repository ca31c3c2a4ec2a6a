"""Augment: a custom Beam TFX component (spec, executor) in the tfx-addons style."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.augment import executor


class AugmentSpec(types.ComponentSpec):
    PARAMETERS = {
        "image_size": ExecutionParameter(type=int),
        "face_fraction": ExecutionParameter(type=float),
        "copies": ExecutionParameter(type=int),
        "mirror": ExecutionParameter(type=int),
        "translation_sigma": ExecutionParameter(type=float),
        "rotation_sigma_deg": ExecutionParameter(type=float),
        "scale_sigma": ExecutionParameter(type=float),
        "seed": ExecutionParameter(type=int),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True),
    }
    OUTPUTS = {
        "canonical_examples": ChannelParameter(type=standard_artifacts.Examples),
        # S0 and pixel statistics; typed TransformGraph so the standard Trainer
        # hands it to run_fn (fn_args.transform_graph_path).
        "canonical_frame": ChannelParameter(type=standard_artifacts.TransformGraph),
    }


class Augment(base_beam_component.BaseBeamComponent):
    """Canonical-frame crops for every split, augmented copies for training."""

    SPEC_CLASS = AugmentSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples, anomalies=None, *, image_size: int = 112,
                 face_fraction: float = 0.5, copies: int = 10, mirror: bool = True,
                 translation_sigma: float = 0.2, rotation_sigma_deg: float = 20.0,
                 scale_sigma: float = 0.25, seed: int = 0):
        super().__init__(spec=AugmentSpec(
            examples=examples, anomalies=anomalies, image_size=int(image_size),
            face_fraction=float(face_fraction), copies=int(copies), mirror=int(bool(mirror)),
            translation_sigma=float(translation_sigma),
            rotation_sigma_deg=float(rotation_sigma_deg), scale_sigma=float(scale_sigma),
            seed=int(seed),
            canonical_examples=types.Channel(type=standard_artifacts.Examples),
            canonical_frame=types.Channel(type=standard_artifacts.TransformGraph)))
