"""The canonical crop: one definition, one implementation, for training, evaluation and serving.

A face enters DAN's canonical frame (paper section 3) in three steps, and
Augment, the exported SavedModel and every tool that needs a crop call the
functions below, so the pixels a model is trained on are the pixels a TF
Serving client's request produces:

1. decode: ``tf.io.decode_image`` with three channels (JPEG/PNG/BMP/GIF;
   a grayscale file is replicated to RGB);
2. one grayscale conversion: ``tf.image.rgb_to_grayscale`` on float values
   (BT.601 weights), not rounded yet;
3. bilinear sampling through ``to_original`` (canonical -> original pixels,
   pixel centres at integers on both sides) with
   ``tf.raw_ops.ImageProjectiveTransformV3``, black outside the image, then
   rounded to uint8.

The transform is numpy (facealign.core.canonical, float64) for Augment's
perturbed crops and TensorFlow inside the serving graph; the one transform
both need, S0 fitted to a detector box, is `geometry.box_fit_transform` in
numpy and `BoxFit` here, with a parity test.

Steps 2 and 3 have a numpy twin at the end (`crops_numpy`), for the LiteRT
and ONNX models (serving/canonical_model.py), which need no TensorFlow: the
same grey weights and the same bilinear arithmetic, with a parity test
(tests/test_crop_numpy.py). TensorFlow is imported on first use, so the twin
runs without it.
"""
from __future__ import annotations

import numpy as np


class _TensorFlowOnFirstUse:
    """Stands for the tensorflow module until first used, then replaces itself with it."""

    def __getattr__(self, name):
        import tensorflow

        globals()["tf"] = tensorflow
        return getattr(tensorflow, name)


tf = _TensorFlowOnFirstUse()


def decode_gray(image_bytes) -> tf.Tensor:
    """float32 [H, W, 1] grey values (0-255, unrounded) of an encoded image (step 1 and 2)."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    return tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))


def gray_from_array(image) -> tf.Tensor:
    """float32 [H, W, 1] of a uint8 HxW, HxWx1 or RGB HxWx3 array, by the same conversion."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"images must be HxW, HxWx1 or HxWx3 (RGB), got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)   # as decode_image(channels=3) does for gray files
    return tf.image.rgb_to_grayscale(tf.constant(image, tf.float32))


def as_gray(image) -> tf.Tensor:
    """Encoded bytes or a uint8 array -> float32 [H, W, 1] grey values."""
    if isinstance(image, (bytes, bytearray)):
        return decode_gray(bytes(image))
    if isinstance(image, tf.Tensor):
        return image
    return gray_from_array(image)


def mirror(gray) -> tf.Tensor:
    """A grey image [H, W, 1] flipped left to right (x -> W - 1 - x), exactly."""
    return tf.reverse(gray, axis=[1])


def sample_bilinear(images, to_original, output_size) -> tf.Tensor:
    """float32 [K, S, S, C]: each image [K, H, W, C] sampled through its [K, 2, 3] to_original.

    The one call of ImageProjectiveTransformV3 in the project (it wants the
    output -> input direction, as rows of 8), black (0) outside the image;
    DAN's connection layer warps its standardised images with it too.
    output_size: S, or an int32 tensor [2].
    """
    rows = tf.reshape(tf.cast(to_original, tf.float32), [-1, 6])
    rows = tf.concat([rows, tf.zeros([tf.shape(rows)[0], 2])], axis=1)
    if isinstance(output_size, int):
        output_size = tf.constant([output_size, output_size])
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32), transforms=rows, output_shape=output_size,
        fill_value=tf.constant(0.0, tf.float32), interpolation="BILINEAR", fill_mode="CONSTANT")


