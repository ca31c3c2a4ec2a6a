"""Augment: a custom Beam TFX component (spec, executor) in the tfx-addons style."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts

from components.augment import executor
from components.augment.spec import MEAN_SHAPE_FILE_KEY, AugmentSpec
from facealign.core.config import AugmentSection


class Augment(base_beam_component.BaseBeamComponent):
    """Canonical-frame crops for every split, augmented copies for training.

    Inputs: `examples` (LandmarkExampleGen's raw faces) and, optionally,
    `anomalies` (ExampleValidator's: Augment refuses to run on anomalies) and
    `drift` (DriftCheck's, so that Augment runs after the drift gate).
    Outputs: `canonical_examples` (the crops per split) and `canonical_frame`
    (S0 and the training pixel statistics, for the Trainer).
    Parameters: the configuration's augment section, its fields under their own
    names (the section holds the defaults; the executor reads them back through
    canonical.AugmentConfig.from_settings), and mean_shape_file: augment.mean_shape, the
    pinned S0 (read if it exists, else computed here and written).
    """

    SPEC_CLASS = AugmentSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples, settings: AugmentSection, anomalies=None,
                 mean_shape_file: str | None = None, drift=None):
        values = settings.model_dump() | {MEAN_SHAPE_FILE_KEY: mean_shape_file or ""}
        super().__init__(spec=AugmentSpec(
            examples=examples, anomalies=anomalies, drift=drift,
            **{name: parameter.type(values[name])
               for name, parameter in AugmentSpec.PARAMETERS.items()},
            canonical_examples=types.Channel(type=standard_artifacts.Examples),
            canonical_frame=types.Channel(type=standard_artifacts.TransformGraph)))
