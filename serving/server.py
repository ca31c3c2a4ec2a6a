"""A local model server speaking TF Serving's REST API (`facealign serve`).

For development, demos and CI where the TF Serving binary or Docker image is
not at hand: the same URLs, request and answer JSON as TF Serving, so a
client (serving/client.py, curl, `facealign predict --model URL`) works
unchanged against either.

- ``GET  /v1/models/NAME[/versions/V]``            model version status
- ``GET  /v1/models/NAME[/versions/V]/metadata``   model spec + signature defs
- ``POST /v1/models/NAME[/versions/V]:predict``    ``instances`` (row) or ``inputs``
  (columnar) form, ``signature_name`` optional (default serving_default);
  binary inputs as {"b64": "..."}

Model versions: the newest numeric folder under the base path that holds a
``saved_model.pb`` is served (TF Serving's default "latest" policy); a
background thread polls the base path and switches to a newer version once it
has loaded and replayed its warmup requests, without a restart. Other folders
(the Pusher's hidden ``.incoming-*`` staging folders, ``tmp``...) are ignored;
a version that fails to load is reported in the status and the old one keeps
serving.

HTTP: aiohttp (already installed: a pinned dependency of the pipeline) -- an
asyncio server with keep-alive and request-size limits; inference runs in a
thread pool of `max_concurrency` threads behind a semaphore; requests that
cannot get a slot within `queue_timeout` seconds get 503. Bodies over
`max_body_bytes` get 413. Every error is TF Serving's ``{"error": "..."}`` with
a 4xx status for the client's mistakes (400 bad request, 404 unknown model or
version, 405, 413) and 500 for the server's own, never a traceback; the
server keeps serving.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import dataclasses
import json
import logging
import os
import pathlib
import re
import signal
import threading
import time

import numpy as np
from aiohttp import web

log = logging.getLogger("facealign.serve")

DEFAULT_PORT = 8501
DEFAULT_SIGNATURE = "serving_default"
MAX_BODY_BYTES = 10 * 2**20
_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                   r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<verb>/metadata|:[A-Za-z]+)?/?$")


class RequestError(Exception):
    """An error answered as {"error": message} with this HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --- model versions --------------------------------------------------------------------------

@dataclasses.dataclass
class LoadedVersion:
    version: int
    path: str
    loaded: object
    signatures: dict          # name -> concrete function
    signature_defs: dict      # TF Serving's SignatureDefMap JSON
    metadata: dict            # assets.extra/facealign_metadata.json (or {})


def numeric_versions(base_path) -> dict[int, pathlib.Path]:
    """{version: folder} of the numeric folders holding a SavedModel."""
    found = {}
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return found
    for entry in entries:
        if entry.name.isdigit() and entry.is_dir():
            folder = pathlib.Path(entry.path)
            if (folder / "saved_model.pb").is_file() or (folder / "saved_model.pbtxt").is_file():
                found[int(entry.name)] = folder
    return found