def sample_bilinear_builtin(images, to_original, output_size) -> tf.Tensor:
    """sample_bilinear written with TFLite builtin ops only, for the LiteRT export.

    ImageProjectiveTransformV3 is no TFLite builtin (a converted model would
    need the Flex delegate, which LiteRT apps rarely ship), so the LiteRT
    model samples the same way by hand: each output pixel's source position
    through to_original, its four neighbours read by one GATHER each from the
    batch flattened to [K*H*W, C], weighted (1 - fx, fx) x (1 - fy, fy) as the
    kernel does, a neighbour outside the image read as 0 (the constant fill).
    Same arguments and result as sample_bilinear; tests/test_litert.py holds
    the two to the same pixels on real faces and random affines.
    """
    images = tf.cast(images, tf.float32)
    dynamic = tf.shape(images)
    height, width, channels = (images.shape[i] if images.shape[i] is not None else dynamic[i]
                               for i in (1, 2, 3))
    if isinstance(output_size, int):
        out_height = out_width = output_size
    else:
        static = tf.get_static_value(output_size)
        out_height, out_width = ((int(static[0]), int(static[1])) if static is not None
                                 else (output_size[0], output_size[1]))
    rows = tf.reshape(tf.cast(to_original, tf.float32), [-1, 6])
    grid_y, grid_x = tf.meshgrid(tf.range(out_height, dtype=tf.float32),
                                 tf.range(out_width, dtype=tf.float32), indexing="ij")
    grid_x, grid_y = tf.reshape(grid_x, [1, -1]), tf.reshape(grid_y, [1, -1])   # [1, P]
    x = rows[:, 0:1] * grid_x + rows[:, 1:2] * grid_y + rows[:, 2:3]            # [K, P]
    y = rows[:, 3:4] * grid_x + rows[:, 4:5] * grid_y + rows[:, 5:6]
    x_floor, y_floor = tf.floor(x), tf.floor(y)
    flat = tf.reshape(images, [-1, channels])                                  # [K*H*W, C]
    first = tf.range(tf.shape(rows)[0]) * (height * width)                     # [K]
    last_x, last_y = tf.cast(width - 1, tf.float32), tf.cast(height - 1, tf.float32)

    def read(y_at, x_at):
        """[K, P, C]: the pixels at integer positions (float), 0 outside the image."""
        inside = tf.logical_and(tf.logical_and(x_at >= 0.0, x_at <= last_x),
                                tf.logical_and(y_at >= 0.0, y_at <= last_y))
        column = tf.cast(tf.clip_by_value(x_at, 0.0, last_x), tf.int32)
        row = tf.cast(tf.clip_by_value(y_at, 0.0, last_y), tf.int32)
        values = tf.gather(flat, first[:, None] + row * width + column)
        return values * tf.cast(inside, tf.float32)[..., None]

    x_weight = (x - x_floor)[..., None]
    y_weight = (y - y_floor)[..., None]
    top = (1.0 - x_weight) * read(y_floor, x_floor) + x_weight * read(y_floor, x_floor + 1.0)
    bottom = ((1.0 - x_weight) * read(y_floor + 1.0, x_floor)
              + x_weight * read(y_floor + 1.0, x_floor + 1.0))
    sampled = (1.0 - y_weight) * top + y_weight * bottom
    return tf.reshape(sampled, [-1, out_height, out_width, channels])


def warp(gray, to_original, size: int) -> tf.Tensor:
    """uint8 [K, size, size, 1]: K crops of one grey image [H, W, 1] (step 3).

    to_original: [K, 2, 3] (or [2, 3] for one crop), canonical -> original pixels.
    """
    to_original = tf.reshape(tf.cast(to_original, tf.float32), [-1, 2, 3])
    images = tf.repeat(tf.cast(gray, tf.float32)[None], tf.shape(to_original)[0], axis=0)
    crops = sample_bilinear(images, to_original, int(size))
    return tf.cast(tf.clip_by_value(tf.round(crops), 0, 255), tf.uint8)


