"""The Attentional Alignment Network (AAN): direct landmark regression with attention.

image [B, 112, 112, 1] (0-255) -> ImageStandardization (per-pixel mean/std,
shared with DAN) -> four building blocks, each a residual bottleneck block
(trainer.aan_layers.BottleneckBlock, widths base, 2b, 4b, 8b, outputs 4x
those) followed by an attention block F = (1 + M) * H, with a 2x2 max
pooling after each block (112 -> 56 -> 28 -> 14 -> 7) -> flatten of the
7x7 features -> nonlinear embedding phi = cos(Wx + b), d = 256 (eq. 4) ->
a linear layer of 2N outputs.

Choices where the paper is silent:
- No stem convolution: block 1's projection shortcut takes the 1-channel
  image. Max pooling (the paper says "pooling layers").
- The embedding sees the flattened 7x7 map (it is "the feature vector
  produced by the last residual block"): flattening keeps where things are,
  which direct coordinate regression needs.
- The linear output layers predict offsets from the mean shape S0 and start
  at zero, so an untrained network outputs S0 (as DAN's stage 1); the
  coordinates are still regressed directly in the canonical frame. The
  offsets are in units of the image size (x image_size -> pixels, the
  "*_pixels" Rescaling layers): the cos features are bounded by 1, and with
  pixel-valued outputs Adam at lr 1e-3 would need ~100x more steps to move
  the output weights (and the output bias) far enough - a tiny AAN did not
  fit 8 faces in 150 steps that way, and does in units of the image size.
- Intermediate supervision: each of the four attention blocks' weighted
  features F_k -> global average pooling -> dense 2N (float32) -> S0 + offsets,
  output "head_k". GAP keeps these heads small (a flatten of block 1's
  112x112 map would be millions of weights) and attention maps must still
  carry the landmark information for them to predict. All heads get the same
  ground truth; their losses and the final one are summed (weight 1 each).
- Mixed bfloat16: convs, BN and attention compute in bfloat16; the cosine
  embedding, the output layers and the shape additions stay float32.

build_aan_model returns the training model, outputs {"stage_1": final,
"head_1".."head_4"} (heads only with intermediate supervision);
inference_model drops the heads: {"stage_1", "landmarks"}, what
trainer/export.py expects (AAN is one "stage").
"""
from __future__ import annotations

import keras
import numpy as np

from facealign.config import AanConfig
from trainer.aan_layers import AttentionBlock, BottleneckBlock, CosineEmbedding
from trainer.dan_model import PRECISIONS, ImageStandardization, InitialShape, ShapeUpdate

NUM_BLOCKS = 4
FINAL = "stage_1"


def head_name(block: int) -> str:
    return f"head_{block}"


def build_aan_model(mean_shape, pixel_mean, pixel_std, config: AanConfig | None = None,
                    precision: str = "float32", name: str = "aan") -> keras.Model:
    """The AAN training model (dict of float32 [B, N, 2] outputs; see the module doc).

    mean_shape: S0 [N, 2] (any N); pixel_mean, pixel_std: [size, size] training statistics.
    """
    config = config or AanConfig()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)
    num_landmarks = mean_shape.shape[0]
    image_size = np.asarray(pixel_mean).shape[0]
    layers = keras.layers

    image = keras.Input((image_size, image_size, 1), name="image")
    x = ImageStandardization(pixel_mean, pixel_std, name="standardize")(image)
    initial = InitialShape(mean_shape, name="initial_shape")(image)
    outputs = {}
    heads = {}
    for block in range(1, NUM_BLOCKS + 1):
        width = config.base_filters * 2 ** (block - 1)
        x = BottleneckBlock(width, name=f"block{block}_residual", dtype=precision)(x)
        x = AttentionBlock(config.attention, name=f"block{block}_attention", dtype=precision)(x)
        if config.intermediate_supervision:
            pooled = layers.GlobalAveragePooling2D(name=f"head{block}_gap", dtype=precision)(x)
            delta = layers.Dense(2 * num_landmarks, kernel_initializer="zeros",
                                 name=f"head{block}_fc", dtype="float32")(pooled)
            delta = layers.Rescaling(image_size, name=f"head{block}_pixels",
                                     dtype="float32")(delta)
            heads[head_name(block)] = ShapeUpdate(name=head_name(block))([initial, delta])
        x = layers.MaxPooling2D(2, name=f"pool{block}", dtype=precision)(x)
    x = layers.Flatten(name="flatten", dtype=precision)(x)
    if config.embedding == "cosine":
        x = CosineEmbedding(config.embedding_dim, name="embedding")(x)
    else:
        x = layers.Dense(config.embedding_dim, name="embedding", dtype="float32")(x)
    delta = layers.Dense(2 * num_landmarks, kernel_initializer="zeros", name="output_fc",
                         dtype="float32")(x)
    delta = layers.Rescaling(image_size, name="output_pixels", dtype="float32")(delta)
    outputs[FINAL] = ShapeUpdate(name=FINAL)([initial, delta])
    outputs.update(heads)
    return keras.Model(image, outputs, name=name)


def inference_model(model: keras.Model) -> keras.Model:
    """The exported AAN: the training model's layers without the intermediate heads."""
    final = model.get_layer(FINAL).output
    landmarks = keras.layers.Identity(name="landmarks", dtype="float32")(final)
    return keras.Model(model.inputs, {FINAL: final, "landmarks": landmarks},
                       name=f"{model.name}_inference")
