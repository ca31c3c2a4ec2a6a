"""The on-disk contract of an exported model, in one place.

A SavedModel that facealign exports is read by TF Serving, the local server,
the Pusher, warm start, the single-file exporters and the model cards. What
they agree on lives here: the signature names, the files under
``assets.extra/`` (the metadata record, the warmup requests TF Serving
replays, TF Serving's batching parameters) and how each is read and written.

The metadata record (:class:`ModelMetadata`) is validated on every read and
write, so a malformed file is a :class:`ModelFormatError` naming the file and
the field instead of a KeyError far away. It reads every format exported so
far (``metadata_format`` 1, or none, before the signatures were recorded) and
keeps the keys it does not know, so a newer writer's additions survive an
older reader's rewrite.

Importing this module needs no TensorFlow: serving reads metadata without
Keras. Only object-store paths (``gs://``...) and the warmup file (a TFRecord
of TF Serving protos) import TensorFlow, inside the functions that need it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Annotated, Any

import pydantic
from pydantic import Field

# --- signatures and files ---------------------------------------------------------------------

SERVING_DEFAULT = "serving_default"        # image bytes + face boxes -> landmarks in pixels
TF_EXAMPLE = "serving_tf_example"          # raw-face tf.Examples -> the same (the Evaluator's)
PREDICT_CANONICAL = "predict_canonical"    # canonical crops -> canonical landmarks
SIGNATURES = (SERVING_DEFAULT, TF_EXAMPLE, PREDICT_CANONICAL)

EXTRA_DIR = "assets.extra"                 # TF Serving copies it with the version, unread
METADATA_FILE = "facealign_metadata.json"
WARMUP_FILE = "tf_serving_warmup_requests"  # the name TF Serving looks for
BATCHING_FILE = "batching_parameters.txt"   # the Pusher's; TF Serving takes it as a flag

METADATA_FORMAT = 2  # 2: adds the stages, signatures, versions and warmup count


class ModelFormatError(ValueError):
    """A model file that does not hold what its format says; the message names the file and
    the field."""


def extra_path(model_dir, name: str) -> str:
    """The path of `name` (METADATA_FILE, WARMUP_FILE, BATCHING_FILE) in a model folder."""
    return os.path.join(os.fspath(model_dir), EXTRA_DIR, name)


def _is_remote(path: str) -> bool:
    return "://" in path


def _exists(path: str) -> bool:
    if _is_remote(path):
        import tensorflow as tf

        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def _read_text(path: str) -> str:
    if _is_remote(path):
        import tensorflow as tf

        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        with tf.io.gfile.GFile(path) as handle:
            return handle.read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _write_text(path: str, text: str) -> None:
    if _is_remote(path):
        import tensorflow as tf

        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "w") as handle:
            handle.write(text)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


# --- the metadata record: assets.extra/facealign_metadata.json --------------------------------

StrictPositiveInt = Annotated[int, Field(strict=True, gt=0)]
StrictNonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class _Record(pydantic.BaseModel):
    """Unknown keys are kept (and written back): a newer exporter's additions survive."""

    model_config = pydantic.ConfigDict(extra="allow", validate_assignment=True)


class Lineage(_Record):
    """Where the training started from and what it adds up to since the first ancestor."""

    parent: str | None = None               # the warm-start model's folder
    parent_exported_at: str | None = None
    generation: StrictPositiveInt           # 1: trained from scratch
    cumulative_steps: StrictNonNegativeInt
    cumulative_samples: StrictNonNegativeInt
    cumulative_seconds: NonNegativeFloat
    # The spans each generation trained on, first generation first ([] where not recorded)
    spans_per_generation: list[list[StrictNonNegativeInt]] | None = None


class CurvePoint(_Record):
    """Held-out NME (fractions) after some training, samples counted since the first ancestor."""

    stage: StrictPositiveInt
    samples: StrictNonNegativeInt
    nme_inter_pupil: float | None = None
    nme_inter_ocular: float | None = None


