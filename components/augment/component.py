"""Augment: a custom Beam TFX component (spec, executor) in the tfx-addons style."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts

from components.augment import executor
from components.augment.spec import AugmentSpec


class Augment(base_beam_component.BaseBeamComponent):
    """Canonical-frame crops for every split, augmented copies for training.

    Inputs: `examples` (LandmarkExampleGen's raw faces) and, optionally,
    `anomalies` (ExampleValidator's: Augment refuses to run on anomalies).
    Outputs: `canonical_examples` (the crops per split) and `canonical_frame`
    (S0 and the training pixel statistics, for the Trainer).
    """

    SPEC_CLASS = AugmentSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples, anomalies=None, *, image_size: int = 112,
                 face_fraction: float = 0.5, copies: int = 10, mirror: bool = True,
                 translation_sigma: float = 0.2, rotation_sigma_deg: float = 20.0,
                 scale_sigma: float = 0.25, seed: int = 0, translation_unit: str = "frame_pixels",
                 mirror_copies: str = "half"):
        super().__init__(spec=AugmentSpec(
            examples=examples, anomalies=anomalies, image_size=int(image_size),
            face_fraction=float(face_fraction), copies=int(copies), mirror=int(bool(mirror)),
            mirror_copies=str(mirror_copies),
            translation_sigma=float(translation_sigma), translation_unit=str(translation_unit),
            rotation_sigma_deg=float(rotation_sigma_deg), scale_sigma=float(scale_sigma),
            seed=int(seed),
            canonical_examples=types.Channel(type=standard_artifacts.Examples),
            canonical_frame=types.Channel(type=standard_artifacts.TransformGraph)))