def _signature_defs(path: pathlib.Path) -> dict:
    """TF Serving's metadata JSON of the SavedModel's signature defs."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0]
    defs = {name: json_format.MessageToDict(graph.signature_def[name],
                                            preserving_proto_field_name=True)
            for name in sorted(graph.signature_def)}
    return {"signature_def": defs,
            "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap"}


def load_version(version: int, path: pathlib.Path, warmup: bool = True) -> LoadedVersion:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signatures = dict(loaded.signatures)
    try:
        defs = _signature_defs(path)
    except (OSError, ValueError) as exc:
        log.warning("%s: signature defs unreadable (%s)", path, exc)
        defs = {"signature_def": {}}
    metadata = {}
    meta_file = path / "assets.extra" / "facealign_metadata.json"
    if meta_file.is_file():
        try:
            metadata = json.loads(meta_file.read_text())
        except ValueError:
            log.warning("%s: unreadable metadata file", meta_file)
    result = LoadedVersion(version, str(path), loaded, signatures, defs, metadata)
    if warmup:
        _replay_warmup(result)
    return result


def _replay_warmup(model: LoadedVersion) -> None:
    """Runs assets.extra/tf_serving_warmup_requests, as TF Serving does on load."""
    import tensorflow as tf

    from trainer import export

    try:
        requests = export.read_warmup_requests(model.path)
    except Exception as exc:  # noqa: BLE001 - a bad warmup file must not stop serving
        log.warning("version %d: warmup file unreadable (%s)", model.version, exc)
        return
    started = time.monotonic()
    for request in requests:
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        fn = model.signatures.get(name)
        if fn is None:
            continue
        try:
            fn(**{key: tf.constant(tf.make_ndarray(value))
                  for key, value in request.inputs.items()})
        except Exception as exc:  # noqa: BLE001
            log.warning("version %d: a warmup request failed (%s)", model.version, exc)
    if requests:
        log.info("version %d: %d warmup requests in %.2f s", model.version, len(requests),
                 time.monotonic() - started)


class ModelRepository:
    """The served version of one model under a base path, refreshed by polling."""

    def __init__(self, base_path, name: str, poll_seconds: float = 2.0, warmup: bool = True):
        self.base_path = pathlib.Path(base_path)
        self.name = name
        self.poll_seconds = float(poll_seconds)
        self.warmup = warmup
        self._current: LoadedVersion | None = None
        self._failed: dict[int, tuple[float, str]] = {}  # version -> (folder mtime, error)
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> LoadedVersion | None:
        with self._lock:
            return self._current

    def refresh(self) -> bool:
        """Loads the newest version if it is not the served one; True if it switched."""
        with self._refresh_lock:
            versions = numeric_versions(self.base_path)
            current = self.current
            for version in sorted(versions, reverse=True):
                if current is not None and version == current.version:
                    return False
                folder = versions[version]
                try:
                    mtime = folder.stat().st_mtime
                except OSError:
                    continue
                failed = self._failed.get(version)
                if failed and failed[0] == mtime:
                    continue  # failed before and unchanged since: try an older one
                try:
                    loaded = load_version(version, folder, self.warmup)
                except Exception as exc:  # noqa: BLE001 - keep serving the old version
                    first_line = str(exc).splitlines()[0] if str(exc) else ""
                    message = f"{type(exc).__name__}: {first_line}"
                    log.error("model %s version %d failed to load: %s", self.name, version,
                              message)
                    self._failed[version] = (mtime, message)
                    continue
                self._failed.pop(version, None)
                with self._lock:
                    previous, self._current = self._current, loaded
                log.info("model %s: serving version %d from %s%s", self.name, version, folder,
                         f" (was {previous.version})" if previous else "")
                return True
            return False

    def status(self) -> list[dict]:
        """TF Serving's model_version_status list."""
        entries = []
        current = self.current
        if current is not None:
            entries.append({"version": str(current.version), "state": "AVAILABLE",
                            "status": {"error_code": "OK", "error_message": ""}})
        for version, (_, message) in sorted(self._failed.items(), reverse=True):
            entries.append({"version": str(version), "state": "END",
                            "status": {"error_code": "UNKNOWN", "error_message": message}})
        return entries

    def start_polling(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._poll, name=f"poll-{self.name}",
                                            daemon=True)
            self._thread.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the poller must survive anything
                log.exception("model %s: polling %s failed", self.name, self.base_path)


# --- request JSON -> tensors -> answer JSON -----------------------------------------------------

def _decode_leaves(value, dtype, where: str):
    """A JSON value with {"b64": ...} objects and strings turned into bytes (string inputs)."""
    if isinstance(value, list):
        return [_decode_leaves(v, dtype, where) for v in value]
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


