"""The pipeline.yaml schema: one typed, validated configuration for every step.

Every section forbids unknown keys and checks types and ranges on load, so a
typo or a bad value stops the run with a message naming the key instead of
silently falling back to a default. ``--set section.key=value`` overrides any
value from the command line; the override goes through the same validation.
"""
from __future__ import annotations

import pathlib
from typing import Annotated, Literal

import pydantic
import yaml
from pydantic import Field


class ConfigError(ValueError):
    """A configuration problem, with the offending key in the message."""


class _Section(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)


PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class MysqlSection(_Section):
    """A MySQL / MariaDB server holding the ML Metadata store, shared by every run that names it.

    The password is read from the environment variable named by password_env when the
    pipeline runs (pipeline/runners.py), so it is never written in the configuration.
    """

    host: str = Field(min_length=1)
    port: Annotated[int, Field(ge=1, le=65535)] = 3306
    database: str = Field(pattern=r"^[A-Za-z0-9_$]{1,64}$")
    user: str = Field(min_length=1, max_length=80)
    password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class PipelineSection(_Section):
    name: str = Field("facealign", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    root: str = "runs/facealign"
    metadata_path: str | None = None  # default: <root>/metadata.sqlite
    mysql: MysqlSection | None = None  # instead of the SQLite file: a shared MLMD server
    enable_cache: bool = True

    @pydantic.model_validator(mode="after")
    def _one_metadata_store(self):
        if self.mysql is not None and self.metadata_path is not None:
            raise KeyedError("mysql", "give pipeline.metadata_path (an SQLite file) or "
                                      "pipeline.mysql (a server), not both")
        return self


class SourceConfig(_Section):
    """One dataset: where it is, its format, which split it feeds."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    format: Literal["300w", "ljson", "coco"] = "300w"
    root: str
    boxes: list[str] = []
    annotations: str | None = None  # the JSON file, for format coco
    split: Literal["train", "test"] = "train"


class RangeSection(_Section):
    """Which spans a run reads, after TFX's RangeConfig (facealign/core/spans.py).

    ExampleGen ingests one span a run, as TFX's does: `span` (a static range of one),
    or the latest found. The Trainer trains on the last `rolling_window` spans ingested
    (a rolling range), each preprocessed once, in the run that ingested it.
    """

    span: Annotated[int, Field(ge=-1)] = -1     # -1: the latest span found (spans.LATEST)
    rolling_window: PositiveInt = 1


class DataSection(_Section):
    sources: list[SourceConfig] = Field(min_length=1)
    # The hold-out: eval_count faces of a seeded permutation of all faces, or (for spans,
    # where a face's split must not move when others arrive) eval_fraction by a stable hash.
    eval_count: Annotated[int, Field(ge=1)] | None = 100
    eval_fraction: Annotated[float, Field(gt=0, lt=1)] | None = None
    # Train on this fraction of the training faces (drawn by a stable hash, so a smaller
    # fraction's faces are inside every larger one's); the held-out faces do not change.
    # For learning curves: what more data would buy (benchmarks/data_scaling.py).
    train_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    seed: int = 0
    on_error: Literal["skip", "fail"] = "skip"
    range: RangeSection = RangeSection()

    @property
    def spanned_sources(self) -> list[str]:
        """Names of the sources that arrive in spans ({SPAN} in their root)."""
        return [s.name for s in self.sources if "{SPAN}" in s.root]

    @pydantic.model_validator(mode="after")
    def _one_hold_out(self):
        if self.eval_fraction is not None and "eval_count" in self.model_fields_set \
                and self.eval_count is not None:
            raise ValueError("give data.eval_count or data.eval_fraction, not both")
        spanned = self.spanned_sources
        if spanned and self.eval_fraction is None:
            raise ValueError(f"sources {spanned} arrive in spans ({{SPAN}} in root): set "
                             "data.eval_fraction, so each face's split is fixed by a stable "
                             "hash and does not move when a span arrives")
        if not spanned and (self.range.span > 0 or self.range.rolling_window > 1):
            raise ValueError("data.range applies to sources with {SPAN} in their root; "
                             "no source has one")
        if self.eval_fraction is None and self.eval_count is None:
            raise ValueError("give data.eval_count or data.eval_fraction")
        return self

    @pydantic.field_validator("sources")
    @classmethod
    def _unique_names(cls, sources):
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return sources


class AugmentSection(_Section):
    """Canonical-frame crop and training-time perturbations (DAN section 4)."""

    image_size: Annotated[int, Field(ge=16, le=512)] = 112
    face_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5  # mean shape spans the middle half
    copies: Annotated[int, Field(ge=1, le=100)] = 10
    mirror: bool = True
    # half: `copies` per face, half of them mirrored; extra: the official DAN code's, `copies`
    # of the face and `copies` more of its mirror image (facealign/core/canonical.py)
    mirror_copies: Literal["half", "extra"] = "half"
    translation_sigma: Annotated[float, Field(ge=0, le=1)] = 0.2  # of translation_unit
    # face: of the initial shape's width/height; frame_pixels: the official DAN code's, of
    # S0's canonical width/height taken as original-image pixels (facealign/core/canonical.py)
    translation_unit: Literal["face", "frame_pixels"] = "frame_pixels"
    rotation_sigma_deg: Annotated[float, Field(ge=0, le=90)] = 20.0
    scale_sigma: Annotated[float, Field(ge=0, le=1)] = 0.25
    seed: int = 0
    # A JSON file holding the canonical mean shape S0, pinned: read when it exists, written
    # by the first Augment when not. Spans need it, so every span is cropped to one frame
    # for the Trainer. None: each Augment computes S0 from the faces it crops.
    mean_shape: str | None = None


class DanConfig(_Section):
    stages: Annotated[int, Field(ge=1, le=3)] = 2
    heatmap_radius: Annotated[float, Field(gt=0, le=112)] = 16.0
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.5
    fc_units: PositiveInt = 256
    # Filters of conv1a/b; blocks 2-4 use 2x, 4x, 8x (Table 1: 64). Smaller only for tests and
    # experiments.
    base_filters: PositiveInt = 64
    # Stage t > 1's input (warped image, heatmap, feature image) through BatchNorm, as the
    # official code's batch_norm(ConcatLayer(...)); the paper does not mention it.
    input_batchnorm: bool = False
    # How frozen earlier stages run while a later stage trains: training (the official code's:
    # batch statistics, dropout on; the default, chosen by benchmarks/recipe_ablation.py:
    # stage 2 ended at 6.06% against 6.59% held-out NME) or inference (deterministic: moving
    # BatchNorm statistics, no dropout).
    frozen_stages: Literal["inference", "training"] = "training"


class AanConfig(_Section):
    """The Attentional Alignment Network (trainer/aan_model.py); defaults from the paper's sec. 4.2.

    Table 5's rows, one switch per concept: AAN (the defaults), "w/o attention"
    (attention: false), "w/o NE layer" (embedding: none), "w/o both" (the two).
    """

    embedding_dim: PositiveInt = 256                      # d of eq. 4
    # The nonlinear embedding layer (sec. 3.3). cosine: eq. 4. none: Table 5's "w/o NE layer",
    # the features go straight into the linear output layer. linear: a d-unit dense layer
    # without the cos (not a Table 5 row: the cos alone, at the same size).
    embedding: Literal["cosine", "none", "linear"] = "cosine"
    # The attention mechanism (sec. 3.1-3.2): an attention block after every building block,
    # made top-down by the intermediate supervision. false: Table 5's "w/o attention", a plain
    # residual network with no attention maps and no intermediate heads.
    attention: bool = True
    # Early predictions from each block's attention-weighted features (sec. 3.2). Unset: on
    # exactly when attention is. false with attention: maps without top-down supervision (not
    # a Table 5 row). true without attention is an error: the heads read the weighted features.
    intermediate_supervision: bool | None = None
    # Coupled L2 weight decay, the paper's "0.001" with Adam (sec. 4.2): weight_decay * W added
    # to each conv/dense kernel's gradient ((weight_decay / 2) |W|^2 in the loss), the cosine
    # embedding's on W of eq. 4; not on biases or BN (trainer/aan_model.py says why).
    weight_decay: NonNegativeFloat = 0.001
    # Bottleneck width of block 1 (blocks 2-4: 2x, 4x, 8x; outputs 4x the width, as ResNet).
    # The paper gives no widths; 32 keeps the 7x7 features at 1024 channels.
    base_filters: PositiveInt = 32
    # Bottleneck units per building block ("the same as [6]": a ResNet stage). [1, 1, 1, 1] is
    # the paper's text read literally, ResNet-50 has [3, 4, 6, 3]; every unit costs the same
    # FLOPs in every block. [2, 2, 2, 2]: nine 3x3-or-wider convs and an 82 px receptive field
    # (the canonical face is ~56 px) at twice one unit's cost (trainer/aan_model.py).
    units_per_block: Annotated[list[PositiveInt], Field(min_length=4, max_length=4)] = [2, 2, 2, 2]
    # Steps after which the learning rate drops to 1/10 and 1/100 of trainer.learning_rate
    # (paper: 1e-3 -> 1e-4 -> 1e-5 "after 25,000 and 40,000" iterations).
    lr_boundaries: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] = [25000, 40000]
    # The loss's normaliser (facealign.core.metrics): inter_ocular, the outer eye corners
    # (sec. 4.2), inter_pupil or box_diagonal; the names before issue #12 (corners, pupils,
    # diagonal) still load.
    normalization: Literal["inter_ocular", "inter_pupil", "box_diagonal"] = "inter_ocular"

    @pydantic.field_validator("lr_boundaries")
    @classmethod
    def _increasing(cls, boundaries):
        if boundaries[0] >= boundaries[1]:
            raise ValueError(f"lr_boundaries must increase, got {boundaries}")
        return boundaries

    @pydantic.field_validator("normalization", mode="before")
    @classmethod
    def _legacy_normalization_name(cls, name):
        from facealign.core.metrics import LEGACY_NORMALIZATIONS
        return LEGACY_NORMALIZATIONS.get(name, name) if isinstance(name, str) else name

    @pydantic.model_validator(mode="after")
    def _supervision_follows_attention(self):
        if "intermediate_supervision" not in self.model_fields_set \
                or self.intermediate_supervision is None:
            # written past validation, so it stays "unset" and follows a later attention change
            self.__dict__["intermediate_supervision"] = self.attention
        elif self.intermediate_supervision and not self.attention:
            raise KeyedError("intermediate_supervision",
                             "the intermediate heads regress from the attention-weighted "
                             "features (sec. 3.2): true needs attention: true")
        return self


class ModelSection(_Section):
    name: Literal["dan", "aan"] = "dan"
    dan: DanConfig = DanConfig()
    aan: AanConfig = AanConfig()
    # Serve the mean of the answers on the face and on its mirror image (trainer/flip_average.py):
    # twice the inference cost; 68-point markups (the mirror permutation). Training is unchanged.
    flip_average: bool = False


class ClusterSection(_Section):
    """The Trainer's Vertex AI custom job: one chief and replica_count - 1 workers, alike.

    Vertex sets TF_CONFIG on every replica, so trainer.distribution auto trains them with
    MultiWorkerMirroredStrategy; the container is the image given to `facealign compile`.
    """

    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")   # the Google Cloud project
    region: str = Field("us-central1", pattern=r"^[a-z]+-[a-z]+[0-9]+$")
    machine_type: str = Field("n1-standard-8", pattern=r"^[a-z0-9]+(-[a-z0-9]+)+$")
    accelerator_type: str | None = Field(None, pattern=r"^(NVIDIA|TPU)_[A-Z0-9_]+$")
    accelerator_count: Annotated[int, Field(ge=0, le=16)] = 0      # per replica
    replica_count: Annotated[int, Field(ge=1, le=1000)] = 1

    @pydantic.model_validator(mode="after")
    def _accelerator(self):
        if (self.accelerator_type is None) != (self.accelerator_count == 0):
            raise KeyedError("accelerator_count", "give accelerator_type and a positive "
                             "accelerator_count together (or neither), got "
                             f"{self.accelerator_type!r} x {self.accelerator_count}")
        return self


class OnlinePerturbationSection(_Section):
    """Each training batch warped again, every epoch, on top of Augment's copies
    (trainer/online_perturbation.py): normal draws around no change."""

    rotation_sigma_deg: Annotated[float, Field(ge=0, le=45)] = 5.0
    scale_sigma: Annotated[float, Field(ge=0, le=0.5)] = 0.05
    translation_px: Annotated[float, Field(ge=0, le=32)] = 2.0   # canonical-frame pixels


class TrainerSection(_Section):
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.001
    max_epochs_per_stage: PositiveInt = 100
    patience: PositiveInt = 5
    # On a plateau (patience epochs without a better validation NME) a fit ends; with
    # lr_drops > 0 it instead goes back to its best epoch's weights, divides the learning
    # rate by 10 and goes on, up to lr_drops times (trainer/fit.py's PlateauDrops). DAN only:
    # the AAN follows its own step schedule (model.aan.lr_boundaries).
    lr_drops: Annotated[int, Field(ge=0, le=6)] = 0
    steps_per_epoch: PositiveInt | None = None  # default: one pass over the train split
    # auto: mixed_bfloat16 where the hardware computes in bfloat16 (CPU flags avx512_bf16 or
    # amx_bf16, or a GPU of compute capability 8.0+), float32 elsewhere (trainer/precision.py).
    precision: Literal["auto", "float32", "mixed_bfloat16"] = "auto"
    # Starting weights: none (random), latest_blessed (the pipeline's latest blessed model,
    # through a resolver), or a SavedModel folder / TF Serving base folder (newest version).
    warm_start: str = "none"   # NO_WARM_START
    shuffle_buffer: PositiveInt = 4096
    # null: the training samples as Augment wrote them; a section: freshly perturbed each epoch
    online_perturbation: OnlinePerturbationSection | None = None
    # Wall-clock limit of the Trainer's fitting in minutes (DAN's stages share it evenly,
    # unused time passing on); training stops at an epoch end, keeping the best weights.
    time_budget_minutes: Annotated[float, Field(gt=0)] | None = None
    # auto: MultiWorkerMirroredStrategy when TF_CONFIG names a cluster of several tasks,
    # MirroredStrategy when several GPUs are visible, else none (trainer/distribution.py).
    # batch_size is the global batch, split over the replicas.
    distribution: Literal["auto", "none", "mirrored", "multi_worker"] = "auto"
    # Where `facealign compile --target kubeflow-v2` runs the Trainer: a Vertex AI custom job.
    cluster: ClusterSection | None = None

    @pydantic.model_validator(mode="after")
    def _replicas_need_multi_worker(self):
        if self.cluster is not None and self.cluster.replica_count > 1 and \
                self.distribution in ("none", "mirrored"):
            raise KeyedError("distribution", f"is {self.distribution}, but "
                             f"trainer.cluster.replica_count is {self.cluster.replica_count}: "
                             "the replicas would each train alone; use auto or multi_worker")
        return self

    @pydantic.field_validator("warm_start")
    @classmethod
    def _warm_start(cls, value):
        if not value.strip():
            raise ValueError("give none, latest_blessed or a SavedModel path")
        return value


class ToleranceSection(_Section):
    """How much worse than the baseline a candidate may score, face by face, and still be
    blessed: its mean paired NME difference at most the larger of the two (TFMA's change
    thresholds), so noise cannot refuse an equal model."""

    absolute: NonNegativeFloat = 0.05   # NME percentage points
    relative: NonNegativeFloat = 0.01   # of the baseline's NME


class EvaluatorSection(_Section):
    max_nme: Annotated[float, Field(gt=0)] = 10.0  # percent of inter-ocular distance
    failure_threshold: Annotated[float, Field(gt=0, le=1)] = 0.08
    compare_to_baseline: bool = True
    tolerance: ToleranceSection = ToleranceSection()
    # The faces both models are scored on. this_run: the held-out split this run ingested;
    # pinned_span: that of span `pinned_span`, every run; all_spans: the held-out faces of
    # every span ingested so far.
    evaluation_set: Literal["this_run", "pinned_span", "all_spans"] = "this_run"
    pinned_span: Annotated[int, Field(ge=0)] | None = None

    @pydantic.model_validator(mode="after")
    def _pinned(self):
        if (self.evaluation_set == "pinned_span") != (self.pinned_span is not None):
            raise ValueError("evaluator.pinned_span is set exactly when evaluator."
                             "evaluation_set is pinned_span")
        return self


class ValidationSection(_Section):
    """Drift between a span's raw faces and the previous span's (components/drift_check).

    Each entry: a raw feature and the largest divergence allowed (TFDV's comparators:
    Jensen-Shannon divergence for numbers, 0 to 1; L-infinity distance for categories).
    The defaults stop gross drift even in small spans: between spans of 20 demo faces the
    divergences reach 0.6 by chance, while boxes twice as large give 1.0. With spans of
    hundreds of faces, lower them (chance then gives a few hundredths).
    """

    drift: dict[Literal["box_width", "box_height", "image_width", "image_height",
                        "image_channels", "landmark_spread", "dataset"],
                Annotated[float, Field(gt=0, le=1)]] = {
        "box_width": 0.5, "box_height": 0.5, "image_width": 0.5, "image_height": 0.5,
        "image_channels": 0.5, "landmark_spread": 0.5, "dataset": 0.3}
    accept_drift: bool = False   # true: report the drift and go on


class ServingSection(_Section):
    base_dir: str = "serving_models"
    model_name: str = Field("facealign", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class BeamSection(_Section):
    args: list[str] = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


# --- hyperparameter search (trainer/tuning.py, `facealign tune`) ---------------------------
# The tunable names and the kind of value each takes. data.* and the rest of augment.*
# (copies, image size, mirroring) are fixed for a sweep. The augmentation sigmas change the
# prepared data: `facealign tune` prepares (and caches) the data of each distinct value, but
# in the pipeline Augment runs once before the Tuner, so there they cannot be tuned.
AUGMENT_TUNABLE = ("augment.translation_sigma", "augment.rotation_sigma_deg",
                   "augment.scale_sigma")
TUNABLE = {
    **{name: ("float", ("dan", "aan")) for name in AUGMENT_TUNABLE},
    "trainer.learning_rate": ("float", ("dan", "aan")),
    "trainer.batch_size": ("int", ("dan", "aan")),
    "model.dan.dropout": ("float", ("dan",)),
    "model.dan.stages": ("int", ("dan",)),
    "model.dan.heatmap_radius": ("float", ("dan",)),
    "model.aan.embedding_dim": ("int", ("aan",)),
    "model.aan.weight_decay": ("float", ("aan",)),
}


class KeyedError(ValueError):
    """A validation error about a sub-key (``key``) of the field being validated."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class _RangeSpec(_Section):
    """A numeric range: min below max, and positive when sampled logarithmically."""

    @pydantic.model_validator(mode="after")
    def _check(self):
        if self.min >= self.max:
            raise ValueError(f"min must be below max, got min={self.min}, max={self.max}")
        if self.sampling == "log" and self.min <= 0:
            raise ValueError(f"log sampling needs min > 0, got min={self.min}")
        return self


class FloatSpec(_RangeSpec):
    type: Literal["float"]
    min: float
    max: float
    sampling: Literal["linear", "log"] = "linear"
    step: Annotated[float, Field(gt=0)] | None = None


class IntSpec(_RangeSpec):
    type: Literal["int"]
    min: int
    max: int
    step: PositiveInt = 1
    sampling: Literal["linear", "log"] = "linear"


class ChoiceSpec(_Section):
    type: Literal["choice"]
    values: Annotated[list[bool | int | float | str], Field(min_length=1)]

    @pydantic.field_validator("values")
    @classmethod
    def _unique(cls, values):
        if len(set(values)) != len(values):
            raise ValueError(f"values must be unique, got {values}")
        return values


HyperparameterSpec = Annotated[FloatSpec | IntSpec | ChoiceSpec, Field(discriminator="type")]


class TunerSection(_Section):
    """KerasTuner sweep settings; see trainer/tuning.py for what a trial is."""

    enabled: bool = False           # the pipeline adds a TFX Tuner before the Trainer
    algorithm: Literal["random", "bayesian", "hyperband"] = "random"
    max_trials: PositiveInt = 10    # random, bayesian (hyperband: budget from epochs_per_trial)
    epochs_per_trial: PositiveInt = 4    # DAN: split over the stages (at least 1 each)
    executions_per_trial: PositiveInt = 1
    early_stopping_patience: PositiveInt = 2
    directory: str = "runs/tuner"   # trials, oracle state, trials.csv, trials.png
    project_name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int | None = 0
    search_space: dict[str, HyperparameterSpec] = {}

    @pydantic.field_validator("search_space")
    @classmethod
    def _known_names(cls, space):
        for name, spec in space.items():
            if name not in TUNABLE:
                hint = (" (data.* and augment.* other than the sigmas are fixed for a sweep)"
                        if name.split(".")[0] in ("augment", "data") else "")
                raise KeyedError(name, f"unknown hyperparameter{hint}; tunable: "
                                       f"{', '.join(sorted(TUNABLE))}")
            kind = TUNABLE[name][0]
            if spec.type == "choice":
                bad = [v for v in spec.values
                       if isinstance(v, (bool, str)) or (kind == "int" and not isinstance(v, int))]
                if bad:
                    raise KeyedError(name, f"choice values must be {kind}s, got {bad}")
            elif spec.type != kind:
                raise KeyedError(name, f"is a{'n' if kind == 'int' else ''} {kind} "
                                       f"hyperparameter, use type {kind} or choice "
                                       f"(got type {spec.type})")
        return space


class Config(_Section):
    pipeline: PipelineSection = PipelineSection()
    data: DataSection
    augment: AugmentSection = AugmentSection()
    model: ModelSection = ModelSection()
    trainer: TrainerSection = TrainerSection()
    evaluator: EvaluatorSection = EvaluatorSection()
    validation: ValidationSection = ValidationSection()
    serving: ServingSection = ServingSection()
    beam: BeamSection = BeamSection()
    tuner: TunerSection = TunerSection()

    _base_dir: pathlib.Path = pydantic.PrivateAttr(default_factory=pathlib.Path.cwd)

    @property
    def sweep_name(self) -> str:
        """The sweep's folder under tuner.directory (KerasTuner's project name)."""
        return self.tuner.project_name or self.pipeline.name

    def resolve(self, path: str | pathlib.Path) -> pathlib.Path:
        """A path from the file, taken relative to the folder of that file."""
        path = pathlib.Path(path)
        return path if path.is_absolute() else self._base_dir / path

    def source_entries(self) -> list[dict]:
        """data.sources as plain entries, their paths resolved against this file's folder
        ({SPAN} and {VERSION} kept: facealign.core.spans fills them)."""
        entries = []
        for source in self.data.sources:
            entry = source.model_dump()
            entry["root"] = str(self.resolve(source.root))
            entry["boxes"] = [str(self.resolve(b)) for b in source.boxes]
            if source.annotations:
                entry["annotations"] = str(self.resolve(source.annotations))
            entries.append(entry)
        return entries

    @pydantic.model_validator(mode="after")
    def _spans_share_one_frame(self):
        """Each span is cropped in its own run: without a pinned S0 each would get its own
        canonical frame, and a window or a warm start would mix frames."""
        spanned = self.data.spanned_sources
        if spanned and not self.augment.mean_shape:
            raise KeyedError("augment.mean_shape", f"is not set, but sources {spanned} arrive "
                             "in spans ({SPAN} in root): give a file path, written by the "
                             "first run's Augment and read by every later one, so every span "
                             "is cropped to one canonical frame")
        return self

    @pydantic.model_validator(mode="after")
    def _lr_drops_need_a_constant_rate(self):
        if self.trainer.lr_drops and self.model.name != "dan":
            raise KeyedError("trainer.lr_drops", f"is {self.trainer.lr_drops}, but model "
                             f"{self.model.name!r} follows its own learning-rate schedule "
                             "(model.aan.lr_boundaries): set it to 0")
        return self

    @pydantic.model_validator(mode="after")
    def _search_space_fits(self):
        """Each tunable applies to the configured model, and its range is a valid value."""
        if not self.tuner.search_space:
            return self
        base = self.model_dump(mode="json")
        base["tuner"]["search_space"] = {}
        for name, spec in self.tuner.search_space.items():
            key = f"tuner.search_space.{name}"
            models = TUNABLE[name][1]
            if self.model.name not in models:
                raise KeyedError(key, f"applies to model {'/'.join(models)}, not "
                                      f"{self.model.name} (model.name)")
            if name in AUGMENT_TUNABLE and self.tuner.enabled:
                raise KeyedError(key, "augmentation sigmas can be swept by `facealign tune` "
                                      "only: with tuner.enabled the pipeline's Augment runs "
                                      "once, before the Tuner")
            values = spec.values if spec.type == "choice" else [spec.min, spec.max]
            for value in values:
                raw = yaml.safe_load(yaml.safe_dump(base))
                _set_path(raw, name, value)
                try:
                    Config.model_validate(raw)
                except pydantic.ValidationError as exc:
                    raise KeyedError(key, f"value {value!r} is out of range for {name}: "
                                          f"{exc.errors()[0]['msg']}") from None
        return self


# What each TFX component's parameters carry (pipeline/pipeline.py), so a change re-runs only
# what it touches: the Trainer records the data and augmentation it was trained on in its
# model's metadata; a change of those re-runs ExampleGen or Augment, and so the Trainer, anyway.
TRAINER_SECTIONS = ("data", "augment", "model", "trainer")
TUNER_SECTIONS = (*TRAINER_SECTIONS, "tuner")
# trainer.warm_start's two values that name no model folder
NO_WARM_START, LATEST_BLESSED = "none", "latest_blessed"
# Where the sections travel in a TFX component's custom_config (Trainer, Tuner); the rest of
# that dict belongs to TFX (a Vertex AI Trainer's job settings sit beside it)
CUSTOM_CONFIG_KEY = "facealign"


def warm_start_path(value: str | None) -> bool:
    """Whether a trainer.warm_start value names a model folder (not none / latest_blessed)."""
    return value not in (None, NO_WARM_START, LATEST_BLESSED)


def component_config(cfg: Config, sections) -> dict:
    """The given sections of cfg as plain data, with the paths a component opens made absolute."""
    raw = cfg.model_dump(mode="json")
    view = {name: raw[name] for name in sections}
    warm_start = view.get("trainer", {}).get("warm_start")
    if warm_start_path(warm_start):
        view["trainer"]["warm_start"] = str(cfg.resolve(warm_start))
    return view


def custom_config(cfg: Config, sections) -> dict:
    """A TFX component's custom_config carrying the given sections (component_config)."""
    return {CUSTOM_CONFIG_KEY: component_config(cfg, sections)}


def from_custom_config(custom_config: dict | None, component: str) -> Config:
    """The Config a component's custom_config carries; ConfigError names what is missing."""
    if not isinstance(custom_config, dict) or CUSTOM_CONFIG_KEY not in custom_config:
        raise ConfigError(f"{component} custom_config: no {CUSTOM_CONFIG_KEY!r} key (the "
                          "pipeline built by pipeline/pipeline.py puts the configuration there)")
    return from_dict(custom_config[CUSTOM_CONFIG_KEY], f"{component} custom_config")


def _describe(error: dict) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "<top level>"
    keyed = (error.get("ctx") or {}).get("error")
    if isinstance(keyed, KeyedError):   # a sub-key named by the validator
        key = keyed.key if key == "<top level>" else f"{key}.{keyed.key}"
        return f"{key}: {keyed}"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key}: {error['msg']} (got {error.get('input')!r})"


def _set_path(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = tree
    for i, part in enumerate(parts):
        where = ".".join(parts[:i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {dotted}: {where}: no such list item")
            key = int(part)
        elif isinstance(node, dict):
            key = part
        else:
            raise ConfigError(f"--set {dotted}: {'.'.join(parts[:i])} is not a section")
        if i == len(parts) - 1:
            node[key] = value
        else:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = {}
            node = node[key]


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Applies ``key.path=value`` strings; values are parsed as YAML scalars."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        try:
            value = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value is not valid YAML: {exc}") from None
        _set_path(raw, key.strip(), value)
    return raw


def from_dict(raw: dict, origin: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except pydantic.ValidationError as exc:
        lines = "\n  ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{origin}: invalid configuration:\n  {lines}") from None


def load(path: str | pathlib.Path, overrides: list[str] = ()) -> Config:
    """Reads, overrides and validates a pipeline.yaml; relative paths stay as written."""
    path = pathlib.Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    cfg = from_dict(apply_overrides(raw, list(overrides)), str(path))
    cfg._base_dir = path.resolve().parent
    return cfg
