"""TF Serving's REST predict format: request JSON -> tensors -> signature -> answer JSON.

The two request forms are TF Serving's: ``instances`` (a list of rows, each
an object of inputs, or the bare value when the signature has one input) and
``inputs`` (columns, batched). String inputs are JSON strings or
``{"b64": "..."}``; answers encode bytes outputs back the same way. Every
client mistake is a :class:`RequestError` with the HTTP status and TF
Serving's message wording, so clients written for TF Serving read our errors
unchanged. An input the model's graph refuses (trainer/export.py's checks) is a
400 with the graph's message, "instance I: <reason>"; a JSON body nested deeper
than anything a signature takes is a 400, not a RecursionError. No HTTP here:
server.py carries these over aiohttp.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re

import numpy as np

from facealign.core.model_format import SERVING_DEFAULT

log = logging.getLogger("facealign.serve")

MAX_VALUE_DEPTH = 32  # list levels in one input's value (numpy arrays stop at 64 dimensions)
TOO_DEEP = "request JSON is nested too deep"


class RequestError(Exception):
    """An error answered as {"error": message} with this HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _decode_leaves(value, dtype, where: str, depth: int = 0):
    """A JSON value with {"b64": ...} objects and strings turned into bytes (string inputs)."""
    if isinstance(value, list):
        if depth >= MAX_VALUE_DEPTH:
            raise RequestError(400, f"{where}: {TOO_DEEP} (more than {MAX_VALUE_DEPTH} levels)")
        return [_decode_leaves(v, dtype, where, depth + 1) for v in value]
    if dtype == "string":
        if isinstance(value, dict):
            if set(value) != {"b64"} or not isinstance(value["b64"], str):
                raise RequestError(400, f"{where}: binary values must be {{\"b64\": \"...\"}}")
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(400, f"{where}: invalid base64 data") from None
        if isinstance(value, str):
            return value.encode("utf-8")
        raise RequestError(400, f"{where}: expected a string or {{\"b64\": ...}}, got "
                                f"{type(value).__name__}")
    kind = np.dtype(dtype).kind
    allowed = {"f": (float, int), "i": (int,), "u": (int,), "b": (bool,)}.get(kind, (float, int))
    if isinstance(value, bool) and kind != "b" or not isinstance(value, allowed):
        raise RequestError(400, f"{where}: expected {dtype} numbers, got "
                                f"{json.dumps(value)[:40]}")
    return value


def _to_array(value, spec, where: str, batched: bool) -> np.ndarray:
    """A value of one input as a numpy array checked against the signature's TensorSpec."""
    dtype = spec.dtype.name
    leaves = _decode_leaves(value, dtype, where)
    try:
        if dtype == "string":
            array = np.array(leaves, dtype=object)
            if array.dtype != object or any(not isinstance(v, bytes) for v in array.ravel()):
                raise ValueError("ragged")
        else:
            array = np.array(leaves, dtype=np.dtype(dtype))
    except OverflowError:
        raise RequestError(400, f"{where}: values out of the {dtype} range") from None
    except (ValueError, TypeError):
        raise RequestError(400, f"{where}: not a rectangular {dtype} array") from None
    expected = spec.shape.as_list() if spec.shape.rank is not None else None
    if expected is not None:
        if not batched:
            expected = expected[1:]
        if array.ndim != len(expected) or any(
                e is not None and e != a for e, a in zip(expected, array.shape)):
            shown = ["-1" if e is None else str(e) for e in expected]
            raise RequestError(400, f"{where}: shape {list(array.shape)} does not match the "
                                    f"signature's [{', '.join(shown)}]")
    return array


def _row_tensors(rows, specs: dict) -> dict:
    """The ``instances`` form: one object (or bare value) per example, stacked."""
    names = sorted(specs)
    if not isinstance(rows, list) or not rows:
        raise RequestError(400, "'instances' must be a non-empty list")
    columns = {name: [] for name in names}
    for i, row in enumerate(rows):
        if len(names) == 1 and not (isinstance(row, dict) and names[0] in row):
            row = {names[0]: row}
        if not isinstance(row, dict):
            raise RequestError(400, f"instance {i}: expected an object with the inputs {names}")
        missing = [n for n in names if n not in row]
        unknown = [n for n in row if n not in specs]
        if missing:
            raise RequestError(400, f"instance {i}: missing input '{missing[0]}' "
                                    f"(the signature takes {names})")
        if unknown:
            raise RequestError(400, f"instance {i}: unknown input '{unknown[0]}' "
                                    f"(the signature takes {names})")
        for name in names:
            columns[name].append(_to_array(row[name], specs[name],
                                           f"instance {i}, input '{name}'", batched=False))
    tensors = {}
    for name in names:
        values = columns[name]
        if specs[name].dtype.name == "string":
            tensors[name] = np.array([v.item() if v.ndim == 0 else v for v in values],
                                     dtype=object)
        else:
            tensors[name] = np.stack(values)
    return tensors


def _column_tensors(inputs, specs: dict) -> dict:
    """The ``inputs`` form: one batched value per input (or the bare value for one input)."""
    names = sorted(specs)
    if len(names) == 1 and not (isinstance(inputs, dict) and names[0] in inputs):
        inputs = {names[0]: inputs}
    if not isinstance(inputs, dict):
        raise RequestError(400, f"'inputs' must be an object with the inputs {names}")
    missing = [n for n in names if n not in inputs]
    unknown = [n for n in inputs if n not in specs]
    if missing or unknown:
        raise RequestError(400, f"'inputs': {'missing' if missing else 'unknown'} input "
                                f"'{(missing or unknown)[0]}' (the signature takes {names})")
    tensors = {name: _to_array(inputs[name], specs[name], f"input '{name}'", batched=True)
               for name in names}
    sizes = {len(t) for t in tensors.values() if t.ndim}
    if len(sizes) > 1:
        raise RequestError(400, f"'inputs': the inputs have different batch sizes {sorted(sizes)}")
    return tensors