def crops(image, to_original, size: int) -> np.ndarray:
    """uint8 [K, size, size] crops of an image (bytes or array) through [K, 2, 3] transforms."""
    to_original = np.asarray(to_original, np.float64).reshape(-1, 2, 3)
    return warp(as_gray(image), to_original.astype(np.float32), size).numpy()[..., 0]


# --- S0 fitted to a detector box, in TensorFlow ----------------------------------------------

class BoxFit:
    """geometry.box_fit_transform (DAN's bestFitRect) for boxes [B, 4] inside the serving graph.

    scale = mean of the box's and S0's width and height ratios; the box
    centre goes onto S0's bounding-box centre.
    """

    def __init__(self, mean_shape):
        mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)
        low, high = mean_shape.min(axis=0), mean_shape.max(axis=0)
        self.extent = tf.constant(high - low, tf.float32)
        self.centre = tf.constant((low + high) / 2, tf.float32)

    def scale_and_centre(self, boxes):
        """(scale [B], box centre [B, 2])."""
        boxes = tf.cast(boxes, tf.float32)
        scale = tf.reduce_mean((boxes[:, 2:] - boxes[:, :2]) / self.extent, axis=-1)
        return scale, (boxes[:, :2] + boxes[:, 2:]) / 2

    def to_original(self, scale, centre):
        """[B, 2, 3] canonical -> original affines from scale_and_centre's output."""
        offset = centre - scale[:, None] * self.centre
        zero = tf.zeros_like(scale)
        rows = tf.stack([scale, zero, offset[:, 0], zero, scale, offset[:, 1]], axis=1)
        return tf.reshape(rows, [-1, 2, 3])

    def points_to_original(self, points, scale, centre):
        """Canonical points [B, N, 2] mapped to the original images."""
        return scale[:, None, None] * (points - self.centre) + centre[:, None, :]


# --- the boxes a crop can hold: the serving graph's checks (trainer/export.py), in numpy ------

MIN_BOX_PIXELS = 4.0    # a box narrower or lower than this holds no face to align
MAX_BOX_TO_IMAGE = 8.0  # nor one wider or higher than this many times the image's longer side


def box_problem(box, image_shape) -> str | None:
    """Why the serving graph would refuse `box` [4] on an image of `image_shape` (H, W, ...),
    in its words, or None: trainer/export.assert_boxes and assert_box_on_image in numpy."""
    x0, y0, x1, y1 = (float(v) for v in box)
    height, width = float(image_shape[0]), float(image_shape[1])
    if not np.all(np.isfinite([x0, y0, x1, y1])):
        return "is not finite"
    if x1 < x0:
        return "is inverted (x1 < x0)"
    if y1 < y0:
        return "is inverted (y1 < y0)"
    if x1 == x0 or y1 == y0:
        return "is empty (x1 = x0 or y1 = y0)"
    if x1 - x0 < MIN_BOX_PIXELS or y1 - y0 < MIN_BOX_PIXELS:
        return (f"is too small ({x1 - x0:g} x {y1 - y0:g} px; the least is "
                f"{MIN_BOX_PIXELS:g} x {MIN_BOX_PIXELS:g})")
    if not (x0 < width and x1 > 0 and y0 < height and y1 > 0):
        return f"does not overlap the {width:g} x {height:g} image"
    extent = max(x1 - x0, y1 - y0)
    if extent > MAX_BOX_TO_IMAGE * max(width, height):
        return (f"is too large for the {width:g} x {height:g} image ({extent:g} px; the most "
                f"is {MAX_BOX_TO_IMAGE:g} times its longer side)")
    return None


# --- the numpy twin of steps 2 and 3 ---------------------------------------------------------

# tf.image.rgb_to_grayscale's weights (ITU-R BT.601), in RGB order
GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], np.float32)


