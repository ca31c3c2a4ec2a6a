"""Beam: raw faces -> canonical 112x112 crops (10 perturbed copies for training).

1. S0: the Procrustes mean of the train split's shapes (a CombineFn), placed
   in the canonical frame.
2. Every train face gives `copies` perturbed crops (mirrored half of them);
   eval and test faces one crop from the detector-box fit, no perturbation.
3. The per-pixel mean and std of the training crops (a CombineFn).
All of it deterministic for a given seed (randomness is derived from the seed
and the face id, never from worker order).
"""
from __future__ import annotations

import os
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components.augment import anomalies, spec
from facealign.core import canonical, canonical_example, crop, frame_io, raw_example

FILE_PREFIX = "data_tfrecord"


def decode_image(face: dict):
    """The face's grey image, decoded as the served model decodes it (facealign.core.crop)."""
    try:
        return crop.decode_gray(face["image"])
    except tf.errors.InvalidArgumentError as exc:
        raise ValueError(f"face {face['face_id']}: image bytes cannot be decoded "
                         f"({exc.message.splitlines()[0]})") from None


class MeanShapeFn(beam.CombineFn):
    def create_accumulator(self):
        return canonical.ProcrustesMeanAccumulator()

    def add_input(self, accumulator, shape):
        return accumulator.add(shape)

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        first = next(accumulators)
        for other in accumulators:
            first.merge(other)
        return first

    def extract_output(self, accumulator):
        return accumulator.extract()


class PixelStatsFn(MeanShapeFn):
    def create_accumulator(self):
        return canonical.PixelStats()

    def add_input(self, accumulator, image):
        return accumulator.add(image)

    def extract_output(self, accumulator):
        return accumulator.extract()


def crop_face(face: dict, frame_s0: np.ndarray, image_size: int, train: bool,
              config: canonical.AugmentConfig) -> list[tuple[bytes, np.ndarray]]:
    """[(serialized canonical example, canonical image)] for one raw face."""
    frame = canonical.CanonicalFrame(frame_s0, image_size)
    image = decode_image(face)
    if train:
        samples = canonical.training_samples(image, face["landmarks"], face["box"],
                                             face["face_id"], frame, config)
    else:
        samples = [canonical.eval_sample(image, face["landmarks"], face["box"], frame)]
    return [(canonical_example.encode_canonical_example(
                 s, face["face_id"], face["dataset"], face["subset"]).SerializeToString(),
             s.image) for s in samples]


def _split_files(examples: types.Artifact, split: str) -> str:
    return os.path.join(artifact_utils.get_split_uri([examples], split), "*")


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
        face_fraction = float(exec_properties[spec.FACE_FRACTION_KEY])
        out.split_names = artifact_utils.encode_split_names(splits)

        with self._make_beam_pipeline() as pipeline:
            faces = {split: (pipeline
                             | f"Read[{split}]" >> beam.io.ReadFromTFRecord(
                                 _split_files(raw, split))
                             | f"Parse[{split}]" >> beam.Map(raw_example.parse_example))
                     for split in splits}
            s0 = (faces["train"]
                  | "Shapes" >> beam.Map(lambda f: f["landmarks"])
                  | "MeanShape" >> beam.CombineGlobally(MeanShapeFn())
                  | "Place" >> beam.Map(lambda m: canonical.CanonicalFrame.from_mean_shape(
                      m, size, face_fraction).mean_shape))
            s0_side = beam.pvalue.AsSingleton(s0)
            train_count = faces["train"] | "CountFaces" >> beam.combiners.Count.Globally()
            for split in splits:
                crops = faces[split] | f"Crop[{split}]" >> beam.FlatMap(
                    crop_face, s0_side, size, split == "train", config)
                _ = (crops
                     | f"Serialized[{split}]" >> beam.Map(lambda c: c[0])
                     | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                         os.path.join(artifact_utils.get_split_uri([out], split), FILE_PREFIX),
                         file_name_suffix=".gz"))
                if split == "train":
                    images = crops | "Images" >> beam.Map(lambda c: c[1])
                    stats = images | "PixelStats" >> beam.CombineGlobally(PixelStatsFn())
                    sample_count = images | "CountSamples" >> beam.combiners.Count.Globally()
            _ = (stats
                 | "WriteFrame" >> beam.Map(
                     lambda st, shape, faces_n, samples_n: frame_io.write_frame(
                         frame_artifact.uri, shape, st[0], st[1], size, faces_n, samples_n),
                     s0_side, beam.pvalue.AsSingleton(train_count),
                     beam.pvalue.AsSingleton(sample_count)))

        examples_utils.set_payload_format(out, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(out, "tfrecords_gzip")
        frame = frame_io.read_frame(frame_artifact.uri)
        print(f"Augment: canonical frame {size}x{size}, S0 of {len(frame['mean_shape'])} "
              f"points; splits {splits}; {config.samples_per_face} samples per training face",
              flush=True)