def request_tensors(body, specs: dict) -> tuple[dict, bool]:
    """({input name: numpy array}, row format?) from a predict request body."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise RequestError(400, "Missing 'inputs' or 'instances' key" if not has_rows else
                                "Not allowed to have both 'inputs' and 'instances' keys")
    if has_rows:
        return _row_tensors(body["instances"], specs), True
    return _column_tensors(body["inputs"], specs), False


def _jsonable(array: np.ndarray):
    if array.dtype == object or array.dtype.kind == "S":
        return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode("ascii")},
                            otypes=[object])(array).tolist()
    return array.tolist()


def answer_json(outputs: dict, row_format: bool) -> dict:
    """TF Serving's answer: "predictions" (rows) for instances, "outputs" (columns) for inputs."""
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return {"outputs": _jsonable(outputs[names[0]])}
        return {"outputs": {name: _jsonable(outputs[name]) for name in names}}
    batch = len(outputs[names[0]])
    columns = {name: _jsonable(outputs[name]) for name in names}
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    return {"predictions": [{name: columns[name][i] for name in names} for i in range(batch)]}


def run_predict(model, body_bytes: bytes) -> dict:
    """The whole predict call on a loaded version (anything with ``signatures``): JSON
    parsing, checks, inference, answer. Blocking: the server runs it in a worker thread."""
    import tensorflow as tf

    try:
        body = json.loads(body_bytes)
    except RecursionError:
        raise RequestError(400, TOO_DEEP) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON ({exc})") from None
    signature = body.get("signature_name", SERVING_DEFAULT) if isinstance(body, dict) else None
    if not isinstance(signature, str):
        raise RequestError(400, "'signature_name' must be a string")
    fn = model.signatures.get(signature or SERVING_DEFAULT)
    if fn is None:
        raise RequestError(400, f"Serving signature name: \"{signature}\" not found in signature "
                                f"def (the model has {sorted(model.signatures)})")
    specs = fn.structured_input_signature[1]
    try:
        tensors, row_format = request_tensors(body, specs)
    except RecursionError:  # a value too deep for the recursion limit itself
        raise RequestError(400, TOO_DEEP) from None
    try:
        outputs = _call(fn, specs, tensors)
    except tf.errors.InvalidArgumentError as exc:
        raise RequestError(400, _refusal(fn, specs, tensors, exc.message)) from None
    except tf.errors.OpError as exc:
        log.error("inference failed: %s", exc.message)
        raise RequestError(500, f"inference failed: {tf_error_summary(exc.message)}") from None
    outputs = {name: value.numpy() for name, value in outputs.items()}
    _refuse_non_finite(outputs)
    return answer_json(outputs, row_format)


def _refuse_non_finite(outputs: dict) -> None:
    """No answer carries NaN or infinity (JSON has neither), even from a model exported
    before the graph checked its own outputs: a 400 naming the first such instance."""
    for name in sorted(outputs):
        value = outputs[name]
        if value.dtype.kind != "f" or value.ndim == 0 or np.isfinite(value).all():
            continue
        rows = ~np.isfinite(value).reshape(len(value), -1).all(axis=1)
        raise RequestError(400, f"instance {int(np.argmax(rows))}: the model's output "
                                f"'{name}' is not finite (NaN or infinity)")


def _call(fn, specs: dict, tensors: dict) -> dict:
    import tensorflow as tf

    return fn(**{name: tf.constant(value, dtype=specs[name].dtype)
                 for name, value in tensors.items()})


def _refusal(fn, specs: dict, tensors: dict, message: str) -> str:
    """The model's INVALID_ARGUMENT message, naming the instance where the graph could not
    (an image decoder's error): the first instance the signature refuses on its own."""
    import tensorflow as tf

    summary = tf_error_summary(message)
    sizes = {len(value) if np.ndim(value) else -1 for value in tensors.values()}
    if summary.startswith("instance ") or len(sizes) != 1 or min(sizes) < 1:
        return summary
    (count,) = sizes
    if count == 1:
        return f"instance 0: {summary}"
    for i in range(count):
        try:
            _call(fn, specs, {name: value[i:i + 1] for name, value in tensors.items()})
        except tf.errors.InvalidArgumentError as exc:
            return f"instance {i}: {tf_error_summary(exc.message)}"
        except tf.errors.OpError:
            break
    return summary


def tf_error_summary(message: str) -> str:
    """The op's own message from a TF error, without the graph-execution preamble, the stack
    of the node's definition (server code paths) and the node/op names; an assertion of the
    graph's input checks ("assertion failed: [instance 2: box ...]") as its own text."""
    kept = []
    for line in (message or "").splitlines():
        text = line.strip()
        if (not text or text == "Graph execution error:" or text.startswith("Detected at node")
                or text.startswith("[[") or text.startswith("<stack traces")
                or line[:1].isspace()):
            continue
        text = re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", text)
        text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
        kept.append(re.sub(r"^assertion failed: \[(.*)\]$", r"\1", text))
    return "; ".join(k for k in kept if k) or "the model could not process the input"
