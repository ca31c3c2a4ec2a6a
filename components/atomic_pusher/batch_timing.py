"""TF Serving batching parameters measured on the model being pushed.

:func:`time_signature` times the SavedModel's ``serving_default`` at batch sizes 1, 8
and 32, built from the real faces of its own warmup requests
(trainer/export.py writes them; cycled to fill a batch), on the machine the Pusher runs
on: one untimed call per size, then the median of up to three (one once a second is
spent), so a 2-stage DAN takes about 10 s on 2 busy cores. :func:`choose` turns those
times into TF Serving's parameters, by these rules (t(b): seconds per call at batch b,
c(b) = t(b) / b: seconds per face):

- ``num_batch_threads`` = the CPU count (TF Serving's batching guide, CPU-only servers).
- ``max_batch_size``: the largest measured size at which batching still pays, i.e. each
  step up cuts the per-face time c by at least 10% (beyond that a bigger batch only
  adds latency); never below the largest warmup request (8 faces), because TF Serving
  refuses a request with more instances than max_batch_size and it replays those
  requests on every load.
- ``batch_timeout_micros`` = t(1) - c(B) at the chosen B, clamped to [0, 10 ms] and
  rounded to 100 us: the compute one request saves by riding in a full batch instead
  of running alone. Holding a batch open longer than that for another request costs
  the waiting requests more than that request can save; when batching saves nothing it
  is 0 (TF Serving's guide: start CPU servers at 0, try 1-10 ms).
- ``max_enqueued_batches`` = the full batches all threads clear in one second,
  ceil(num_batch_threads x 1 s / t(B)), at least num_batch_threads and at most 1000:
  past that a request is refused at once (503, retryable elsewhere) instead of
  waiting more than about a second in the queue.

The figures are the pipeline machine's; the file says which CPU measured them, and a
serving machine of another kind should measure its own (benchmarks/serving_latency.py).
"""
from __future__ import annotations

import math
import os
import statistics
import time

from facealign.core import model_format
from facealign.core.model_format import SERVING_DEFAULT, BatchingParameters

SIZES = (1, 8, 32)
REPEATS = 3                   # timed calls per size, fewer once SECONDS_PER_SIZE is spent
SECONDS_PER_SIZE = 1.0
MIN_GAIN = 0.10               # a step up in batch size must cut the per-face time this much
MIN_MAX_BATCH_SIZE = 8        # trainer.export.MAX_WARMUP_FACES: the warmup batch request
MAX_TIMEOUT_MICROS = 10_000   # TF Serving's guide: 1-10 ms on CPUs
QUEUE_SECONDS = 1.0           # the longest a full queue should take to drain


def _warmup_rows(model_dir: str) -> dict:
    """{input name: numpy array of rows} from the model's serving_default warmup requests."""
    import numpy as np
    import tensorflow as tf

    columns: dict[str, list] = {}
    requests = [r for r in model_format.read_warmup_requests(model_dir)
                if (r.model_spec.signature_name or SERVING_DEFAULT) == SERVING_DEFAULT]
    singles = [r for r in requests
               if all(t.tensor_shape.dim and t.tensor_shape.dim[0].size == 1
                      for t in r.inputs.values())]
    for request in singles or requests:
        for name, proto in request.inputs.items():
            columns.setdefault(name, []).append(tf.make_ndarray(proto))
    if not columns:
        raise ValueError(f"{model_dir}: no {SERVING_DEFAULT} warmup request to time the model with")
    return {name: np.concatenate(parts) for name, parts in columns.items()}


def time_signature(model_dir: str, sizes=SIZES, repeats: int = REPEATS) -> dict[int, float]:
    """{batch size: median seconds per call} of the SavedModel's serving_default."""
    import numpy as np
    import tensorflow as tf

    rows = _warmup_rows(model_dir)
    fn = tf.saved_model.load(model_dir).signatures[SERVING_DEFAULT]
    count = len(next(iter(rows.values())))
    timings = {}
    for size in sizes:
        index = np.arange(size) % count
        inputs = {name: tf.constant(values[index]) for name, values in rows.items()}
        fn(**inputs)  # first call at this size: not timed
        times = []
        while len(times) < repeats and sum(times) < SECONDS_PER_SIZE:
            started = time.perf_counter()
            {key: value.numpy() for key, value in fn(**inputs).items()}
            times.append(time.perf_counter() - started)
        timings[int(size)] = statistics.median(times)
    return timings


def choose(timings: dict[int, float], cpus: int | None = None) -> BatchingParameters:
    """TF Serving's parameters from {batch size: seconds per call} (the module's rules)."""
    threads = max(1, int(cpus or os.cpu_count() or 1))
    sizes = sorted(timings)
    if not sizes or sizes[0] != 1 or any(timings[s] <= 0 for s in sizes):
        raise ValueError(f"need positive times at batch size 1 and more, got {timings}")
    best = 1
    for size in sizes[1:]:
        if timings[size] / size <= (1 - MIN_GAIN) * timings[best] / best:
            best = size
    max_batch_size = max(best, MIN_MAX_BATCH_SIZE)
    full = timings.get(max_batch_size)
    if full is None:  # the floor is not a measured size: interpolate per face
        below = max(s for s in sizes if s <= max_batch_size)
        full = timings[below] / below * max_batch_size
    saved = timings[1] - full / max_batch_size
    timeout = int(round(min(max(saved, 0.0), MAX_TIMEOUT_MICROS / 1e6) * 1e4)) * 100
    queued = math.ceil(threads * QUEUE_SECONDS / full)
    return BatchingParameters(max_batch_size=max_batch_size, batch_timeout_micros=timeout,
                              max_enqueued_batches=min(1000, max(threads, queued)),
                              num_batch_threads=threads)


def describe(timings: dict[int, float], cpu: str, cpus: int) -> str:
    """The comment the Pusher puts on top of the file: what was measured, where."""
    measured = ", ".join(f"batch {size}: {seconds * 1000:.1f} ms"
                         for size, seconds in sorted(timings.items()))
    return (f"written by the facealign Pusher from {SERVING_DEFAULT} timings on {cpu} "
            f"({cpus} CPUs)\nper call: {measured}\n"
            "rules: components/atomic_pusher/batch_timing.py; "
            "TF Serving: --enable_batching --batching_parameters_file=THIS_FILE")
