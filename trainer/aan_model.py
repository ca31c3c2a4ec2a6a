"""The Attentional Alignment Network (AAN): direct landmark regression with attention.

image [B, 112, 112, 1] (0-255) -> ImageStandardization (per-pixel mean/std,
shared with DAN) -> stem (7x7 conv, BN, ReLU) -> four building blocks, each
`units_per_block[k]` residual bottleneck units (trainer.aan_layers.
BottleneckBlock, widths base, 2b, 4b, 8b, outputs 4x those) followed by an
attention block F = (1 + M) * H, with a 2x2 max pooling after each block
(112 -> 56 -> 28 -> 14 -> 7) -> flatten of the 7x7 features -> nonlinear
embedding phi = cos(Wx + b), d = 256 (eq. 4) -> a linear layer of 2N outputs.

What the paper says, what we chose, and why (issue #14):

- Attention (sec. 3.1, eq. 1). "1x1 convolutional layer with BN and relu
  ... normalized by a sigmoid layer into the range of [0, 1]", combined as
  F = (1 + M) * H (eq. 1, the residual form; the plain M * H of eq. 2 "leads
  to sharp plunge in feature values"). A ReLU straight before the sigmoid
  contradicts the stated range (M would be in [0.5, 1), with no gradient
  wherever the ReLU is off), so M = sigmoid(BN(conv1x1(H))), in (0, 1).
- Backbone (sec. 3.1, 4.2). "Four stacking building blocks ... one residual
  bottleneck block followed by one attention block ... the same as [6]",
  "four residual blocks and four pooling layers". Read literally that is
  four bottleneck units: four 3x3 convolutions, a 46 px receptive field,
  and block 1's 1x1 reduction of the one-channel image is rank 1. We read a
  "residual block" as a ResNet stage ([6]'s conv2_x .. conv5_x) of
  `model.aan.units_per_block` units, default [2, 2, 2, 2] (ResNet-50's
  [3, 4, 6, 3] and the literal [1, 1, 1, 1] are one setting away), and add
  a stride-1 7x7 stem (ConvStem, as ResNet's conv1 but without its stride,
  since the paper's four poolings already reach 7x7). [2, 2, 2, 2]: a
  receptive field of 82 px (the canonical face spans ~56 px); at base 16
  1.06 GFLOPs an image, 1.9x the 0.56 of the one-unit network without a
  stem and a fifth of DAN stage 1's 5.1, where [3, 4, 6, 3] would be 1.94
  (training speed: the next item). A unit costs the
  same FLOPs in every block (the map's side halves as the width doubles),
  so no block is the cheap one to deepen.
  Attention sits after each block's last unit (one map per block, Fig. 4).
- Intermediate supervision (sec. 3.2). "We use the intermediate features
  weighted by attention maps to conduct early prediction"; the heads are
  removed at test time; "the same ground truth ... sum up into the overall
  loss". The paper does not say how a head predicts. Each head: average
  pooling of its block's F to the final 7x7 grid, 1x1 conv to
  HEAD_CHANNELS + BN + ReLU, flatten, dense 2N (trainer.aan_layers.
  HeadFeatures). Global average pooling, as before, kept only what the
  features are and not where, yet coordinates are positions and the heads
  carried 4/5 of the loss. Pooling to 7x7 (not flattening the
  112x112 map: millions of weights) keeps where, as the final path's
  flatten does; averaging rather than max passes gradient to every
  position of the attention map.
- Table 5 ablations, one switch per concept (TABLE5 below). "w/o attention"
  removes the attention mechanism, which the paper defines together with
  its intermediate supervision ("attention mechanism associated with
  intermediate supervision", the heads read "features weighted by
  attention maps"): no attention blocks and no heads, one output.
  "w/o NE layer" removes the cosine embedding: the flattened features go
  straight into the linear output layer (embedding: none; embedding: linear
  keeps a d-unit linear layer instead, not a paper row), scaled by 1/sqrt(D)
  (D = 7 x 7 x 8 x base, 25,088 at base 16), as the cosine layer scales its
  W = V / sqrt(D). Without that scaling Adam moves each of the D weights by
  about the learning rate a step, so the output by ~1e-3 x sum |x|: several
  image sizes. Measured (benchmarks/aan_ablation.py, AMD Zen 3, float32,
  batch 32, lr 1e-3): the unscaled row's validation NME was 3,132%, 107%,
  251%, 375% after epochs 1-4 (20 steps each), where the AAN's was 21%,
  21%, 19%, 18%; the paper's row trained, so the comparison it makes is of
  the nonlinearity, not of a step size.
- Weight decay (sec. 4.2): "0.001" with Adam. In 2018 code (Caffe's
  weight_decay, PyTorch's Adam(weight_decay=...), TF's l2_regularizer) that
  is a coupled L2 term: 0.001 * W added to the gradient before Adam's
  normalisation, i.e. a kernel regulariser L2(0.001 / 2); Keras' AdamW
  instead shrinks by lr * 0.001 = 1e-6 per step, about nothing. Kernels only
  (biases, BN, the cosine phases are not decayed); the cosine embedding's on
  W of eq. 4, not on its stored V = sqrt(D) W (trainer.aan_layers).
  Measured on configs/300w-aan.yaml's model (base 16, [2, 2, 2, 2]) at
  initialisation, 16 AFW faces (tests/real_faces.py crops), output layers
  at N(0, 0.001) weights: the
  L2 term is 4.07 against a summed NME of 1.32 (five outputs x ~0.26), but
  3.94 of it is on conv kernels followed by BN, whose scale the NME cannot
  see: there the decay only shrinks the norm (raising the effective step
  size). In gradients, 0.001 W is ~10% of the NME's on the conv kernels and
  ~3% on the embedding's W: a real regulariser that does not swamp the NME.
  The earlier claim that a coupled L2 would swamp the NME held only for V:
  an L2 on V is D (25,088) times larger, 3,211 on its own. The paper does
  not state its training loss, so the decay's strength relative to it
  cannot be matched exactly; model.aan.weight_decay is tunable.
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
- Mixed bfloat16: convs, BN, attention and head features compute in
  bfloat16; the cosine embedding, the dense output layers and the shape
  additions stay float32.
- Training speed (issue #14 asks for the DAN's stage-1 speed or the reason
  it cannot be). configs/300w-aan.yaml's network (base 16, [2, 2, 2, 2],
  stem) on a 2-core AMD Zen 4 (avx512_bf16, mixed_bfloat16, batch 32,
  `benchmarks/model_speed.py --quick --train-batch 32 --aan-config
  configs/300w-aan.yaml`, cpu_share 0.72, 2026-12-02): AAN 34.7 img/s,
  DAN stage 1 20.1, so there it is 1.7x faster (its pipeline run: 38.8
  img/s at batch 64). On the Intel Xeon (AMX), which runs dense
  convolutions far faster, the paper's width is slower, and it cannot be
  as fast. One Adam step of batch 64, mixed_bfloat16, 2-core Intel Xeon
  (AMX), fused BatchNorm: DAN stage 1 (Table 1) 76.7 img/s; AAN base 32
  (AanConfig's default) 16.2, base 16 [2, 2, 2, 2] (configs/300w-aan.yaml)
  34.8. AMD EPYC (Zen 3), float32, batch 32 (benchmarks/model_speed.py):
  DAN stage 1 3.73, AAN base 32 1.88. The AAN does a fifth of the DAN's
  FLOPs but is bound by memory, not arithmetic: the paper keeps block 1 at
  the full 112x112 with 4 x base output channels (the bottleneck's
  expansion), and each unit there is a chain of elementwise passes (BN,
  ReLU, the residual add; then the attention's sigmoid and (1 + M) * H) over
  a 112x112x128 map at base 32. Forward + backward per part (base 32, bf16,
  batch 64): block 1 2.0 s of 4.5 s (its units 0.84 and 0.79, attention
  0.33, pooling 0.12), block 2 1.1, block 3 0.6, block 4 0.37, stem 0.08,
  embedding 0.04. DAN's stage is dense 3x3 convolutions, which run at the
  CPU's matrix speed. XLA (jit_compile) made the AAN slower (8.2 img/s). A
  stride-2 stem with one pooling fewer would quarter block 1's map (an
  estimated ~1.7x, still below the DAN) but departs from the paper's
  resolution: not implemented.

Ablation figures (Table 5 rows on our 300-W validation faces; inter-ocular
NME, AUC@0.08, failure rate through the serving signature; README has the
table): benchmarks/aan_ablation.py --batch-size 32 --steps-per-epoch 20,
configs/300w-aan.yaml, 160 steps of 32 from random weights, AMD EPYC Zen 3,
float32, 16-19 min a row, 2026-12-02: AAN 14.44% / 0.016 / 82%; w/o
attention 15.50% / 0.004 / 95%; w/o NE layer (1/sqrt(D) scaled) 11.75% /
0.048 / 73%; w/o both 9.97% / 0.075 / 62%; S0 16.2%. Half a pass over the
data: the simpler networks learn faster at first; the paper's order (AAN
best) is a claim about trained networks, not tested at this budget.

build_aan_model returns the training model, outputs {"stage_1": final,
"head_1".."head_4"} (heads only with attention and intermediate
supervision); inference_model drops the heads: {"stage_1", "landmarks"},
what trainer/export.py expects (AAN is one "stage").
"""
from __future__ import annotations

