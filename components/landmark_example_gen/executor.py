"""Reads the configured datasets and writes raw-face tf.Examples per split.

Reading (walking folders, checking every image header and annotation) runs
here through the facealign.data readers, which report every rejected input;
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

from components.landmark_example_gen import splits as splitting
from facealign import examples as names
from facealign.data import sources as data_sources

REPORT_FILE = "ingest_report.json"
FILE_PREFIX = "data_tfrecord"


def face_to_example(face: dict) -> bytes:
    """One face (plain dict, picklable) -> serialized tf.Example with its image bytes."""
    def b(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def f(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=list(map(float, values))))

    with open(face["image_path"], "rb") as handle:
        image = handle.read()
    feature = {
        names.RAW_IMAGE: b(image),
        names.RAW_IMAGE_PATH: b(face["image_relpath"].encode()),
        names.RAW_LANDMARKS: f(face["landmarks"]),
        names.RAW_NUM_LANDMARKS: tf.train.Feature(
            int64_list=tf.train.Int64List(value=[len(face["landmarks"]) // 2])),
        names.RAW_BOX: f(face["box"]),
        names.RAW_BOX_SOURCE: b(face["box_source"].encode()),
        names.RAW_DATASET: b(face["dataset"].encode()),
        names.RAW_SUBSET: b(face["subset"].encode()),
        names.RAW_FACE_ID: b(face["face_id"].encode()),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _face_dict(record, split: str) -> dict:
    return {"split": split, "image_path": str(record.image_path),
            "image_relpath": record.image_relpath,
            "landmarks": record.landmarks.reshape(-1).tolist(), "box": list(record.box),
            "box_source": record.box_source, "dataset": record.dataset,
            "subset": record.subset, "face_id": record.face_id}


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        sources = json.loads(exec_properties["sources"])
        records, report = data_sources.load_sources(
            sources, on_error=exec_properties["on_error"])
        for line in report.lines():
            print(f"ExampleGen: {line}", flush=True)
        if not records:
            raise ValueError("ExampleGen: no usable face in the configured sources "
                             f"({report.rejected} rejected); see the lines above")
        source_split = {s["name"]: s.get("split", splitting.TRAIN) for s in sources}
        assignment = splitting.assign_splits(
            [(r.face_id, source_split[r.dataset]) for r in records],
            int(exec_properties["eval_count"]), int(exec_properties["seed"]))
        faces = [_face_dict(r, assignment[r.face_id]) for r in records]
        split_names = [s for s in (splitting.TRAIN, splitting.EVAL, splitting.TEST)
                       if any(face["split"] == s for face in faces)]

        examples = artifact_utils.get_single_instance(output_dict["examples"])
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

        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        counts = {s: sum(face["split"] == s for face in faces) for s in split_names}
        examples.set_int_custom_property("accepted_faces", len(records))
        examples.set_int_custom_property("rejected_inputs", report.rejected)
        tf.io.gfile.makedirs(examples.uri)
        with tf.io.gfile.GFile(os.path.join(examples.uri, REPORT_FILE), "w") as handle:
            json.dump({"accepted": len(records), "rejected": report.rejected,
                       "per_split": counts,
                       "rejects": [{"file": r.file, "reason": r.reason, "dataset": r.dataset}
                                   for r in report.rejects]}, handle, indent=2)
        logging.info("ExampleGen wrote %s", counts)
        print(f"ExampleGen: {len(records)} faces used ({counts}), "
              f"{report.rejected} inputs rejected", flush=True)
