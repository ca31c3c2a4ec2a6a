"""Request batching for `facealign serve --enable_batching`, with TF Serving's semantics.

TF Serving's batching wraps the model's Session::Run: concurrent calls wait in a
queue and run as one. Here the same happens at the signature call:
:meth:`Batcher.model` gives a served version whose signatures are
:class:`BatchedSignature`\\ s, which rest.run_predict calls exactly as it calls the real
ones, so every JSON check, error message and answer format stays rest.py's. Each call
(one request: all its instances, every input stacked along axis 0) becomes a task in
its signature's queue, one queue per version and signature, and ``num_batch_threads``
threads shared by all queues run the batches (TF Serving's SharedBatchScheduler):

- A task joins the queue's open batch when its instances fit in ``max_batch_size``;
  otherwise that batch is closed and a new one opened, unless the queue already holds
  ``max_enqueued_batches`` batches: then the request is refused at once (503, TF
  Serving's "The batch scheduling queue ... is full"). A task with more instances
  than ``max_batch_size`` is refused (400, TF Serving's "Task size ... is larger than
  maximum input batch size ...").
- A free thread takes the oldest batch that is full, closed, or whose first task has
  waited ``batch_timeout_micros``. With 0 (TF Serving's default) it takes the open
  batch at once, so batches grow only while every thread is busy.
- The batch's inputs are concatenated, the signature runs once and each output is cut
  back into the tasks' rows, in order: every request gets exactly its own rows.
- When the batched call fails (one request's image cannot be decoded, say: the op fails
  the whole batch), its tasks run again one by one, so each request gets its own answer
  or its own error and nobody else's.

Requests wait for their batch in the server's request threads, so with batching the
server admits :meth:`Batcher.request_slots` requests at once (enough to fill every batch
the queues may hold, up to REQUEST_SLOT_CAP) instead of --max-concurrency.
The parameters and their file format: facealign/core/model_format.py.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time

from facealign.core.model_format import BatchingParameters
from serving.rest import RequestError

log = logging.getLogger("facealign.serve")

REQUEST_SLOT_CAP = 256  # request threads at most, however large the batches may be


class _Task:
    """One signature call: its inputs, its row count, and (once run) its outputs or error."""

    __slots__ = ("inputs", "size", "done", "outputs", "error")

    def __init__(self, inputs: dict, size: int):
        self.inputs, self.size = inputs, size
        self.done = threading.Event()
        self.outputs = None
        self.error: BaseException | None = None


class _Batch:
    __slots__ = ("tasks", "size", "opened", "closed")

    def __init__(self, opened: float):
        self.tasks: list[_Task] = []
        self.size = 0
        self.opened = opened
        self.closed = False


def _batch_dimension(fn) -> bool:
    """True when every input of the signature is batched along axis 0 ([None, ...])."""
    try:
        specs = fn.structured_input_signature[1]
    except (AttributeError, IndexError, TypeError):
        return False
    return bool(specs) and all(
        spec.shape.rank is not None and spec.shape.rank >= 1 and spec.shape[0] is None
        for spec in specs.values())


def _rows(inputs: dict) -> int | None:
    """The common leading dimension of a call's inputs; None when they have none."""
    sizes = {int(value.shape[0]) if len(value.shape) else None for value in inputs.values()}
    if len(sizes) != 1 or None in sizes:
        return None
    size = sizes.pop()
    return size or None


class BatchedSignature:
    """A signature whose calls are batched by a Batcher; anything else is the signature's."""

    def __init__(self, fn, batcher: Batcher):
        self.fn = fn
        self.batcher = batcher
        self.batches: collections.deque[_Batch] = collections.deque()  # the last may be open
        self.batchable = _batch_dimension(fn)

    def __getattr__(self, name):  # structured_input_signature, structured_outputs, ...
        if name == "fn":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.fn, name)

    def __call__(self, **inputs):
        size = _rows(inputs) if self.batchable else None
        if size is None:  # nothing to batch along: the signature itself says what is wrong
            return self.fn(**inputs)
        task = _Task(inputs, size)
        self.batcher.submit(self, task)
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.outputs


