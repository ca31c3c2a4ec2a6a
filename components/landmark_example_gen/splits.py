"""Which split each face goes to: a seeded random hold-out, like the paper's
"random subset of 100 images from the training set" for validation."""
from __future__ import annotations

import numpy as np

TRAIN, EVAL, TEST = "train", "eval", "test"


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
