"""Tiny real models for the serving tests and the latency benchmark (no training).

- :func:`export_tiny_dan`: a real 2-stage DAN (4 base filters, 16 fc units,
  untrained) with S0 from real 300-W faces, exported by trainer.export exactly
  as the Trainer does. Its points are S0 fitted to the box plus small,
  image-dependent moves.
- :func:`export_centroid_model`: the DAN's dict interface around a probe
  that moves S0 by the offset of the canonical crop's brightness centroid from
  the frame centre, so on a face pasted on a black canvas it follows the face
  exactly: what the tracking test needs from a model that was never trained.
- :func:`tiny_aan`: an untrained AAN with random weights everywhere, answering per image.
- :func:`export_legacy_aan`: a tiny AAN with the interface models had before
  landmark_spread and the in-graph input checks, for the tests that models
  already deployed keep working.
"""
from __future__ import annotations

import pathlib

import numpy as np

SIZE = 112


def mean_shape_from_pts(pts_paths) -> np.ndarray:
    """S0 in the canonical frame [N, 2] from a few annotated faces (.pts files)."""
    from facealign.core import canonical, geometry
    from facealign.core.data.pts import read_pts

    shapes = [read_pts(pathlib.Path(p)) for p in pts_paths]
    if not shapes:
        raise ValueError("no .pts file to build a mean shape from")
    mean = geometry.procrustes_mean(shapes)
    return canonical.CanonicalFrame.from_mean_shape(mean, SIZE).mean_shape


def afw_mean_shape(shared_data, count: int = 12) -> np.ndarray:
    """S0 from the first `count` AFW faces of ../shared/data/300w."""
    return mean_shape_from_pts(sorted((pathlib.Path(shared_data) / "300w" / "afw")
                                      .glob("*.pts"))[:count])


def tiny_dan(mean_shape, seed: int = 0):
    import keras

    from facealign.core.config import DanConfig
    from trainer.dan_model import build_dan_model

    keras.utils.set_random_seed(seed)
    flat = np.full((SIZE, SIZE), 128.0, np.float32)
    return build_dan_model(mean_shape, flat, np.full_like(flat, 64.0),
                           DanConfig(stages=2, base_filters=4, fc_units=16, dropout=0.0))


def tiny_aan(mean_shape, config, seed: int = 0):
    """(training model, exported view) of an AAN of `config` (an AanConfig) with every weight
    random: the output layers start at zero and would answer S0 whatever the image."""
    from trainer.aan_model import build_aan_model, inference_model

    flat = np.full((SIZE, SIZE), 128.0, np.float32)
    model = build_aan_model(mean_shape, flat, flat / 2, config)
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        if not np.any(variable.numpy()):
            variable.assign(rng.normal(0, 0.01, variable.shape).astype(np.float32))
    return model, inference_model(model)


def export_tiny_dan(path, mean_shape, warmup_faces=None, seed: int = 0, metadata=None):
    """(keras model, path): the tiny DAN exported to `path` (a version folder)."""
    from trainer import export

    model = tiny_dan(mean_shape, seed)
    export.export_saved_model(model, mean_shape, str(path),
                              metadata={"model": "tiny-dan", **(metadata or {})},
                              warmup_faces=warmup_faces)
    return model, str(path)


def centroid_model(mean_shape):
    import keras
    import tensorflow as tf

    shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)
    centre = (SIZE - 1) / 2.0

    def move(images):
        pixels = tf.cast(images[..., 0], tf.float32)
        grid = tf.range(SIZE, dtype=tf.float32)
        mass = tf.reduce_sum(pixels, axis=[1, 2]) + 1e-3
        cx = tf.reduce_sum(pixels * grid[None, None, :], axis=[1, 2]) / mass
        cy = tf.reduce_sum(pixels * grid[None, :, None], axis=[1, 2]) / mass
        offset = tf.stack([cx, cy], axis=-1) - centre
        return tf.constant(shape)[None] + offset[:, None, :]

    image = keras.Input((SIZE, SIZE, 1), name="image")
    first = keras.layers.Lambda(
        lambda x: tf.tile(tf.constant(shape)[None], [tf.shape(x)[0], 1, 1]),
        output_shape=shape.shape, name="s1")(image)
    second = keras.layers.Lambda(move, output_shape=shape.shape, name="s2")(image)
    return keras.Model(image, {"stage_1": first, "stage_2": second})


def export_centroid_model(path, mean_shape):
    from trainer import export

    model = centroid_model(mean_shape)
    export.export_saved_model(model, mean_shape, str(path), metadata={"model": "centroid"})
    return model, str(path)


def export_legacy_aan(path, mean_shape):
    """A tiny untrained AAN exported as trainer.export did until 2026-11 (pretrained/aan-300w
    version 1795285831, replaced in issue #14): the signatures answer landmarks and
    stage_spread only, and nothing in the graph checks the inputs or outputs (a NaN box gives
    NaN landmarks). The metadata lists those outputs. Returns the path."""
    import tensorflow as tf

    from facealign.core import model_format
    from facealign.core.config import AanConfig
    from trainer import export
    from trainer.aan_model import build_aan_model, inference_model

    class LegacyGraph(export._Graph):
        """The current graph less landmark_spread and every check (from_examples inherited)."""

        def canonical(self, image):
            return {k: v for k, v in super().canonical(image).items() if k != "landmark_spread"}

        checked_canonical = canonical

        def from_photos(self, image_bytes, box):
            scale, centre = self.fit(box)
            crops = tf.map_fn(self.crop_one, (image_bytes, scale, centre),
                              fn_output_signature=tf.TensorSpec([self.size, self.size, 1],
                                                                tf.uint8))
            result = self.canonical(crops)
            result["landmarks"] = self.box_fit.points_to_original(result["landmarks"], scale,
                                                                  centre)
            return result

    flat = np.full((SIZE, SIZE), 120.0, np.float32)
    model = inference_model(build_aan_model(mean_shape, flat, flat / 2,
                                            AanConfig(base_filters=2, embedding_dim=8)))
    export.export_saved_model(model, mean_shape, str(path), metadata={"model": "legacy-aan"})
    module = export._ServingModule(model, LegacyGraph(model, np.asarray(mean_shape, np.float32),
                                                      SIZE))
    tf.saved_model.save(module, str(path), signatures={  # over the current export's graph
        model_format.SERVING_DEFAULT: module.serving_default,
        model_format.TF_EXAMPLE: module.serving_tf_example,
        model_format.PREDICT_CANONICAL: module.predict_canonical})
    metadata = model_format.ModelMetadata.read(path).to_dict()
    for signature in metadata["signatures"].values():
        signature["outputs"].pop("landmark_spread")
    model_format.ModelMetadata.from_dict(metadata).write(path)
    return str(path)
