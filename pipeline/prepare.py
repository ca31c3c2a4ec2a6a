"""The pipeline's data preparation without TFX, for `facealign train` and `facealign tune`.

The same readers, split and Augment's own Beam steps (canonical_crops, run
in-process on the direct runner): the same faces, seeds and crops as the
pipeline's components, written once to a work folder and reused while the
data and the augmentation settings stay the same.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from components.augment import canonical_crops
from facealign.core import canonical, config, frame_io, raw_example, splits

# In-process: one worker, so the crops run where the data is (the worker count changes no crop).
BEAM_ARGS = ["--runner=DirectRunner", "--direct_num_workers=1",
             "--direct_running_mode=in_memory"]
SUFFIX = ".tfrecord.gz"


class PrepareError(ValueError):
    """The configured data cannot be prepared (no usable face, a split that leaves nothing)."""


def data_key(cfg: config.Config) -> str:
    """A short hash of everything the prepared data depends on (data.*, augment.*, the config
    folder)."""
    settings = {"data": cfg.data.model_dump(mode="json"),
                "augment": cfg.augment.model_dump(mode="json"),
                "base": str(cfg.resolve("."))}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _raw_face(record) -> dict:
    """A record as Augment reads it from ExampleGen's tf.Example (the same float32 box and
    landmarks), so prepare's crops are Augment's."""
    return raw_example.parse_example(raw_example.record_to_example(record))


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
    aug = cfg.augment
    augment_config = canonical.AugmentConfig.from_settings(aug.model_dump())
    final, out = out, out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    present = {split: records for split, records in faces.items() if records}
    counts = ", ".join(f"{len(records)} {split}" for split, records in present.items())
    print(f"prepare: cropping {counts} faces ({augment_config.samples_per_face} samples per "
          f"training face) into {final}", flush=True)
    with beam.Pipeline(options=PipelineOptions(BEAM_ARGS)) as pipeline:
        collections = {split: (pipeline
                               | f"Faces[{split}]" >> beam.Create(records)
                               | f"Read[{split}]" >> beam.Map(_raw_face))
                       for split, records in present.items()}
        canonical_crops.write_canonical_crops(
            collections, lambda split: str(out / split), str(out), aug.image_size,
            aug.face_fraction, augment_config, file_name_suffix=SUFFIX, log_prefix="prepare")
    written = json.loads((out / frame_io.FRAME_JSON).read_text())
    print(f"prepare: wrote {written['train_samples']} training samples of "
          f"{written['train_faces']} faces", flush=True)
    (out / "done").write_text("")
    try:
        os.rename(out, final)
    except OSError:                      # another process finished the same data first
        if not (final / "done").exists():
            raise
        shutil.rmtree(out, ignore_errors=True)
    return frame_io.read_frame(str(final))


def prepared_data(cfg: config.Config, work_dir) -> tuple[list[str], list[str], dict]:
    """(train file patterns, eval file patterns, frame) of the data prepared under
    work_dir/data-<data_key>.

    One folder per distinct data/augment setting, so a sweep over the
    augmentation sigmas prepares each value once.
    """
    folder = pathlib.Path(work_dir) / f"data-{data_key(cfg)}"
    frame = prepare(cfg, folder)
    return ([str(folder / f"{splits.TRAIN}-*{SUFFIX}")],
            [str(folder / f"{splits.EVAL}-*{SUFFIX}")], frame)
