"""Augment's channel and parameter keys and its ComponentSpec, defined once.

component.py builds the component from these and executor.py reads its
inputs, outputs and exec properties by the same names (tfx-addons style).
"""
from __future__ import annotations

from tfx import types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

# Parameters (augment.* in pipeline.yaml).
IMAGE_SIZE_KEY = "image_size"
FACE_FRACTION_KEY = "face_fraction"
COPIES_KEY = "copies"
MIRROR_KEY = "mirror"                    # 0 / 1
MIRROR_COPIES_KEY = "mirror_copies"      # "half" or "extra" (canonical.AugmentConfig)
TRANSLATION_SIGMA_KEY = "translation_sigma"
TRANSLATION_UNIT_KEY = "translation_unit"   # "face" or "frame_pixels" (canonical.AugmentConfig)
ROTATION_SIGMA_DEG_KEY = "rotation_sigma_deg"
SCALE_SIGMA_KEY = "scale_sigma"
SEED_KEY = "seed"
MEAN_SHAPE_FILE_KEY = "mean_shape_file"  # augment.mean_shape, absolute; "" when not pinned
# Input channels.
EXAMPLES_KEY = "examples"                # LandmarkExampleGen's raw faces
ANOMALIES_KEY = "anomalies"              # ExampleValidator's; optional
DRIFT_KEY = "drift"                      # DriftCheck's report; optional: runs after it
# Output channels.
CANONICAL_EXAMPLES_KEY = "canonical_examples"
CANONICAL_FRAME_KEY = "canonical_frame"
SPAN_PROPERTY = "span"      # the frame's custom property (TransformGraph has no span)


class AugmentSpec(types.ComponentSpec):
    PARAMETERS = {
        IMAGE_SIZE_KEY: ExecutionParameter(type=int),
        FACE_FRACTION_KEY: ExecutionParameter(type=float),
        COPIES_KEY: ExecutionParameter(type=int),
        MIRROR_KEY: ExecutionParameter(type=int),
        MIRROR_COPIES_KEY: ExecutionParameter(type=str),
        TRANSLATION_SIGMA_KEY: ExecutionParameter(type=float),
        TRANSLATION_UNIT_KEY: ExecutionParameter(type=str),
        ROTATION_SIGMA_DEG_KEY: ExecutionParameter(type=float),
        SCALE_SIGMA_KEY: ExecutionParameter(type=float),
        SEED_KEY: ExecutionParameter(type=int),
        MEAN_SHAPE_FILE_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True),
        DRIFT_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True),
    }
    OUTPUTS = {
        CANONICAL_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        # S0 and pixel statistics; typed TransformGraph so the standard Trainer
        # hands it to run_fn (fn_args.transform_graph_path).
        CANONICAL_FRAME_KEY: ChannelParameter(type=standard_artifacts.TransformGraph),
    }
