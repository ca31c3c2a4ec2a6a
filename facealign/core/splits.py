"""Which split each face goes to: a seeded random hold-out, like the paper's
"random subset of 100 images from the training set" for validation.

Two ways to draw it. `eval_count` faces from a permutation of all faces (the
published models' held-out faces): every face read takes part, so a face
added later can move others. `eval_fraction`: each face on its own, by a
stable hash of the seed and its id, so a face's split never moves when new
faces arrive (spans, data.range); a spanned configuration needs it.

One choice for every reader of the held-out faces: LandmarkExampleGen (so the
Evaluator and publishing), `facealign train`'s data preparation and the
benchmarks all split through split_faces.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

from facealign.core import spans
from facealign.core.data import load_sources

TRAIN, EVAL, TEST = "train", "eval", "test"
SPLITS = (TRAIN, EVAL, TEST)
LEFT_OUT = "left_out"   # training faces outside data.train_fraction's subset: read, not used


def hash_fraction(face_id: str, seed: int) -> float:
    """A number in [0, 1) fixed by the seed and the face id alone."""
    digest = hashlib.sha256(f"{seed}:{face_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def in_training_subset(face_id: str, seed: int, train_fraction: float) -> bool:
    """Whether a training face is among data.train_fraction's: a hash of its own, apart from
    the hold-out's, so the subsets of growing fractions are nested."""
    return train_fraction >= 1.0 or hash_fraction(f"train-subset:{face_id}", seed) < train_fraction


def assign_splits(faces: list[tuple[str, str]], eval_count: int | None, seed: int,
                  eval_fraction: float | None = None,
                  train_fraction: float = 1.0) -> dict[str, str]:
    """{face_id: split} for (face_id, source split) pairs.

    Faces of "test" sources go to test. Of the "train" sources' faces, those
    held out go to eval, the rest to train: with eval_fraction, each face whose
    hash_fraction is below it; else `eval_count` drawn at random (a fixed
    permutation of the sorted ids, so the draw does not depend on reading order).
    With train_fraction below 1, the training faces outside its subset go to
    LEFT_OUT; the hold-out is drawn first, so it is the same for every fraction.
    """
    train_ids = sorted(face_id for face_id, split in faces if split == TRAIN)
    if eval_fraction is not None:
        held_out = {i for i in train_ids if hash_fraction(i, seed) < eval_fraction}
    else:
        if train_ids and eval_count >= len(train_ids):
            raise ValueError(f"data.eval_count={eval_count} leaves no training faces "
                             f"(only {len(train_ids)} faces in the train sources)")
        order = np.random.default_rng(seed).permutation(len(train_ids))
        held_out = {train_ids[i] for i in order[:eval_count]}
    return {face_id: (TEST if split == TEST else EVAL if face_id in held_out
                      else TRAIN if in_training_subset(face_id, seed, train_fraction)
                      else LEFT_OUT)
            for face_id, split in faces}


def split_faces(records: list, source_splits: Mapping[str, str], eval_count: int | None,
                seed: int, eval_fraction: float | None = None,
                train_fraction: float = 1.0) -> dict[str, list]:
    """{"train": records, "eval": ..., "test": ...} in reading order, and under "left_out"
    the training faces data.train_fraction leaves out (when it does); source_splits maps
    each source's name (a record's dataset) to its configured split."""
    assignment = assign_splits([(r.face_id, source_splits[r.dataset]) for r in records],
                               eval_count, seed, eval_fraction, train_fraction)
    chosen = {split: [r for r in records if assignment[r.face_id] == split]
              for split in (*SPLITS, LEFT_OUT)}
    if not chosen[LEFT_OUT]:
        del chosen[LEFT_OUT]
    elif not chosen[TRAIN]:
        raise ValueError(f"data.train_fraction={train_fraction} leaves none of the "
                         f"{len(chosen[LEFT_OUT])} training faces")
    return chosen


def left_out_line(by_split: Mapping[str, list], train_fraction: float) -> str | None:
    """The run's line saying how many training faces data.train_fraction left out."""
    left_out = len(by_split.get(LEFT_OUT, ()))
    if not left_out:
        return None
    used = len(by_split[TRAIN])
    return (f"data.train_fraction={train_fraction:g}: training on {used} of {used + left_out} "
            f"training faces, {left_out} left out (the held-out faces are unchanged)")


def configured_faces(cfg, log=print) -> dict[str, list]:
    """split_faces of the configuration's data (data.sources, data.eval_count, data.seed), the
    read report passed line by line to log. ValueError when no face is usable or the hold-out
    leaves no training face."""
    sources = cfg.source_entries()
    if any(spans.is_spanned(s) for s in sources):   # the span the pipeline would ingest
        sources = spans.resolve(sources, cfg.data.range.span).sources
    records, report = load_sources(sources, cfg.data.on_error)
    for line in report.lines():
        log(line)
    if not records:
        raise ValueError("no usable face in data.sources")
    by_split = split_faces(records, {s.name: s.split for s in cfg.data.sources},
                           cfg.data.eval_count, cfg.data.seed, cfg.data.eval_fraction,
                           cfg.data.train_fraction)
    line = left_out_line(by_split, cfg.data.train_fraction)
    if line:
        log(line)
    by_split.pop(LEFT_OUT, None)
    return by_split


def held_out_faces(cfg) -> list:
    """The configuration's held-out (eval) faces: those the pipeline's Evaluator scores, never
    trained on."""
    return configured_faces(cfg, log=lambda line: None)["eval"]
