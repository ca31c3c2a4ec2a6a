"""The pipeline's data preparation without TFX, for `facealign train` and `facealign tune`.

The same readers, split, canonical crops and augmentation as the pipeline's
components (the same functions, the same seeds), written once to a work
folder and reused while the data and the augmentation settings stay the same.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from components.augment import executor as augment
from facealign.core import canonical, config, frame_io, splits


class PrepareError(ValueError):
    """The configured data cannot be prepared (no usable face, a split that leaves nothing)."""


def data_key(cfg: config.Config) -> str:
    """A short hash of everything the prepared data depends on (data.*, augment.*, the config
    folder)."""
    settings = {"data": cfg.data.model_dump(mode="json"),
                "augment": cfg.augment.model_dump(mode="json"),
                "base": str(cfg.resolve("."))}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def prepare(cfg: config.Config, out: pathlib.Path) -> dict:
    """Writes canonical TFRecords per split and the frame; returns the frame.

    Written into a private folder and renamed into place, so processes
    preparing the same data at once (a distributed sweep's workers) never read
    a half-written folder; the first to finish wins.
    """
    if (out / "done").exists():
        print(f"prepare: reusing prepared data in {out}")
        return frame_io.read_frame(str(out))
    try:
        faces = splits.configured_faces(cfg, log=lambda line: print(f"prepare: {line}"))
    except ValueError as exc:
        raise PrepareError(str(exc)) from None
    train = faces["train"]
    mean = canonical.ProcrustesMeanAccumulator()
    for record in train:
        mean.add(record.landmarks)
    aug = cfg.augment
    s0 = canonical.CanonicalFrame.from_mean_shape(mean.extract(), aug.image_size,
                                                  aug.face_fraction).mean_shape
    augment_config = canonical.AugmentConfig.from_settings(aug.model_dump())
    stats = canonical.PixelStats()
    final, out = out, out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    samples = 0
    for split in ("train", "eval", "test"):
        if not faces[split]:
            continue
        with tf.io.TFRecordWriter(str(out / f"{split}.tfrecord.gz"), options) as writer:
            for record in tqdm(faces[split], desc=f"crop {split}", unit="face"):
                face = {"image": pathlib.Path(record.image_path).read_bytes(),
                        "landmarks": record.landmarks, "box": np.asarray(record.box),
                        "face_id": record.face_id, "dataset": record.dataset,
                        "subset": record.subset}
                for serialized, image in augment.crop_face(face, s0, aug.image_size,
                                                           split == "train", augment_config):
                    writer.write(serialized)
                    if split == "train":
                        stats.add(image)
                        samples += 1
    pixel_mean, pixel_std = stats.extract()
    frame_io.write_frame(str(out), s0, pixel_mean, pixel_std, aug.image_size, len(train), samples)
    (out / "done").write_text("")
    try:
        os.rename(out, final)
    except OSError:                      # another process finished the same data first
        if not (final / "done").exists():
            raise
        shutil.rmtree(out, ignore_errors=True)
    return frame_io.read_frame(str(final))


def prepared_data(cfg: config.Config, work_dir) -> tuple[list[str], list[str], dict]:
    """(train files, eval files, frame) of the data prepared under work_dir/data-<data_key>.

    One folder per distinct data/augment setting, so a sweep over the
    augmentation sigmas prepares each value once.
    """
    folder = pathlib.Path(work_dir) / f"data-{data_key(cfg)}"
    frame = prepare(cfg, folder)
    return [str(folder / "train.tfrecord.gz")], [str(folder / "eval.tfrecord.gz")], frame
