"""TF Serving's BatchingParameters in its text-proto file format (``--batching_parameters_file``).

The file TF Serving reads with ``--enable_batching --batching_parameters_file=FILE``::

    max_batch_size { value: 32 }
    batch_timeout_micros { value: 2000 }
    max_enqueued_batches { value: 8 }
    num_batch_threads { value: 4 }

The Pusher writes one beside each pushed version (``assets.extra/batching_parameters.txt``,
measured by batch_timing.py) and ``facealign serve --enable_batching`` reads one, so
the format lives here, once, below both. The tensorflow_serving pip package does not ship
``session_bundle_config_pb2`` (only the APIs and the model-server config), so the file is
read by a small parser of protobuf's text format: ``#`` comments, ``name { value: N }``
for the Int64Value / StringValue wrappers, ``name: V`` for plain fields, repeated
fields as repeated lines or ``[a, b]``, ``:`` before ``{`` optional, ``,``/``;``
separators. Every error is one line naming the file and the field.

Fields and defaults are TF Serving's (BatchingParameters in
tensorflow_serving/servables/tensorflow/session_bundle_config.proto; the defaults are
those its BasicBatchScheduler uses for an omitted field): max_batch_size 1000,
batch_timeout_micros 0, max_enqueued_batches 10, num_batch_threads the CPU count.
``thread_pool_name``, ``allowed_batch_sizes`` (checked as TF Serving checks them: increasing,
the last equal to max_batch_size) and ``pad_variable_length_inputs`` are accepted and have no
effect on the local server; fields TF Serving has whose effect the local server lacks
(large-batch splitting, priority queues) are refused rather than silently ignored.
"""
from __future__ import annotations

import dataclasses
import os
import re

FILE_NAME = "batching_parameters.txt"  # in a pushed version's assets.extra/

INT64_FIELDS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                "num_batch_threads")
_ACCEPTED = ("thread_pool_name", "allowed_batch_sizes", "pad_variable_length_inputs")
_NOT_HERE = ("enable_large_batch_splitting", "max_execution_batch_size",
             "enable_priority_queue", "high_priority_queue", "low_priority_queue",
             "mixed_priority_batching_policy", "batch_padding_policy")
_INT64_MAX = 2**63 - 1


class BatchingParametersError(ValueError):
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


def parse(text: str, source: str = "<batching parameters>") -> BatchingParameters:
    """BatchingParameters from TF Serving's text format; BatchingParametersError names
    `source` (the file) and the field."""
    try:
        return _parse(text)
    except _Syntax as exc:
        raise BatchingParametersError(f"{source}: line {exc.line}: {exc}") from None
    except BatchingParametersError as exc:
        raise BatchingParametersError(f"{source}: {exc}") from None


def _parse(text: str) -> BatchingParameters:
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


def read(path) -> BatchingParameters:
    """The parameters in a file; OSError when it cannot be read, BatchingParametersError
    (naming the file and the field) when TF Serving would refuse it."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return parse(text, str(path))


def to_text(parameters: BatchingParameters, comment: str = "") -> str:
    """The file TF Serving reads, with `comment` lines (``#``) on top."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += [f"{name} {{ value: {getattr(parameters, name)} }}" for name in INT64_FIELDS]
    return "\n".join(lines) + "\n"