import keras
import numpy as np

from facealign.core.config import AanConfig
from trainer.aan_layers import (
    AttentionBlock,
    BottleneckBlock,
    ConvStem,
    CosineEmbedding,
    HeadFeatures,
)
from trainer.dan_model import PRECISIONS, ImageStandardization, InitialShape, ShapeUpdate

NUM_BLOCKS = 4
FINAL = "stage_1"
STEM_KERNEL = 7
FLATTEN_SCALE = "flatten_scale"   # 1 / sqrt(D) before a linear layer on the flattened map
HEAD_CHANNELS = 16        # a head's dense layer: 7 * 7 * 16 * 2N weights (107k for 68 points)
# Table 5's rows as AanConfig overrides (one switch per concept of the paper).
TABLE5 = {"AAN": {},
          "w/o attention": {"attention": False},
          "w/o NE layer": {"embedding": "none"},
          "w/o both": {"attention": False, "embedding": "none"}}


def head_name(block: int) -> str:
    return f"head_{block}"


def weight_decay_regularizer(weight_decay: float):
    """The coupled weight decay of sec. 4.2: weight_decay * W on the gradient (None if 0)."""
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay > 0 else None


def _shape_output(features, initial, num_landmarks, image_size, name, prefix, regularizer):
    """S0 + image_size * dense(features): a dense 2N layer from zero, as an [B, N, 2] shape."""
    layers = keras.layers
    delta = layers.Dense(2 * num_landmarks, kernel_initializer="zeros",
                         kernel_regularizer=regularizer, name=f"{prefix}_fc",
                         dtype="float32")(features)
    delta = layers.Rescaling(image_size, name=f"{prefix}_pixels", dtype="float32")(delta)
    return ShapeUpdate(name=name)([initial, delta])