# The fields an export writes afresh (the exporter's block) or makes stale (the evaluation of
# the graph it replaces); exporting a model again keeps the rest of its metadata.
REWRITTEN_BY_EXPORT = ("num_landmarks", "image_size", "metadata_format", "stages", "exported_at",
                       "tensorflow_version", "keras_version", "signatures", "box_format",
                       "warmup_requests", "mean_shape", "evaluation")


class ModelMetadata(_Record):
    """assets.extra/facealign_metadata.json: what turns the SavedModel into a face aligner
    (S0 and the crop size) and where it came from.

    Only mean_shape and image_size are required: every version ever exported
    has them (num_landmarks follows from mean_shape). The exporter writes the
    first block, the trainer's summary the second, the Pusher the evaluation.
    """

    # the exporter (trainer/export.py)
    num_landmarks: StrictPositiveInt
    image_size: Annotated[int, Field(strict=True, ge=8)]
    metadata_format: StrictPositiveInt = 1      # absent before format 2
    stages: StrictPositiveInt | None = None     # cascade stages; None: not a staged model
    exported_at: str | None = None
    tensorflow_version: str | None = None
    keras_version: str | None = None
    signatures: dict[str, dict[str, Any]] | None = None   # each one's inputs and outputs
    box_format: str | None = None
    warmup_requests: StrictNonNegativeInt | None = None
    mean_shape: list[list[float]]               # S0 in the canonical crop's pixels, [N, 2]
    # the trainer's summary (trainer/run.py)
    model: str | None = None                    # "dan", "aan"...
    validation_nme_inter_pupil_per_stage: list[float | None] | None = None
    validation_nme_inter_ocular_per_stage: list[float | None] | None = None
    validation_nme_mean_shape: float | None = None
    epochs_per_stage: list[StrictNonNegativeInt] | None = None
    steps_per_stage: list[StrictNonNegativeInt] | None = None
    ended_by: list[str] | None = None
    training_seconds: NonNegativeFloat | None = None
    training_images_per_s: list[float | None] | None = None
    precision: str | None = None
    precision_reason: str | None = None
    lineage: Lineage | None = None
    validation_curve: list[CurvePoint] | None = None
    training_data: list[str] | None = None
    config: dict[str, Any] | None = None        # the trainer's sections of pipeline.yaml
    # the Pusher (components/atomic_pusher), pipeline/publish.py
    evaluation: dict[str, Any] | None = None    # the Evaluator's figures on held-out faces

    @pydantic.model_validator(mode="before")
    @classmethod
    def _count_from_mean_shape(cls, data):
        """num_landmarks, when absent, is the mean shape's point count."""
        if isinstance(data, dict) and "num_landmarks" not in data and isinstance(
                data.get("mean_shape"), list):
            data = {"num_landmarks": len(data["mean_shape"]), **data}
        return data

    @pydantic.field_validator("mean_shape")
    @classmethod
    def _is_a_shape(cls, points):
        if any(len(point) != 2 for point in points):
            raise ValueError("expected [N, 2] points: a point has not 2 coordinates")
        if len(points) < 3:
            raise ValueError(f"expected [N, 2] points with N >= 3, got {len(points)}")
        if not all(math.isfinite(value) for point in points for value in point):
            raise ValueError("the points must be finite")
        return points

    @pydantic.model_validator(mode="after")
    def _count_matches(self):
        if self.num_landmarks != len(self.mean_shape):
            raise _FieldError("num_landmarks", f"{self.num_landmarks}, but mean_shape has "
                                               f"{len(self.mean_shape)} points")
        return self

    def mean_shape_array(self):
        """S0 as float32 [N, 2]."""
        import numpy as np

        return np.asarray(self.mean_shape, np.float32).reshape(-1, 2)

    def to_dict(self) -> dict:
        """The JSON object the file holds: the keys read or given, unknown ones included."""
        return self.model_dump(mode="json", exclude_unset=True)

    def updated(self, **changes) -> ModelMetadata:
        """A copy with `changes`, validated (unknown keys are kept as given)."""
        return ModelMetadata.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, data, source: str = "metadata") -> ModelMetadata:
        """The record of `data`; ModelFormatError names `source` and the field."""
        if not isinstance(data, dict):
            raise ModelFormatError(f"{source}: expected a JSON object, got "
                                   f"{type(data).__name__}")
        try:
            return cls.model_validate(data)
        except pydantic.ValidationError as exc:
            raise ModelFormatError(f"{source}: " + "; ".join(
                _describe(error) for error in exc.errors())) from None
        except _FieldError as exc:   # raised outside pydantic's wrapping in some versions
            raise ModelFormatError(f"{source}: field {exc.field}: {exc}") from None

    @classmethod
    def read(cls, model_dir) -> ModelMetadata:
        """The metadata of a model folder (local or an object store's); FileNotFoundError
        when it has none, ModelFormatError when it is malformed."""
        path = extra_path(model_dir, METADATA_FILE)
        try:
            text = _read_text(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{model_dir}: no {EXTRA_DIR}/{METADATA_FILE} (not a "
                                    "facealign model)") from None
        except UnicodeDecodeError as exc:
            raise ModelFormatError(f"{path}: not a text file ({exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFormatError(f"{path}: not JSON ({exc})") from None
        return cls.from_dict(data, path)

    def write(self, model_dir) -> str:
        """Writes the record into a model folder (validated again first); returns the path."""
        path = extra_path(model_dir, METADATA_FILE)
        data = ModelMetadata.from_dict(self.to_dict(), path).to_dict()
        _write_text(path, json.dumps(data, indent=1))
        return path


def has_metadata(model_dir) -> bool:
    """Whether a model folder holds the metadata file (a facealign export)."""
    return _exists(extra_path(model_dir, METADATA_FILE))


class _FieldError(ValueError):
    """A check across fields, naming the one at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _describe(error: dict) -> str:
    """One pydantic error as 'field a.b: message'."""
    context = (error.get("ctx") or {}).get("error")
    if isinstance(context, _FieldError):
        return f"field {context.field}: {context}"
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] != "value_error" and "input" in error and not isinstance(
            error["input"], (dict, list)):
        message += f", got {error['input']!r}"[:120]
    return f"field {where}: {message}" if where else message


# --- the warmup requests: assets.extra/tf_serving_warmup_requests -----------------------------

def write_warmup_requests(model_dir, requests) -> int:
    """Writes PredictRequests as TF Serving's warmup file (a TFRecord of PredictionLogs);
    returns how many."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = extra_path(model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(requests)


def read_warmup_requests(model_dir) -> list:
    """The PredictRequests of a model folder's warmup file ([] when it has none)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = extra_path(model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    requests = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        requests.append(log.predict_log.request)
    return requests


# --- TF Serving's batching parameters: assets.extra/batching_parameters.txt -------------------
#
# The file TF Serving reads with --enable_batching --batching_parameters_file=FILE:
#
#     max_batch_size { value: 32 }
#     batch_timeout_micros { value: 2000 }
#     max_enqueued_batches { value: 8 }
#     num_batch_threads { value: 4 }
#
# The Pusher writes one beside each pushed version (measured by
# components/atomic_pusher/batch_timing.py) and `facealign serve --enable_batching` reads one.
# The tensorflow_serving pip package does not ship session_bundle_config_pb2 (only the APIs
# and the model-server config), so the file is read by a small parser of protobuf's text
# format: `#` comments, `name { value: N }` for the Int64Value / StringValue wrappers,
# `name: V` for plain fields, repeated fields as repeated lines or `[a, b]`, `:` before `{`
# optional, `,`/`;` separators. Every error is one line naming the file and the field.
#
# Fields and defaults are TF Serving's (BatchingParameters in
# tensorflow_serving/servables/tensorflow/session_bundle_config.proto; the defaults are those
# its BasicBatchScheduler uses for an omitted field): max_batch_size 1000,
# batch_timeout_micros 0, max_enqueued_batches 10, num_batch_threads the CPU count.
# thread_pool_name, allowed_batch_sizes (checked as TF Serving checks them: increasing, the
# last equal to max_batch_size) and pad_variable_length_inputs are accepted and have no effect
# on the local server; fields TF Serving has whose effect the local server lacks (large-batch
# splitting, priority queues) are refused rather than silently ignored.

INT64_FIELDS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                "num_batch_threads")
_ACCEPTED = ("thread_pool_name", "allowed_batch_sizes", "pad_variable_length_inputs")
_NOT_HERE = ("enable_large_batch_splitting", "max_execution_batch_size",
             "enable_priority_queue", "high_priority_queue", "low_priority_queue",
             "mixed_priority_batching_policy", "batch_padding_policy")
_INT64_MAX = 2**63 - 1


class BatchingParametersError(ModelFormatError):
    """A batching parameters file that TF Serving would refuse; the message is one line."""


def _cpu_count() -> int:
    return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """The four parameters that shape batches (TF Serving's defaults when omitted)."""

    max_batch_size: int = 1000          # instances in one batch
    batch_timeout_micros: int = 0       # longest wait after a batch's first request
    max_enqueued_batches: int = 10      # batches waiting per queue; more are refused
    num_batch_threads: int = dataclasses.field(default_factory=_cpu_count)

    def __post_init__(self):
        for name in INT64_FIELDS:
            value = getattr(self, name)
            least = 0 if name == "batch_timeout_micros" else 1
            if isinstance(value, bool) or not isinstance(value, int) or not (
                    least <= value <= _INT64_MAX):
                raise BatchingParametersError(f"{name}: must be an integer >= {least}, "
                                              f"got {value!r}")


# --- text format --------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fFuUlL]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<punct>[{}\[\]<>:,;])
""", re.VERBOSE)
_CLOSE = {"{": "}", "<": ">"}


class _Syntax(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens, pos, line = [], 0, 1
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _Syntax(line, f"unexpected character {text[pos]!r}")
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group(), line))
        line += match.group().count("\n")
        pos = match.end()
    return tokens


def _message(tokens, i: int, close: str | None, field: str | None):
    """([(name, value, line)], next index); a value is a token or a nested list of fields."""
    fields = []
    while True:
        if i >= len(tokens):
            if close is None:
                return fields, i
            raise _Syntax(tokens[-1][2] if tokens else 1,
                          f"{field}: missing {close!r} at the end of the file")
        kind, text, line = tokens[i]
        if close is not None and text == close and kind == "punct":
            return fields, i + 1
        if kind != "name":
            raise _Syntax(line, f"expected a field name, got {text!r}")
        name, i = text, i + 1
        colon = i < len(tokens) and tokens[i][1] == ":"
        i += colon
        if i >= len(tokens):
            raise _Syntax(line, f"{name}: no value")
        kind, text, line = tokens[i]
        if text in _CLOSE:
            inner, i = _message(tokens, i + 1, _CLOSE[text], name)
            fields.append((name, inner, line))
        elif not colon:
            raise _Syntax(line, f"{name}: expected ':' or '{{' after the field name")
        elif text == "[":
            i += 1
            while i < len(tokens) and tokens[i][1] != "]":
                if tokens[i][0] == "punct":
                    raise _Syntax(tokens[i][2], f"{name}: unexpected {tokens[i][1]!r} in a list")
                fields.append((name, tokens[i], tokens[i][2]))
                i += 1
                if i < len(tokens) and tokens[i][1] == ",":
                    i += 1
            if i >= len(tokens):
                raise _Syntax(line, f"{name}: missing ']'")
            i += 1
        elif kind == "punct":
            raise _Syntax(line, f"{name}: expected a value, got {text!r}")
        else:
            fields.append((name, tokens[i], line))
            i += 1
        if i < len(tokens) and tokens[i][1] in (",", ";"):
            i += 1


def _integer(token, field: str) -> int:
    kind, text, _ = token
    try:
        if kind != "number":
            raise ValueError
        value = int(text.rstrip("uUlL"), 0)
    except ValueError:
        raise BatchingParametersError(f"{field}: expected an integer, got {text}") from None
    if not -2**63 <= value <= _INT64_MAX:
        raise BatchingParametersError(f"{field}: {text} is out of the int64 range")
    return value


def _wrapped(value, field: str, kind: str):
    """The ``value`` of a wrapper message (Int64Value / StringValue): ``field { value: V }``."""
    if not isinstance(value, list):
        raise BatchingParametersError(f"{field}: TF Serving takes it as a wrapper message: "
                                      f"write {field} {{ value: {value[1]} }}")
    others = [name for name, _, _ in value if name != "value"]
    if others:
        raise BatchingParametersError(f"{field}: unknown field {others[0]!r} (write "
                                      f"{field} {{ value: ... }})")
    if len(value) != 1 or isinstance(value[0][1], list):
        raise BatchingParametersError(f"{field}: expected exactly one 'value'")
    token = value[0][1]
    if kind == "string":
        if token[0] != "string":
            raise BatchingParametersError(f"{field}: expected a quoted string, got {token[1]}")
        return token[1][1:-1]
    return _integer(token, field)


def parse_batching_parameters(text: str, source: str = "<batching parameters>"
                              ) -> BatchingParameters:
    """BatchingParameters from TF Serving's text format; BatchingParametersError names
    `source` (the file) and the field."""
    try:
        return _parse_batching(text)
    except _Syntax as exc:
        raise BatchingParametersError(f"{source}: line {exc.line}: {exc}") from None
    except BatchingParametersError as exc:
        raise BatchingParametersError(f"{source}: {exc}") from None


def _parse_batching(text: str) -> BatchingParameters:
    fields, _ = _message(_tokens(text), 0, None, None)
    values, seen, allowed = {}, set(), []
    for name, value, line in fields:
        if name in INT64_FIELDS or name in ("thread_pool_name", "pad_variable_length_inputs"):
            if name in seen:
                raise BatchingParametersError(f"{name}: given twice (line {line})")
            seen.add(name)
        if name in INT64_FIELDS:
            values[name] = _wrapped(value, name, "int")
        elif name == "thread_pool_name":
            _wrapped(value, name, "string")
        elif name == "allowed_batch_sizes":
            if isinstance(value, list):
                raise BatchingParametersError(f"{name}: expected integers, got a message")
            allowed.append(_integer(value, name))
        elif name == "pad_variable_length_inputs":
            if isinstance(value, list) or value[1] not in ("true", "false", "True", "False",
                                                           "t", "f", "1", "0"):
                raise BatchingParametersError(f"{name}: expected true or false")
        elif name in _NOT_HERE:
            raise BatchingParametersError(f"{name}: a TF Serving field that facealign serve "
                                          f"does not implement; remove it for the local server")
        else:
            raise BatchingParametersError(
                f"{name}: unknown field (BatchingParameters has "
                f"{', '.join(INT64_FIELDS + _ACCEPTED)})")
    parameters = BatchingParameters(**values)
    if allowed:
        if any(b <= a for a, b in zip(allowed, allowed[1:], strict=False)) or allowed[0] < 1:
            raise BatchingParametersError(f"allowed_batch_sizes: must be increasing and "
                                          f"positive, got {allowed}")
        if allowed[-1] != parameters.max_batch_size:
            raise BatchingParametersError(
                f"allowed_batch_sizes: the last entry ({allowed[-1]}) must equal "
                f"max_batch_size ({parameters.max_batch_size})")
    return parameters


def read_batching_parameters(path) -> BatchingParameters:
    """The parameters in a file (any path; a model's is extra_path(model_dir, BATCHING_FILE));
    OSError when it cannot be read, BatchingParametersError (naming the file and the field)
    when TF Serving would refuse it."""
    return parse_batching_parameters(_read_text(os.fspath(path)), os.fspath(path))


def batching_parameters_text(parameters: BatchingParameters, comment: str = "") -> str:
    """The file TF Serving reads, with `comment` lines (``#``) on top."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += [f"{name} {{ value: {getattr(parameters, name)} }}" for name in INT64_FIELDS]
    return "\n".join(lines) + "\n"


def write_batching_parameters(model_dir, text: str) -> str:
    """Writes a model folder's batching parameters file (`text`, checked first as TF Serving
    would read it); returns its path."""
    path = extra_path(model_dir, BATCHING_FILE)
    parse_batching_parameters(text, path)
    _write_text(path, text)
    return path
