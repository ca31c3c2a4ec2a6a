"""The iBUG / 300-W 68-point markup: which index is which part of the face.

Only code that knows it is looking at this markup should use these helpers;
every function checks the point count so a 98-point (WFLW) or 29-point shape
fails loudly instead of yielding a plausible-looking wrong pupil or mirror.

"Left" and "right" mean the image's left and right for a frontal face (the
markup's convention): the "left" eye, 36-41, is the subject's right eye.
Index constants are plain tuples so TensorFlow code can ``tf.gather`` them.

The two eye distances that normalise errors (facealign.core.metrics) have a
TensorFlow twin at the end, ``*_tf``, for training losses; TensorFlow is
imported inside them, so importing this module stays numpy-only.
"""
from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 68

JAW = tuple(range(0, 17))
LEFT_EYEBROW = tuple(range(17, 22))
RIGHT_EYEBROW = tuple(range(22, 27))
NOSE_BRIDGE = tuple(range(27, 31))
NOSTRILS = tuple(range(31, 36))
LEFT_EYE = tuple(range(36, 42))   # 36 outer corner, 39 inner corner, 37-38 upper lid, 40-41 lower
RIGHT_EYE = tuple(range(42, 48))  # 42 inner corner, 45 outer corner, 43-44 upper lid, 46-47 lower
# 48 left corner, 51 top centre, 54 right corner, 57 bottom centre
OUTER_MOUTH = tuple(range(48, 60))
# 60 left corner, 62 top centre, 64 right corner, 66 bottom centre
INNER_MOUTH = tuple(range(60, 68))
OUTER_EYE_CORNERS = (36, 45)


def _pairs() -> list[tuple[int, int]]:
    """Anatomical left/right partners; points on the midline pair with themselves."""
    pairs = [(i, 16 - i) for i in range(0, 17)]            # jaw, 8 is the chin
    pairs += [(i, 43 - i) for i in range(17, 27)]          # eyebrows, outer 17 <-> 26
    pairs += [(i, i) for i in range(27, 31)]               # nose bridge
    pairs += [(i, 66 - i) for i in range(31, 36)]          # nostrils, 33 is the tip
    pairs += [(i, 81 - i) for i in range(36, 40)]          # eye corners and upper lids
    pairs += [(i, 81 - i) for i in range(42, 46)]
    pairs += [(40, 47), (41, 46), (46, 41), (47, 40)]      # lower lids
    pairs += [(i, 102 - i) for i in range(48, 55)]         # outer upper lip, 51 on midline
    pairs += [(i, 114 - i) for i in range(55, 60)]         # outer lower lip, 57 on midline
    pairs += [(i, 124 - i) for i in range(60, 65)]         # inner upper lip, 62 on midline
    pairs += [(i, 132 - i) for i in range(65, 68)]         # inner lower lip, 66 on midline
    return pairs


_MIRROR = np.empty(NUM_LANDMARKS, dtype=np.int64)
for _i, _j in _pairs():
    _MIRROR[_i] = _j
_MIRROR.setflags(write=False)


def _require_68(count: int, what: str) -> None:
    if count != NUM_LANDMARKS:
        raise ValueError(f"{what} needs {NUM_LANDMARKS} landmarks, got {count}")


def check_68(shape, what: str = "the 68-point markup") -> np.ndarray:
    """The shape as an array [..., 68, 2], or a ValueError naming the count it has."""
    shape = np.asarray(shape)
    if shape.ndim < 2 or shape.shape[-1] != 2:
        raise ValueError(f"{what} needs shapes [..., {NUM_LANDMARKS}, 2], got array of shape "
                         f"{shape.shape}")
    _require_68(shape.shape[-2], what)
    return shape


def mirror_permutation(num_landmarks: int = NUM_LANDMARKS) -> np.ndarray:
    """Index array p such that, after x -> W - 1 - x, ``mirrored[p]`` puts every point back at
    its anatomical index.

    The permutation is its own inverse.
    """
    _require_68(int(num_landmarks), "the 68-point mirror permutation")
    return _MIRROR.copy()


def eye_contours(shape) -> tuple[np.ndarray, np.ndarray]:
    """The six points of the image-left eye and of the image-right eye, each [..., 6, 2]."""
    shape = check_68(shape, "eye_contours")
    return shape[..., LEFT_EYE, :], shape[..., RIGHT_EYE, :]


def pupils(shape) -> np.ndarray:
    """Pupil estimates [..., 2, 2] (image-left eye first) as eye-contour centroids, as DAN's
    error measure uses."""
    shape = check_68(shape, "pupils")
    left, right = eye_contours(shape)
    return np.stack([left.mean(axis=-2), right.mean(axis=-2)], axis=-2)


def outer_eye_corners(shape) -> np.ndarray:
    """Points 36 and 45 [..., 2, 2], the inter-ocular normalisation of 300-W."""
    shape = check_68(shape, "outer_eye_corners")
    return shape[..., OUTER_EYE_CORNERS, :]


def inter_pupil_distance(shape) -> np.ndarray:
    """Distance between the pupils, DAN's training normaliser (paper eq. 4)."""
    eyes = pupils(check_68(shape, "inter_pupil_distance"))
    return np.linalg.norm(eyes[..., 0, :] - eyes[..., 1, :], axis=-1)


def inter_ocular_distance(shape) -> np.ndarray:
    """Distance between the outer eye corners, the usual 300-W error normaliser."""
    corners = outer_eye_corners(check_68(shape, "inter_ocular_distance"))
    return np.linalg.norm(corners[..., 0, :] - corners[..., 1, :], axis=-1)


# --- The same distances in TensorFlow (training losses), float32 ---------------------------

def _check_68_tf(shapes, what: str):
    """float32 tensor [..., 68, 2]; the count must be static, since it decides what is measured."""
    import tensorflow as tf

    shapes = tf.cast(shapes, tf.float32)
    if shapes.shape.rank is None or shapes.shape.rank < 2 or shapes.shape[-1] != 2:
        raise ValueError(f"{what} needs shapes [..., {NUM_LANDMARKS}, 2], got tensor of shape "
                         f"{shapes.shape}")
    _require_68(shapes.shape[-2], what)
    return shapes


def inter_pupil_distance_tf(shapes):
    """``inter_pupil_distance`` of float32 shapes [..., 68, 2] -> [...]."""
    import tensorflow as tf

    shapes = _check_68_tf(shapes, "inter_pupil_distance_tf")
    left = tf.reduce_mean(tf.gather(shapes, LEFT_EYE, axis=-2), axis=-2)
    right = tf.reduce_mean(tf.gather(shapes, RIGHT_EYE, axis=-2), axis=-2)
    return tf.sqrt(tf.reduce_sum(tf.square(right - left), axis=-1))


def inter_ocular_distance_tf(shapes):
    """``inter_ocular_distance`` of float32 shapes [..., 68, 2] -> [...]."""
    import tensorflow as tf

    corners = tf.gather(_check_68_tf(shapes, "inter_ocular_distance_tf"), OUTER_EYE_CORNERS,
                        axis=-2)
    return tf.sqrt(tf.reduce_sum(tf.square(corners[..., 1, :] - corners[..., 0, :]), axis=-1))
