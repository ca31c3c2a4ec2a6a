"""Augment's executor: TFX in, components.augment.canonical_crops, TFX out.

It reads the exec properties and the raw faces' splits, runs the library's
Beam steps (S0, crops, pixel statistics, the frame) and sets the artifacts'
properties; the work itself lives in canonical_crops, shared with
`facealign train`'s data preparation.
"""
from __future__ import annotations

import json
import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components.augment import anomalies, canonical_crops, spec
from facealign.core import canonical, faults, frame_io, raw_example, spans

FILE_PREFIX = "data_tfrecord"


def _split_files(examples: types.Artifact, split: str) -> str:
    return os.path.join(artifact_utils.get_split_uri([examples], split), "*")


def label_span(raw: types.Artifact, out: types.Artifact, frame: types.Artifact) -> None:
    """The raw faces' span and version on the crops (a rolling range of spans selects them
    by it), also as a file beside them for the Trainer, which sees only file paths."""
    version = raw.version if "version" in raw.mlmd_artifact.properties else None
    out.span = raw.span
    if version is not None:
        out.version = version
    frame.set_int_custom_property(spec.SPAN_PROPERTY, raw.span)
    with tf.io.gfile.GFile(os.path.join(out.uri, spans.LABEL_FILE), "w") as handle:
        json.dump({"span": int(raw.span), "version": version, "raw_examples": raw.uri}, handle)


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        for anomalies_artifact in input_dict.get(spec.ANOMALIES_KEY) or []:
            anomalies.raise_on_anomalies(anomalies_artifact)
        raw = artifact_utils.get_single_instance(input_dict[spec.EXAMPLES_KEY])
        out = artifact_utils.get_single_instance(output_dict[spec.CANONICAL_EXAMPLES_KEY])
        frame_artifact = artifact_utils.get_single_instance(output_dict[spec.CANONICAL_FRAME_KEY])
        splits = artifact_utils.decode_split_names(raw.split_names)
        if "train" not in splits:
            raise ValueError(f"{raw.uri} has no train split (splits: {splits})")
        size = int(exec_properties[spec.IMAGE_SIZE_KEY])
        config = canonical.AugmentConfig.from_settings(exec_properties)
        out.split_names = artifact_utils.encode_split_names(splits)
        pin_file = exec_properties.get(spec.MEAN_SHAPE_FILE_KEY) or ""
        pinned = frame_io.read_pinned_mean_shape(pin_file, size) if pin_file else None

        with self._make_beam_pipeline() as pipeline:
            faces = {split: (pipeline
                             | f"Read[{split}]" >> beam.io.ReadFromTFRecord(
                                 _split_files(raw, split))
                             | f"Parse[{split}]" >> beam.Map(raw_example.parse_example))
                     for split in splits}
            canonical_crops.write_canonical_crops(
                faces, lambda split: os.path.join(artifact_utils.get_split_uri([out], split),
                                                  FILE_PREFIX),
                frame_artifact.uri, size, float(exec_properties[spec.FACE_FRACTION_KEY]), config,
                pinned_mean_shape=pinned)

        faults.reached(self._context, "after_crops")  # the payload format not yet set
        examples_utils.set_payload_format(out, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(out, "tfrecords_gzip")
        frame = frame_io.read_frame(frame_artifact.uri)
        if pin_file:
            frame_io.pin_mean_shape(pin_file, frame["mean_shape"], size, frame_artifact.uri)
        label_span(raw, out, frame_artifact)
        origin = f"pinned in {pin_file}" if pinned is not None else "of these faces"
        print(f"Augment: span {raw.span}, canonical frame {size}x{size}, S0 of "
              f"{len(frame['mean_shape'])} points ({origin}); splits {splits}; "
              f"{config.samples_per_face} samples per training face", flush=True)