def build_aan_model(mean_shape, pixel_mean, pixel_std, config: AanConfig | None = None,
                    precision: str = "float32", name: str = "aan") -> keras.Model:
    """The AAN training model (dict of float32 [B, N, 2] outputs; see the module doc).

    mean_shape: S0 [N, 2] (any N); pixel_mean, pixel_std: [size, size] training
    statistics, size a multiple of 16 (four 2x2 poolings).
    """
    config = config or AanConfig()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)
    num_landmarks = mean_shape.shape[0]
    image_size = np.asarray(pixel_mean).shape[0]
    if image_size % 2 ** NUM_BLOCKS:
        raise ValueError(f"the AAN needs an image size that is a multiple of "
                         f"{2 ** NUM_BLOCKS}, got {image_size}")
    grid = image_size // 2 ** NUM_BLOCKS
    regularizer = weight_decay_regularizer(config.weight_decay)
    with_heads = config.attention and config.intermediate_supervision
    layers = keras.layers

    image = keras.Input((image_size, image_size, 1), name="image")
    x = ImageStandardization(pixel_mean, pixel_std, name="standardize")(image)
    initial = InitialShape(mean_shape, name="initial_shape")(image)
    x = ConvStem(config.base_filters, STEM_KERNEL, kernel_regularizer=regularizer,
                 name="stem", dtype=precision)(x)
    outputs = {}
    heads = {}
    for block, units in enumerate(config.units_per_block, start=1):
        width = config.base_filters * 2 ** (block - 1)
        for unit in range(1, units + 1):
            x = BottleneckBlock(width, kernel_regularizer=regularizer,
                                name=f"block{block}_unit{unit}", dtype=precision)(x)
        if config.attention:
            x = AttentionBlock(kernel_regularizer=regularizer, name=f"block{block}_attention",
                               dtype=precision)(x)
        if with_heads:
            features = HeadFeatures(grid, HEAD_CHANNELS, kernel_regularizer=regularizer,
                                    name=f"head{block}_features", dtype=precision)(x)
            heads[head_name(block)] = _shape_output(features, initial, num_landmarks, image_size,
                                                    head_name(block), f"head{block}", regularizer)
        x = layers.MaxPooling2D(2, name=f"pool{block}", dtype=precision)(x)
    x = layers.Flatten(name="flatten", dtype=precision)(x)
    if config.embedding == "cosine":   # scales its own W by 1 / sqrt(D) (V / sqrt(D))
        x = CosineEmbedding(config.embedding_dim, kernel_regularizer=regularizer,
                            name="embedding")(x)
    else:                              # a linear layer on the map: the same 1 / sqrt(D)
        x = layers.Rescaling(1.0 / np.sqrt(x.shape[-1]), name=FLATTEN_SCALE, dtype="float32")(x)
    if config.embedding == "linear":
        x = layers.Dense(config.embedding_dim, kernel_regularizer=regularizer, name="embedding",
                         dtype="float32")(x)
    outputs[FINAL] = _shape_output(x, initial, num_landmarks, image_size, FINAL, "output",
                                   regularizer)
    outputs.update(heads)
    return keras.Model(image, outputs, name=name)


def inference_model(model: keras.Model) -> keras.Model:
    """The exported AAN: the training model's layers without the intermediate heads."""
    final = model.get_layer(FINAL).output
    landmarks = keras.layers.Identity(name="landmarks", dtype="float32")(final)
    return keras.Model(model.inputs, {FINAL: final, "landmarks": landmarks},
                       name=f"{model.name}_inference")
