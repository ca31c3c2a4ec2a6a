"""Raw faces -> canonical crops (perturbed copies for training) and the canonical frame.

The whole of Augment's work as one Beam function, so that Augment's executor
and `facealign train`'s data preparation (pipeline/prepare.py) run the same
steps on the same faces:
1. S0: the Procrustes mean of the train split's shapes (a CombineFn), placed
   in the canonical frame.
2. Every train face gives `copies` perturbed crops (mirrored half of them);
   eval and test faces one crop from the detector-box fit, no perturbation.
3. The per-pixel mean and std of the training crops (a CombineFn), written
   with S0 and the counts as the frame (facealign.core.frame_io).
All of it deterministic for a given seed (randomness is derived from the seed
and the face id, never from worker order). No TFX here: Beam and the core.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
import tensorflow as tf

from facealign.core import canonical, canonical_example, crop, frame_io, splits

# A progress line every this many faces cropped (per split and worker): long work shows progress.
PROGRESS_EVERY = 200


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
    """[(serialized canonical example, canonical image)] for one raw face
    (facealign.core.raw_example.parse_example's dict)."""
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


class _CropFaces(beam.DoFn):
    """crop_face, with a progress line every PROGRESS_EVERY faces."""

    def __init__(self, split: str, image_size: int, config: canonical.AugmentConfig,
                 log_prefix: str):
        self._split, self._size, self._config = split, image_size, config
        self._prefix, self._faces = log_prefix, 0

    def process(self, face, frame_s0):
        yield from crop_face(face, frame_s0, self._size, self._split == splits.TRAIN,
                             self._config)
        self._faces += 1
        if self._faces % PROGRESS_EVERY == 0:
            print(f"{self._prefix}: cropped {self._faces} {self._split} faces", flush=True)


def write_canonical_crops(faces: dict, output_prefix, frame_dir: str, image_size: int,
                          face_fraction: float, config: canonical.AugmentConfig,
                          file_name_suffix: str = ".gz", log_prefix: str = "Augment",
                          pinned_mean_shape=None) -> None:
    """Adds the steps to the faces' pipeline: faces ({split: PCollection of raw face dicts},
    a "train" split among them) -> gzipped canonical TFRecords per split under
    output_prefix(split) and the frame in frame_dir, once the pipeline runs.
    pinned_mean_shape: S0 as placed in the frame, used instead of the faces' own."""
    if splits.TRAIN not in faces:
        raise ValueError(f"no train split to place S0 and train on (splits: {list(faces)})")
    train = faces[splits.TRAIN]
    if pinned_mean_shape is not None:
        s0 = train.pipeline | "PinnedMeanShape" >> beam.Create(
            [np.asarray(pinned_mean_shape, np.float32)])
    else:
        s0 = (train
              | "Shapes" >> beam.Map(lambda f: f["landmarks"])
              | "MeanShape" >> beam.CombineGlobally(MeanShapeFn())
              | "Place" >> beam.Map(lambda m: canonical.CanonicalFrame.from_mean_shape(
                  m, image_size, face_fraction).mean_shape))
    s0_side = beam.pvalue.AsSingleton(s0)
    train_count = train | "CountFaces" >> beam.combiners.Count.Globally()
    for split, split_faces in faces.items():
        crops = split_faces | f"Crop[{split}]" >> beam.ParDo(
            _CropFaces(split, image_size, config, log_prefix), s0_side)
        _ = (crops
             | f"Serialized[{split}]" >> beam.Map(lambda c: c[0])
             | f"Write[{split}]" >> beam.io.WriteToTFRecord(output_prefix(split),
                                                            file_name_suffix=file_name_suffix))
        if split == splits.TRAIN:
            images = crops | "Images" >> beam.Map(lambda c: c[1])
            stats = images | "PixelStats" >> beam.CombineGlobally(PixelStatsFn())
            sample_count = images | "CountSamples" >> beam.combiners.Count.Globally()
    _ = (stats
         | "WriteFrame" >> beam.Map(
             lambda st, shape, faces_n, samples_n: frame_io.write_frame(
                 frame_dir, shape, st[0], st[1], image_size, faces_n, samples_n),
             s0_side, beam.pvalue.AsSingleton(train_count),
             beam.pvalue.AsSingleton(sample_count)))
