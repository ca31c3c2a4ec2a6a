"""Augment: a custom Beam TFX component (spec, executor) in the tfx-addons style."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts

from components.augment import executor
from components.augment.spec import AugmentSpec
from facealign.core.config import AugmentSection


class Augment(base_beam_component.BaseBeamComponent):
    """Canonical-frame crops for every split, augmented copies for training.

    Inputs: `examples` (LandmarkExampleGen's raw faces) and, optionally,
    `anomalies` (ExampleValidator's: Augment refuses to run on anomalies).
    Outputs: `canonical_examples` (the crops per split) and `canonical_frame`
    (S0 and the training pixel statistics, for the Trainer).
    Parameters: the configuration's augment section, its fields under their own
    names (the section holds the defaults; the executor reads them back through
    canonical.AugmentConfig.from_settings).
    """

    SPEC_CLASS = AugmentSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples, settings: AugmentSection, anomalies=None):
        values = settings.model_dump()
        super().__init__(spec=AugmentSpec(
            examples=examples, anomalies=anomalies,
            **{name: parameter.type(values[name])
               for name, parameter in AugmentSpec.PARAMETERS.items()},
            canonical_examples=types.Channel(type=standard_artifacts.Examples),
            canonical_frame=types.Channel(type=standard_artifacts.TransformGraph)))