def crops_numpy(image, to_original, size: int, channel_order: str = "rgb") -> np.ndarray:
    """uint8 [K, size, size]: `crops` without TensorFlow, for a uint8 [H, W] or [H, W, 3] array.

    Each output pixel's source position goes through its to_original
    ([K, 2, 3] or [2, 3], canonical -> original pixels); its four neighbours
    are read from the colour image, turned grey by the BT.601 weights
    (float32, unrounded, as step 2) and weighted (1 - fx, fx) x (1 - fy, fy)
    as ImageProjectiveTransformV3 does, a neighbour outside the image reading 0;
    then rounded half to even as tf.round. Only the pixels read are converted,
    not the whole photo. channel_order: "rgb", or "bgr" for an OpenCV image.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
            image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise ValueError(f"images must be uint8 HxW, HxWx1 or HxWx3, got {image.dtype} "
                         f"{list(image.shape)}")
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    image = image.reshape(image.shape[0], image.shape[1], -1)
    weights = GRAY_WEIGHTS if channel_order == "rgb" else GRAY_WEIGHTS[::-1].copy()
    rows = np.asarray(to_original, np.float32).reshape(-1, 6)
    return np.stack([_crop_numpy(image, weights, row, int(size)) for row in rows])


def _grey(pixels, weights) -> np.ndarray:
    """float32 grey values of uint8 pixels [..., C], as gray_from_array (C = 1: replicated)."""
    pixels = pixels.astype(np.float32)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return pixels @ weights


def _axis(start, step, count: int, length: int):
    """Along one axis: source positions start + step * i -> (floor index, fraction, indices of
    the two neighbours clipped into [0, length), whether each neighbour is inside)."""
    position = step * np.arange(count, dtype=np.float32) + start
    floor = np.floor(position)
    index = floor.astype(np.int64)
    neighbours = np.concatenate([index, index + 1])
    inside = (neighbours >= 0) & (neighbours < length)
    return position - floor, np.clip(neighbours, 0, length - 1), inside


def _crop_numpy(image, weights, row, size: int) -> np.ndarray:
    """One crop [size, size] through one to_original row (a, b, c, d, e, f)."""
    height, width = image.shape[:2]
    if row[1] == 0 and row[3] == 0:
        # Scale and translation only (S0 fitted to a box: every serving crop): x depends on
        # the column alone and y on the row alone, so the 2 x size rows and columns read are
        # taken as one block, without a gather per pixel. The same arithmetic as below.
        fx, columns, column_inside = _axis(row[2], row[0], size, width)
        fy, rows, row_inside = _axis(row[5], row[4], size, height)
        block = _grey(np.take(image[rows], columns, axis=1), weights)
        block *= row_inside[:, None] & column_inside[None, :]
        fx, fy = fx[None, :], fy[:, None]
        top_left, top_right = block[:size, :size], block[:size, size:]
        bottom_left, bottom_right = block[size:, :size], block[size:, size:]
    else:
        grid = np.arange(size, dtype=np.float32)
        grid_y, grid_x = np.meshgrid(grid, grid, indexing="ij")
        x = row[0] * grid_x + row[1] * grid_y + row[2]
        y = row[3] * grid_x + row[4] * grid_y + row[5]
        x_floor, y_floor = np.floor(x), np.floor(y)
        fx, fy = x - x_floor, y - y_floor
        column, line = x_floor.astype(np.int64), y_floor.astype(np.int64)
        flat = image.reshape(height * width, -1)

        def read(line_at, column_at):
            inside = (column_at >= 0) & (column_at < width) & (line_at >= 0) & (line_at < height)
            index = np.clip(line_at, 0, height - 1) * width + np.clip(column_at, 0, width - 1)
            return _grey(np.take(flat, index, axis=0), weights) * inside

        top_left, top_right = read(line, column), read(line, column + 1)
        bottom_left, bottom_right = read(line + 1, column), read(line + 1, column + 1)
    top = (1 - fx) * top_left + fx * top_right
    bottom = (1 - fx) * bottom_left + fx * bottom_right
    sampled = (1 - fy) * top + fy * bottom
    return np.clip(np.round(sampled), 0, 255).astype(np.uint8)