class Batcher:
    """The batch queues of every served signature and the threads that run them."""

    def __init__(self, parameters: BatchingParameters):
        self.parameters = parameters
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=100_000)
        self.split_batches = 0  # batched calls that failed and were re-run one by one
        self._ready = threading.Condition()
        self._waiting: list[BatchedSignature] = []  # signatures with batches in their queue
        self._wrapped: tuple[object, object] = (None, None)
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
                         for i in range(parameters.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def request_slots(self, max_concurrency: int) -> int:
        """Requests the server should admit at once: enough to fill every batch the queues
        may hold, at least `max_concurrency`, at most REQUEST_SLOT_CAP."""
        p = self.parameters
        fill = p.max_batch_size * (p.num_batch_threads + p.max_enqueued_batches)
        return max(int(max_concurrency), min(REQUEST_SLOT_CAP, fill))

    def model(self, loaded):
        """The served version (a versions.LoadedVersion) with batched signatures; the same
        object for every request to one version, so they share its queues."""
        with self._ready:
            if self._wrapped[0] is not loaded:
                signatures = {name: BatchedSignature(fn, self)
                              for name, fn in loaded.signatures.items()}
                self._wrapped = (loaded, dataclasses.replace(loaded, signatures=signatures))
            return self._wrapped[1]

    def stats(self) -> dict:
        """Batches run so far: how many, their mean and largest size in instances, and how
        many failed as a batch and were re-run one request at a time."""
        sizes = list(self.batch_sizes)
        return {"batches": len(sizes), "mean_size": round(sum(sizes) / len(sizes), 2)
                if sizes else 0.0, "largest": max(sizes, default=0),
                "split_after_failure": self.split_batches}

    # --- the queues ------------------------------------------------------------------------

    def submit(self, signature: BatchedSignature, task: _Task) -> None:
        """Puts a task into its signature's queue (the rules in the module docstring)."""
        limit = self.parameters.max_batch_size
        if task.size > limit:
            raise RequestError(400, f"Task size {task.size} is larger than maximum input "
                                    f"batch size {limit}")
        with self._ready:
            if self._closed:
                raise RequestError(503, "the server is shutting down")
            batches = signature.batches
            batch = batches[-1] if batches else None
            if batch is None or batch.closed or batch.size + task.size > limit:
                if len(batches) >= self.parameters.max_enqueued_batches:
                    raise RequestError(503, "The batch scheduling queue to which this task "
                                            "was submitted is full")
                if batch is not None:
                    batch.closed = True
                batch = _Batch(time.monotonic())
                batches.append(batch)
                if len(batches) == 1:
                    self._waiting.append(signature)
            batch.tasks.append(task)
            batch.size += task.size
            if batch.size >= limit:
                batch.closed = True
            self._ready.notify_all()  # a closed batch and a new one may both be ready

    def _take(self, now: float):
        """(signature, batch) of the oldest batch ready to run, else (None, seconds until
        the next open batch times out, or None)."""
        timeout = self.parameters.batch_timeout_micros / 1e6
        best, wait = None, None
        for signature in self._waiting:
            batch = signature.batches[0]
            due = batch.opened + timeout
            if batch.closed or due <= now:
                if best is None or batch.opened < best.batches[0].opened:
                    best = signature
            else:
                wait = due - now if wait is None else min(wait, due - now)
        if best is None:
            return None, wait
        batch = best.batches.popleft()
        batch.closed = True
        if not best.batches:
            self._waiting.remove(best)
        return best, batch

    def _work(self) -> None:
        while True:
            with self._ready:
                while True:
                    if self._closed:
                        return
                    signature, batch_or_wait = self._take(time.monotonic())
                    if signature is not None:
                        break
                    self._ready.wait(batch_or_wait)
            batch = batch_or_wait
            try:
                self._run(signature.fn, batch.tasks)
            except BaseException as exc:
                log.exception("batch thread error")
                for task in batch.tasks:
                    if not task.done.is_set():
                        task.error = exc
                        task.done.set()

    def _run(self, fn, tasks: list[_Task]) -> None:
        """One call for the batch, its outputs split by rows; one call per task on failure."""
        import numpy as np
        import tensorflow as tf

        self.batch_sizes.append(sum(task.size for task in tasks))
        if len(tasks) == 1:
            _run_alone(fn, tasks[0])
            return
        try:
            names = tasks[0].inputs.keys()
            outputs = fn(**{name: tf.concat([task.inputs[name] for task in tasks], axis=0)
                            for name in names})
            total = sum(task.size for task in tasks)
            arrays = {name: value.numpy() for name, value in outputs.items()}
            if any(array.ndim == 0 or len(array) != total for array in arrays.values()):
                raise ValueError("an output is not batched along its first axis")
        except Exception as exc:
            with self._ready:
                self.split_batches += 1
            log.info("a batch of %d requests failed (%s); running them one by one",
                     len(tasks), (str(exc).splitlines() or [type(exc).__name__])[0][:200])
            for task in tasks:
                _run_alone(fn, task)
            return
        ends = np.cumsum([task.size for task in tasks])
        for task, end in zip(tasks, ends, strict=True):
            task.outputs = {name: tf.constant(array[end - task.size:end])
                            for name, array in arrays.items()}
            task.done.set()

    def close(self) -> None:
        """Stops the threads; requests still queued get 503."""
        with self._ready:
            self._closed = True
            pending = [task for signature in self._waiting for batch in signature.batches
                       for task in batch.tasks]
            for signature in self._waiting:
                signature.batches.clear()
            self._waiting.clear()
            self._ready.notify_all()
        for task in pending:
            task.error = RequestError(503, "the server is shutting down")
            task.done.set()


def _run_alone(fn, task: _Task) -> None:
    try:
        task.outputs = fn(**task.inputs)
    except Exception as exc:
        task.error = exc
    finally:
        task.done.set()