def request_tensors(body, specs: dict) -> tuple[dict, bool]:
    """({input name: numpy array}, row format?) from a predict request body."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise RequestError(400, "Missing 'inputs' or 'instances' key" if not has_rows else
                                "Not allowed to have both 'inputs' and 'instances' keys")
    names = sorted(specs)
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise RequestError(400, "'instances' must be a non-empty list")
        columns = {name: [] for name in names}
        for i, row in enumerate(rows):
            if len(names) == 1 and not (isinstance(row, dict) and names[0] in row):
                row = {names[0]: row}
            if not isinstance(row, dict):
                raise RequestError(400, f"instance {i}: expected an object with the inputs "
                                        f"{names}")
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
        return tensors, True
    inputs = body["inputs"]
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
    return tensors, False


def _jsonable(array: np.ndarray):
    if array.dtype == object or array.dtype.kind == "S":
        return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode("ascii")},
                            otypes=[object])(array).tolist()
    return array.tolist()


def answer_json(outputs: dict, row_format: bool) -> dict:
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


def run_predict(model: LoadedVersion, body_bytes: bytes) -> dict:
    """The whole predict call: JSON parsing, checks, inference, answer (runs in a worker)."""
    import tensorflow as tf

    try:
        body = json.loads(body_bytes)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON ({exc})") from None
    signature = body.get("signature_name", DEFAULT_SIGNATURE) if isinstance(body, dict) else None
    if not isinstance(signature, str):
        raise RequestError(400, "'signature_name' must be a string")
    fn = model.signatures.get(signature or DEFAULT_SIGNATURE)
    if fn is None:
        raise RequestError(400, f"Serving signature name: \"{signature}\" not found in signature "
                                f"def (the model has {sorted(model.signatures)})")
    specs = fn.structured_input_signature[1]
    tensors, row_format = request_tensors(body, specs)
    try:
        outputs = fn(**{name: tf.constant(value, dtype=specs[name].dtype)
                        for name, value in tensors.items()})
    except tf.errors.InvalidArgumentError as exc:
        raise RequestError(400, tf_error_summary(exc.message)) from None
    except tf.errors.OpError as exc:
        log.error("inference failed: %s", exc.message)
        raise RequestError(500, f"inference failed: {tf_error_summary(exc.message)}") from None
    return answer_json({name: value.numpy() for name, value in outputs.items()}, row_format)


def tf_error_summary(message: str) -> str:
    """The op's own message from a TF error, without the graph-execution preamble, the stack
    of the node's definition (server code paths) and the node/op names."""
    kept = []
    for line in (message or "").splitlines():
        text = line.strip()
        if (not text or text == "Graph execution error:" or text.startswith("Detected at node")
                or text.startswith("[[") or text.startswith("<stack traces")
                or line[:1].isspace()):
            continue
        kept.append(re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", text))
    return "; ".join(k for k in kept if k) or "the model could not process the input"


# --- HTTP ------------------------------------------------------------------------------------

def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ServingApp:
    """The aiohttp application around one ModelRepository."""

    def __init__(self, repository: ModelRepository, max_body_bytes: int = MAX_BODY_BYTES,
                 max_concurrency: int = 4, queue_timeout: float = 30.0):
        self.repository = repository
        self.max_body_bytes = int(max_body_bytes)
        self.queue_timeout = float(queue_timeout)
        self.max_concurrency = int(max_concurrency)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.max_concurrency,
                                                           thread_name_prefix="predict")
        self._slots: asyncio.Semaphore | None = None
        self.app = web.Application(client_max_size=self.max_body_bytes,
                                   middlewares=[self._errors])
        self.app.router.add_route("*", "/{tail:.*}", self._route)

    @web.middleware
    async def _errors(self, request, handler):
        try:
            return await handler(request)
        except RequestError as exc:
            return _error(exc.status, exc.message)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the request body is larger than {self.max_body_bytes} bytes")
        except web.HTTPException as exc:
            return _error(exc.status, exc.reason or "error")
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged here, never sent to the client
            log.exception("error answering %s %s", request.method, request.path)
            return _error(500, "internal server error")

    async def _route(self, request: web.Request) -> web.Response:
        match = _PATH.match(request.path)
        if not match:
            raise RequestError(404, f"unknown path {request.path} (the API is /v1/models/NAME"
                                    "[/versions/N][/metadata|:predict])")
        name, version, label, verb = match["name"], match["version"], match["label"], match["verb"]
        if label is not None:
            raise RequestError(404, "version labels are not supported; use /versions/N")
        model = self._model(name, version)
        if verb in (None, "/metadata"):
            if request.method != "GET":
                raise RequestError(405, f"use GET for {request.path}")
            if verb is None:
                status = self.repository.status()
                if version is not None:
                    status = [s for s in status if s["version"] == version]
                return web.json_response({"model_version_status": status})
            return web.json_response({
                "model_spec": {"name": name, "signature_name": "",
                               "version": str(model.version)},
                "metadata": {"signature_def": model.signature_defs},
                "facealign": model.metadata})
        if verb != ":predict":
            raise RequestError(400 if verb in (":classify", ":regress") else 404,
                               f"{verb[1:]} is not supported by this server; use :predict")
        if request.method != "POST":
            raise RequestError(405, f"use POST for {verb}")
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise RequestError(413, f"the request body is larger than {self.max_body_bytes} bytes")
        body = await request.read()
        return web.json_response(await self._predict(model, body))

    def _model(self, name: str, version: str | None) -> LoadedVersion:
        current = self.repository.current
        if name != self.repository.name or current is None:
            spec = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise RequestError(404, f"Servable not found for request: {spec}")
        if version is not None:
            if not version.isdigit():
                raise RequestError(400, f"version {version!r} is not a number")
            if int(version) != current.version:
                raise RequestError(404, f"Servable not found for request: Specific({name}, "
                                        f"{version}) (serving version {current.version})")
        return current

    async def _predict(self, model: LoadedVersion, body: bytes) -> dict:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.queue_timeout)
        except asyncio.TimeoutError:
            raise RequestError(503, f"server busy: no inference slot free within "
                                    f"{self.queue_timeout:g} s") from None
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, run_predict, model, body)
        finally:
            self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class LocalServer:
    """The repository, its poller and the HTTP server; `start()` runs it in a thread."""

    def __init__(self, model_base_path, model_name: str = "facealign", host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, poll_seconds: float = 2.0,
                 max_body_bytes: int = MAX_BODY_BYTES, max_concurrency: int = 4,
                 queue_timeout: float = 30.0, warmup: bool = True, access_log: bool = False):
        self.repository = ModelRepository(model_base_path, model_name, poll_seconds, warmup)
        self.serving = ServingApp(self.repository, max_body_bytes, max_concurrency,
                                  queue_timeout)
        self.host, self.port = host, int(port)
        self.access_log = access_log
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def model_url(self) -> str:
        return f"{self.url}/v1/models/{self.repository.name}"

    async def _start_site(self) -> None:
        self._runner = web.AppRunner(self.serving.app, handle_signals=False,
                                     access_log=log if self.access_log else None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _main(self, ready: threading.Event | None) -> None:
        self._stopped = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        try:
            await self._start_site()
        finally:
            if ready is not None:
                ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self._runner.cleanup()

    def load(self) -> None:
        """Loads the newest version now (the poller would, later) and starts polling."""
        self.repository.refresh()
        self.repository.start_polling()

    def start(self) -> "LocalServer":
        """Loads the model, serves in a background thread; returns once the port is open."""
        self.load()
        ready = threading.Event()
        errors = []

        def run():
            try:
                asyncio.run(self._main(ready))
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                errors.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name="facealign-serve", daemon=True)
        self._thread.start()
        ready.wait(60)
        if errors:
            raise errors[0]
        return self

    def serve_forever(self, on_ready=None) -> None:
        """Loads the model and serves in this thread until interrupted."""
        self.load()

        async def main():
            self._stopped = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(signum, self._stopped.set)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass  # not the main thread, or no signals here: Ctrl-C still raises
            await self._start_site()
            if on_ready:
                on_ready(self)
            try:
                await self._stopped.wait()
            finally:
                await self._runner.cleanup()

        try:
            asyncio.run(main())
        finally:
            self.repository.stop_polling()
            self.serving.close()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.repository.stop_polling()
        self.serving.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
