"""A local model server speaking TF Serving's REST API (`facealign serve`): the HTTP part.

For development, demos and CI where the TF Serving binary or Docker image is
not at hand: the same URLs, request and answer JSON as TF Serving, so a
client (serving/client.py, curl, `facealign predict --model URL`) works
unchanged against either.

- ``GET  /v1/models/NAME[/versions/V]``            model version status
- ``GET  /v1/models/NAME[/versions/V]/metadata``   model spec + signature defs
- ``POST /v1/models/NAME[/versions/V]:predict``    ``instances`` (row) or ``inputs``
  (columnar) form, ``signature_name`` optional (default serving_default);
  binary inputs as {"b64": "..."}

and, its own (not TF Serving's), a try-it page at ``/`` with the two endpoints it calls,
``GET /facealign/v1/info`` and ``POST /facealign/v1/align`` (a photo in, its faces out):
page.py.

Which version is served and how new ones replace it: versions.py. The JSON
request and answer formats and their error messages: rest.py.

HTTP: aiohttp (already installed: a pinned dependency of the pipeline) -- an
asyncio server with keep-alive and request-size limits; inference runs in a
thread pool of `max_concurrency` threads behind a semaphore; requests that
cannot get a slot within `queue_timeout` seconds get 503. Bodies over
`max_body_bytes` get 413. Every error is TF Serving's ``{"error": "..."}`` with
a 4xx status for the client's mistakes (400 bad request: malformed or too deeply
nested JSON, or input the model's graph refuses, "instance I: <reason>"; 404
unknown model or version, 405, 413) and 500 for the server's own, never a
traceback; the server keeps serving. With `batching` (TF Serving's --enable_batching), predict
calls of one version and signature are batched: batching.py.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import signal
import threading

from aiohttp import web

from serving import page, rest
from serving.rest import RequestError
from serving.versions import LoadedVersion, ModelRepository

log = logging.getLogger("facealign.serve")

DEFAULT_PORT = 8501
MAX_BODY_BYTES = 10 * 2**20
_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                   r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<verb>/metadata|:[A-Za-z]+)?/?$")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ServingApp:
    """The aiohttp application around one ModelRepository."""

    def __init__(self, repository: ModelRepository, max_body_bytes: int = MAX_BODY_BYTES,
                 max_concurrency: int = 4, queue_timeout: float = 30.0, batcher=None):
        self.repository = repository
        self.batcher = batcher  # a batching.Batcher, or None: each request runs alone
        self.max_body_bytes = int(max_body_bytes)
        self.queue_timeout = float(queue_timeout)
        self.max_concurrency = int(max_concurrency)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.max_concurrency,
                                                           thread_name_prefix="predict")
        self._slots: asyncio.Semaphore | None = None
        self.app = web.Application(client_max_size=self.max_body_bytes,
                                   middlewares=[self._errors])
        self.app.router.add_route("*", "/{tail:.*}", self._route)
        self._page = page.PageAligner()

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
        except Exception:
            log.exception("error answering %s %s", request.method, request.path)
            return _error(500, "internal server error")

    async def _route(self, request: web.Request) -> web.Response:
        if request.path in (page.PAGE_PATH, page.INFO_PATH, page.ALIGN_PATH):
            return await self._page_route(request)
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
        body = await self._body(request)
        return web.json_response(await self._predict(model, body))

    async def _body(self, request: web.Request) -> bytes:
        """The request's body; 413 before reading when it declares more than the limit (the
        middleware answers 413 for one that turns out larger)."""
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise RequestError(413, f"the request body is larger than {self.max_body_bytes} bytes")
        return await request.read()

    async def _page_route(self, request: web.Request) -> web.Response:
        """The try-it page and the server's own endpoints behind it (serving/page.py)."""
        method = "POST" if request.path == page.ALIGN_PATH else "GET"
        if request.method != method:
            raise RequestError(405, f"use {method} for {request.path}")
        if request.path == page.PAGE_PATH:
            return web.Response(body=page.page_html(), content_type="text/html",
                                charset="utf-8")
        current = self.repository.current
        if current is None:
            raise RequestError(503, f"model {self.repository.name}: no version is loaded yet")
        if request.path == page.INFO_PATH:
            return web.json_response(page.model_info(self.repository.name, current,
                                                     self.max_body_bytes))
        body = await self._body(request)
        return web.json_response(await self._in_slot(
            self._page.align, self.repository.name, current, body, self.max_body_bytes))

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
        target = self.batcher.model(model) if self.batcher is not None else model
        return await self._in_slot(rest.run_predict, target, body)

    async def _in_slot(self, work, *args):
        """work(*args) in the inference pool, once one of max_concurrency slots is free."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.queue_timeout)
        except TimeoutError:
            raise RequestError(503, f"server busy: no inference slot free within "
                                    f"{self.queue_timeout:g} s") from None
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
        finally:
            self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.batcher is not None:
            self.batcher.close()


class LocalServer:
    """The repository, its poller and the HTTP server; `start()` runs it in a thread."""

    def __init__(self, model_base_path, model_name: str = "facealign", host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, poll_seconds: float = 2.0,
                 max_body_bytes: int = MAX_BODY_BYTES, max_concurrency: int = 4,
                 queue_timeout: float = 30.0, warmup: bool = True, access_log: bool = False,
                 batching=None):
        self.repository = ModelRepository(model_base_path, model_name, poll_seconds, warmup)
        batcher = None
        if batching is not None:  # a batching.BatchingParameters
            from serving.batching import Batcher

            batcher = Batcher(batching)
            max_concurrency = batcher.request_slots(max_concurrency)
        self.serving = ServingApp(self.repository, max_body_bytes, max_concurrency,
                                  queue_timeout, batcher)
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

    async def _serve(self, on_ready, handle_signals: bool) -> None:
        """Serves until stop() (or, with handle_signals, SIGINT / SIGTERM): the one lifecycle
        behind start() (in a thread) and serve_forever() (in this one)."""
        self._stopped = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._loop.add_signal_handler(signum, self._stopped.set)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass  # not the main thread, or no signals here: Ctrl-C still raises
        await self._start_site()
        try:
            if on_ready:
                on_ready(self)
            await self._stopped.wait()
        finally:
            await self._runner.cleanup()

    def load(self) -> None:
        """Loads the newest version now (the poller would, later) and starts polling."""
        self.repository.refresh()
        self.repository.start_polling()

    def _release(self) -> None:
        self.repository.stop_polling()
        self.serving.close()

    def start(self) -> LocalServer:
        """Loads the model, serves in a background thread; returns once the port is open."""
        self.load()
        ready = threading.Event()
        errors = []

        def run():
            try:
                asyncio.run(self._serve(lambda _server: ready.set(), handle_signals=False))
            except BaseException as exc:
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
        try:
            asyncio.run(self._serve(on_ready, handle_signals=True))
        finally:
            self._release()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._release()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
