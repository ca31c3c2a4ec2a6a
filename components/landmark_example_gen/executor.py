"""Reads the configured datasets and writes raw-face tf.Examples per split.

Reading (walking folders, checking every image header and annotation) runs
here through the facealign.core.data readers, which report every rejected input;
Beam then reads the image bytes and writes gzipped TFRecords in parallel. The
rejects are kept with the output: `ingest_report.json` in the artifact and
the counts as custom properties, so nothing read is ever lost from view.
"""
from __future__ import annotations

import json
import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components.landmark_example_gen import driver, spec
from facealign.core import faults
from facealign.core import splits as splitting
from facealign.core.data import sources as data_sources
from facealign.core.raw_example import face_dict, face_to_example

FILE_PREFIX = "data_tfrecord"


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[spec.EXAMPLES_KEY])
        resolution = driver.resolution_of(exec_properties)
        driver.label_examples(examples, resolution)
        sources = resolution.sources
        records, report = data_sources.load_sources(
            sources, on_error=exec_properties[spec.ON_ERROR_KEY])
        for line in report.lines():
            print(f"ExampleGen: {line}", flush=True)
        if not records:
            raise ValueError("ExampleGen: no usable face in the configured sources "
                             f"({report.rejected} rejected); see the lines above")
        source_split = {s["name"]: s.get("split", splitting.TRAIN) for s in sources}
        train_fraction = float(exec_properties.get(spec.TRAIN_FRACTION_KEY) or 1.0)
        by_split = splitting.split_faces(records, source_split,
                                         int(exec_properties[spec.EVAL_COUNT_KEY]),
                                         int(exec_properties[spec.SEED_KEY]),
                                         float(exec_properties[spec.EVAL_FRACTION_KEY]) or None,
                                         train_fraction)
        left_out_line = splitting.left_out_line(by_split, train_fraction)
        if left_out_line:
            print(f"ExampleGen: {left_out_line}", flush=True)
        left_out = len(by_split.pop(splitting.LEFT_OUT, ()))
        faces = [face_dict(r, split) for split, chosen in by_split.items() for r in chosen]
        split_names = [split for split, chosen in by_split.items() if chosen]

        examples.split_names = artifact_utils.encode_split_names(split_names)
        with self._make_beam_pipeline() as pipeline:
            encoded = (pipeline
                       | "Faces" >> beam.Create(faces, reshuffle=True)
                       | "Encode" >> beam.Map(lambda face: (face["split"], face_to_example(face))))
            for split in split_names:
                _ = (encoded
                     | f"Select[{split}]" >> beam.Filter(lambda kv, s=split: kv[0] == s)
                     | f"Values[{split}]" >> beam.Values()
                     | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                         os.path.join(artifact_utils.get_split_uri([examples], split),
                                      FILE_PREFIX),
                         file_name_suffix=".gz"))

        faults.reached(self._context, "after_examples")  # the report not yet written
        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        counts = {s: sum(face["split"] == s for face in faces) for s in split_names}
        examples.set_int_custom_property(spec.ACCEPTED_FACES_PROPERTY, len(records))
        examples.set_int_custom_property(spec.REJECTED_INPUTS_PROPERTY, report.rejected)
        tf.io.gfile.makedirs(examples.uri)
        with tf.io.gfile.GFile(os.path.join(examples.uri, spec.REPORT_FILE), "w") as handle:
            json.dump({"span": resolution.span, "version": resolution.version,
                       "fingerprint": resolution.fingerprint,
                       "accepted": len(records), "rejected": report.rejected,
                       "per_split": counts, "left_out_by_train_fraction": left_out,
                       "rejects": [{"file": r.file, "reason": r.reason, "dataset": r.dataset}
                                   for r in report.rejects]}, handle, indent=2)
        logging.info("ExampleGen wrote %s", counts)
        print(f"ExampleGen: {len(records) - left_out} faces used ({counts}), "
              + (f"{left_out} left out by data.train_fraction, " if left_out else "")
              + f"{report.rejected} inputs rejected", flush=True)
