"""`facealign train`: the pipeline's data preparation and training without TFX.

For people iterating on the model: the same readers, split, canonical crops
and augmentation as the pipeline's components (same functions, same seeds),
written once to a work folder and reused while the data and the augmentation
settings stay the same; then the same `train_and_export` as the TFX Trainer.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil

from facealign import config
from facealign.commands.config import add_config_arguments
from facealign.errors import UserError


def add_parser(sub) -> None:
    parser = sub.add_parser("train", help="train the configured model without the pipeline")
    add_config_arguments(parser)
    parser.add_argument("--work-dir", default="runs/train",
                        help="where prepared data, logs and the exported model go")
    parser.set_defaults(handler=run)


def _prepare_key(cfg: config.Config) -> str:
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
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    from components.augment import executor as augment, frame_io
    from facealign import canonical
    from components.landmark_example_gen import splits as splitting
    from facealign.data import load_sources

    if (out / "done").exists():
        print(f"train: reusing prepared data in {out}")
        return frame_io.read_frame(str(out))
    records, report = load_sources(cfg.data.sources, cfg.data.on_error, cfg.resolve("."))
    for line in report.lines():
        print(f"train: {line}")
    if not records:
        raise UserError("no usable face in data.sources")
    source_split = {s.name: s.split for s in cfg.data.sources}
    try:
        assignment = splitting.assign_splits(
            [(r.face_id, source_split[r.dataset]) for r in records], cfg.data.eval_count,
            cfg.data.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    train = [r for r in records if assignment[r.face_id] == "train"]
    mean = canonical.ProcrustesMeanAccumulator()
    for record in train:
        mean.add(record.landmarks)
    aug = cfg.augment
    s0 = canonical.CanonicalFrame.from_mean_shape(mean.extract(), aug.image_size,
                                                  aug.face_fraction).mean_shape
    augment_config = canonical.AugmentConfig(
        copies=aug.copies, mirror=aug.mirror, translation_sigma=aug.translation_sigma,
        rotation_sigma_deg=aug.rotation_sigma_deg, scale_sigma=aug.scale_sigma, seed=aug.seed)
    stats = canonical.PixelStats()
    final, out = out, out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    samples = 0
    for split in ("train", "eval", "test"):
        faces = [r for r in records if assignment[r.face_id] == split]
        if not faces:
            continue
        with tf.io.TFRecordWriter(str(out / f"{split}.tfrecord.gz"), options) as writer:
            for record in tqdm(faces, desc=f"crop {split}", unit="face"):
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


def run(args) -> int:
    from trainer.run import train_and_export

    cfg = config.load(args.config, args.overrides)
    work = pathlib.Path(args.work_dir)
    data_dir = work / f"data-{_prepare_key(cfg)}"
    frame = prepare(cfg, data_dir)
    model_dir = work / "model"
    summary = train_and_export(cfg, [str(data_dir / "train.tfrecord.gz")],
                               [str(data_dir / "eval.tfrecord.gz")], frame, str(model_dir),
                               log_dir=str(work / "logs"))
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"train: model in {model_dir}; summary in {work / 'summary.json'}")
    return 0
