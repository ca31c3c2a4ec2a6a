"""Model versions under a TF Serving base path: finding, loading and swapping them.

A base path holds numbered version folders, each a SavedModel (what the
Pusher writes and TF Serving reads). As TF Serving's default "latest" policy
does, the newest numeric folder holding a ``saved_model.pb`` is the one to
serve; other folders (the Pusher's hidden ``.incoming-*`` staging folders,
``tmp``...) are ignored. :func:`resolve_model_path` applies that rule to any
``--model`` argument, so a base folder and a version folder are both accepted.

:class:`ModelRepository` keeps one loaded version and polls the base path: a
newer version replaces the served one only after it has loaded and replayed
its warmup requests; one that fails to load is reported in the status and the
old one keeps serving.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import threading
import time

from facealign.core import model_format
from facealign.core.model_format import SERVING_DEFAULT
from facealign.core.model_paths import numeric_versions, resolve_model_dir
from serving.errors import ModelError

log = logging.getLogger("facealign.serve")


def resolve_model_path(path) -> pathlib.Path:
    """The SavedModel folder to load for `path`: itself, or a base folder's newest version.

    ModelError names the path when it is neither (facealign.core.model_paths' rule).
    """
    try:
        return pathlib.Path(resolve_model_dir(path))
    except FileNotFoundError as exc:
        raise ModelError(str(exc)) from None


# --- loading -----------------------------------------------------------------------------

@dataclasses.dataclass
class LoadedVersion:
    version: int
    path: str
    loaded: object
    signatures: dict          # name -> concrete function
    signature_defs: dict      # TF Serving's SignatureDefMap JSON
    metadata: dict            # the metadata record's JSON object (or {})


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


def _metadata(path: pathlib.Path) -> dict:
    """The exporter's metadata, or {} for a SavedModel without (a valid) one."""
    if not model_format.has_metadata(path):
        return {}
    try:
        return model_format.ModelMetadata.read(path).to_dict()
    except (OSError, model_format.ModelFormatError) as exc:
        log.warning("%s: unusable metadata file (%s)", path, exc)
        return {}


def load_version(version: int, path: pathlib.Path, warmup: bool = True) -> LoadedVersion:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signatures = dict(loaded.signatures)
    try:
        defs = _signature_defs(path)
    except (OSError, ValueError) as exc:
        log.warning("%s: signature defs unreadable (%s)", path, exc)
        defs = {"signature_def": {}}
    result = LoadedVersion(version, str(path), loaded, signatures, defs, _metadata(path))
    if warmup:
        _replay_warmup(result)
    return result


def _replay_warmup(model: LoadedVersion) -> None:
    """Runs the version's warmup requests, as TF Serving does on load."""
    import tensorflow as tf

    try:
        requests = model_format.read_warmup_requests(model.path)
    except Exception as exc:
        log.warning("version %d: warmup file unreadable (%s)", model.version, exc)
        return
    started = time.monotonic()
    for request in requests:
        name = request.model_spec.signature_name or SERVING_DEFAULT
        fn = model.signatures.get(name)
        if fn is None:
            continue
        try:
            fn(**{key: tf.constant(tf.make_ndarray(value))
                  for key, value in request.inputs.items()})
        except Exception as exc:
            log.warning("version %d: a warmup request failed (%s)", model.version, exc)
    if requests:
        log.info("version %d: %d warmup requests in %.2f s", model.version, len(requests),
                 time.monotonic() - started)


# --- the served version --------------------------------------------------------------------

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
                except Exception as exc:
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
            except Exception:
                log.exception("model %s: polling %s failed", self.name, self.base_path)
