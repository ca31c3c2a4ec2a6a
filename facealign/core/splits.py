"""Which split each face goes to: a seeded random hold-out, like the paper's
"random subset of 100 images from the training set" for validation.

One choice for every reader of the held-out faces: LandmarkExampleGen (so the
Evaluator and publishing), `facealign train`'s data preparation and the
benchmarks all split through split_faces.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from facealign.core.data import load_sources

TRAIN, EVAL, TEST = "train", "eval", "test"
SPLITS = (TRAIN, EVAL, TEST)


def assign_splits(faces: list[tuple[str, str]], eval_count: int, seed: int) -> dict[str, str]:
    """{face_id: split} for (face_id, source split) pairs.

    Faces of "test" sources go to test. Of the "train" sources' faces,
    `eval_count` drawn at random (a fixed permutation of the sorted ids, so
    the draw does not depend on reading order) go to eval, the rest to train.
    """
    train_ids = sorted(face_id for face_id, split in faces if split == TRAIN)
    if train_ids and eval_count >= len(train_ids):
        raise ValueError(f"data.eval_count={eval_count} leaves no training faces "
                         f"(only {len(train_ids)} faces in the train sources)")
    order = np.random.default_rng(seed).permutation(len(train_ids))
    held_out = {train_ids[i] for i in order[:eval_count]}
    return {face_id: (TEST if split == TEST else EVAL if face_id in held_out else TRAIN)
            for face_id, split in faces}


def split_faces(records: list, source_splits: Mapping[str, str], eval_count: int,
                seed: int) -> dict[str, list]:
    """{"train": records, "eval": ..., "test": ...} in reading order; source_splits maps each
    source's name (a record's dataset) to its configured split."""
    assignment = assign_splits([(r.face_id, source_splits[r.dataset]) for r in records],
                               eval_count, seed)
    return {split: [r for r in records if assignment[r.face_id] == split] for split in SPLITS}


def configured_faces(cfg, log=print) -> dict[str, list]:
    """split_faces of the configuration's data (data.sources, data.eval_count, data.seed), the
    read report passed line by line to log. ValueError when no face is usable or the hold-out
    leaves no training face."""
    records, report = load_sources(cfg.data.sources, cfg.data.on_error, cfg.resolve("."))
    for line in report.lines():
        log(line)
    if not records:
        raise ValueError("no usable face in data.sources")
    return split_faces(records, {s.name: s.split for s in cfg.data.sources},
                       cfg.data.eval_count, cfg.data.seed)


def held_out_faces(cfg) -> list:
    """The configuration's held-out (eval) faces: those the pipeline's Evaluator scores, never
    trained on."""
    return configured_faces(cfg, log=lambda line: None)["eval"]
