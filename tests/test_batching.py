"""Request batching (serving/batching.py) with TF Serving's semantics, on a real tiny DAN
exported as the Trainer does and real 300-W faces with the boxes of boxes/afw.csv:
concurrent requests share one signature call and each gets exactly its own rows; a
request that breaks the batched call fails alone; a version pushed during a load run
loses no request; the batching parameters file and `facealign serve`'s flags."""
import base64
import concurrent.futures
import csv
import json
import shutil
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from facealign import cli
from facealign.core import model_format
from facealign.core.model_format import SERVING_DEFAULT, BatchingParameters
from serving import batching, server, versions
from serving.rest import RequestError
from tests import model_fixtures
from tests.rest_calls import call

NAME = "facealign"
PATIENT = 30_000_000  # 30 s: batches in these tests run because they are full, not timed out


@pytest.fixture(scope="module")
def faces(shared_data):
    """Six real AFW faces: (encoded bytes, [x0, y0, x1, y1] from boxes/afw.csv)."""
    root = shared_data / "300w"
    with open(root / "boxes" / "afw.csv") as handle:
        rows = list(csv.DictReader(handle))[:6]
    return [((root / row["image"]).read_bytes(),
             [float(row[k]) for k in ("x0", "y0", "x1", "y1")]) for row in rows]


@pytest.fixture(scope="module")
def base(shared_data, faces, tmp_path_factory):
    folder = tmp_path_factory.mktemp("batching-models")
    model_fixtures.export_tiny_dan(folder / "1", model_fixtures.afw_mean_shape(shared_data),
                             warmup_faces=faces[:2])
    return folder


@pytest.fixture(scope="module")
def direct(base):
    """The version's own serving_default, called without any batching."""
    fn = tf.saved_model.load(str(base / "1")).signatures[SERVING_DEFAULT]

    def predict(chosen):
        out = fn(image_bytes=tf.constant([image for image, _ in chosen]),
                 box=tf.constant([box for _, box in chosen], tf.float32))
        return out["landmarks"].numpy(), out["stage_spread"].numpy()
    return predict


def instances(chosen):
    return {"instances": [{"image_bytes": {"b64": base64.b64encode(image).decode()},
                           "box": box} for image, box in chosen]}


def serve(base, **parameters):
    return server.LocalServer(base, NAME, "127.0.0.1", 0, poll_seconds=0.2,
                              batching=BatchingParameters(**parameters)).start()


def concurrently(function, arguments):
    with concurrent.futures.ThreadPoolExecutor(len(arguments)) as pool:
        return list(pool.map(function, arguments))


# --- one batch, split back ----------------------------------------------------------------------

def test_concurrent_requests_get_their_own_rows_from_one_batch(base, faces, direct):
    groups = [faces[0:1], faces[1:3], faces[3:6]]  # 1 + 2 + 3 instances: one full batch of 6
    local = serve(base, max_batch_size=6, batch_timeout_micros=PATIENT, num_batch_threads=1)
    try:
        answers = concurrently(lambda group: call(local.model_url + ":predict",
                                                  instances(group)), groups)
        stats = local.serving.batcher.stats()
    finally:
        local.stop()
    assert stats["batches"] == 1 and stats["largest"] == 6, stats
    for group, (status, answer) in zip(groups, answers, strict=True):
        assert status == 200, answer
        landmarks, spread = direct(group)
        assert len(answer["predictions"]) == len(group)
        np.testing.assert_allclose([p["landmarks"] for p in answer["predictions"]], landmarks,
                                   atol=1e-3)
        np.testing.assert_allclose([p["stage_spread"] for p in answer["predictions"]], spread,
                                   atol=1e-5)


def test_an_undecodable_image_fails_only_its_own_request(base, faces, direct):
    garbage = (b"these bytes are not an image", faces[0][1])
    groups = [faces[0:1], [garbage], faces[1:3]]  # one batch of 4 that the decoder breaks
    local = serve(base, max_batch_size=4, batch_timeout_micros=PATIENT, num_batch_threads=1)
    try:
        answers = concurrently(lambda group: call(local.model_url + ":predict",
                                                  instances(group)), groups)
        stats = local.serving.batcher.stats()
        status, again = call(local.model_url + ":predict", instances(faces[2:6]))  # full
    finally:
        local.stop()
    (good_status, good), (bad_status, bad), (pair_status, pair) = answers
    assert bad_status == 400 and set(bad) == {"error"}, bad
    assert "image" in bad["error"].lower(), bad
    for code, answer, group in ((good_status, good, groups[0]), (pair_status, pair, groups[2])):
        assert code == 200, answer
        np.testing.assert_allclose([p["landmarks"] for p in answer["predictions"]],
                                   direct(group)[0], atol=1e-3)
    assert stats["largest"] == 4 and stats["split_after_failure"] >= 1, stats
    assert status == 200 and len(again["predictions"]) == 4  # and it keeps serving


def test_batcher_gives_each_caller_its_rows_or_its_own_error(base, faces, direct):
    """The same at the signature call, below the JSON checks: what rest.run_predict calls."""
    loaded = versions.load_version(1, base / "1", warmup=False)
    batcher = batching.Batcher(BatchingParameters(
        max_batch_size=5, batch_timeout_micros=PATIENT, num_batch_threads=1))
    try:
        signature = batcher.model(loaded).signatures[SERVING_DEFAULT]
        assert batcher.model(loaded).signatures[SERVING_DEFAULT] is signature
        assert signature.structured_input_signature == \
            loaded.signatures[SERVING_DEFAULT].structured_input_signature
        groups = [faces[0:2], [(b"\x89PNG broken", faces[2][1])], faces[3:5]]

        def one(group):
            try:
                out = signature(image_bytes=tf.constant([image for image, _ in group]),
                                box=tf.constant([box for _, box in group], tf.float32))
                return out["landmarks"].numpy()
            except tf.errors.InvalidArgumentError as exc:
                return exc

        first, broken, last = concurrently(one, groups)
    finally:
        batcher.close()
    assert isinstance(broken, tf.errors.InvalidArgumentError)
    np.testing.assert_allclose(first, direct(groups[0])[0], atol=1e-3)
    np.testing.assert_allclose(last, direct(groups[2])[0], atol=1e-3)
    assert batcher.stats()["largest"] == 5 and batcher.stats()["split_after_failure"] == 1


def test_oversized_requests_and_a_full_queue_are_refused_like_tf_serving(base, faces, direct):
    loaded = versions.load_version(1, base / "1", warmup=False)
    batcher = batching.Batcher(BatchingParameters(
        max_batch_size=4, batch_timeout_micros=PATIENT, max_enqueued_batches=1,
        num_batch_threads=1))

    def call_with(group):
        return signature(image_bytes=tf.constant([image for image, _ in group]),
                         box=tf.constant([box for _, box in group], tf.float32))

    try:
        signature = batcher.model(loaded).signatures[SERVING_DEFAULT]
        with pytest.raises(RequestError, match="Task size 5 is larger than maximum input "
                                               "batch size 4") as error:
            call_with(faces[:5])
        assert error.value.status == 400
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            waiting = pool.submit(call_with, faces[:1])  # opens the only batch the queue holds
            deadline = time.monotonic() + 60
            while not signature.batches and time.monotonic() < deadline:
                time.sleep(0.01)
            assert signature.batches, "the first request never reached the queue"
            with pytest.raises(RequestError, match="queue .* is full") as error:
                call_with(faces[1:5])  # 1 + 4 > 4: it needs a second batch
            assert error.value.status == 503
            filling = pool.submit(call_with, faces[1:4])  # 1 + 3 = 4: fills it, so it runs
            np.testing.assert_allclose(waiting.result(120)["landmarks"].numpy(),
                                       direct(faces[:1])[0], atol=1e-3)
            np.testing.assert_allclose(filling.result(120)["landmarks"].numpy(),
                                       direct(faces[1:4])[0], atol=1e-3)
    finally:
        batcher.close()


# --- a new version during a load run ------------------------------------------------------------

def test_a_version_pushed_during_a_load_run_loses_no_request(base, faces, tmp_path):
    """Clients keep firing while a new version is copied in as the Pusher does (a hidden
    staging folder, then a rename): every answer is 200 and the server switches to it."""
    served = tmp_path / "served"
    shutil.copytree(base / "1", served / "1")
    local = serve(served, max_batch_size=8, batch_timeout_micros=2000, num_batch_threads=2)
    statuses, after_switch = [], []
    switched, stop = threading.Event(), threading.Event()
    budget = threading.Semaphore(400)  # at most 400 requests, whatever happens

    def client(index):
        while not stop.is_set() and budget.acquire(blocking=False):
            group = faces[index % 6:index % 6 + 1 + index % 2]
            status, answer = call(local.model_url + ":predict", instances(group))
            statuses.append((status, answer if status != 200 else None))
            if switched.is_set():
                after_switch.append(status)

    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(client, i) for i in range(4)]
            deadline = time.monotonic() + 180
            while len(statuses) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            shutil.copytree(base / "1", served / ".incoming-2-1234")
            (served / ".incoming-2-1234").rename(served / "2")
            while local.repository.current.version != 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            switched.set()
            while len(after_switch) < 20 and time.monotonic() < deadline and not all(
                    c.done() for c in clients):
                time.sleep(0.05)
            stop.set()
            for c in clients:
                c.result(120)
        metadata_version = urllib.request.urlopen(local.model_url + "/metadata", timeout=60)
        version = json.loads(metadata_version.read())["model_spec"]["version"]
        status_2, _ = call(local.model_url + "/versions/2:predict", instances(faces[:1]))
        stats = local.serving.batcher.stats()
    finally:
        stop.set()
        local.stop()
    errors = [answer for status, answer in statuses if status != 200]
    assert not errors, errors[:3]
    assert version == "2" and status_2 == 200
    assert len(statuses) >= 40 and len(after_switch) >= 20, (len(statuses), len(after_switch))
    assert stats["batches"] > 0


# --- the parameters file and the flags ----------------------------------------------------------

def test_parameters_file_reads_tf_servings_text_format(tmp_path):
    path = tmp_path / "batching.txt"
    path.write_text("# for TF Serving\nmax_batch_size { value: 32 }\n"
                    "batch_timeout_micros: { value: 2000 },\n"
                    "num_batch_threads <value: 4>; max_enqueued_batches { value: 0x10 }\n"
                    "allowed_batch_sizes: [8, 16]\nallowed_batch_sizes: 32\n"
                    "pad_variable_length_inputs: true\n"
                    "thread_pool_name { value: \"model_server_batch_threads\" }\n")
    read = model_format.read_batching_parameters(path)
    assert read == BatchingParameters(32, 2000, 16, 4)
    assert read == model_format.parse_batching_parameters(
        model_format.batching_parameters_text(read, "a\ncomment"))
    defaults = model_format.parse_batching_parameters("")
    assert (defaults.max_batch_size, defaults.batch_timeout_micros,
            defaults.max_enqueued_batches) == (1000, 0, 10)  # TF Serving's
    assert defaults.num_batch_threads >= 1


@pytest.mark.parametrize("text, words", [
    ("max_batch_size: 32", "max_batch_size: TF Serving takes it as a wrapper message"),
    ("max_batch_szie { value: 32 }", "max_batch_szie: unknown field"),
    ("max_batch_size { value: 0 }", "max_batch_size: must be an integer >= 1"),
    ("batch_timeout_micros { value: -1 }", "batch_timeout_micros: must be an integer >= 0"),
    ("num_batch_threads { value: 2.5 }", "num_batch_threads: expected an integer"),
    ("max_batch_size { value: 8 }\nmax_batch_size { value: 9 }", "max_batch_size: given twice"),
    ("max_batch_size { valeu: 8 }", "max_batch_size: unknown field 'valeu'"),
    ("max_batch_size { value: 8 }\nallowed_batch_sizes: [4, 16]",
     "allowed_batch_sizes: the last entry (16) must equal max_batch_size (8)"),
    ("enable_large_batch_splitting { value: true }", "enable_large_batch_splitting: a TF "
                                                     "Serving field"),
    ("max_batch_size { value: 8", "max_batch_size: missing '}'"),
])
def test_a_bad_parameters_file_is_one_line_naming_the_file_and_field(text, words, tmp_path,
                                                                      capsys):
    path = tmp_path / "bad.txt"
    path.write_text(text + "\n")
    with pytest.raises(model_format.BatchingParametersError) as error:
        model_format.read_batching_parameters(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message
    (tmp_path / "models").mkdir(exist_ok=True)
    code = cli.main(["serve", "--model-base-path", str(tmp_path / "models"),
                     "--enable_batching", "--batching_parameters_file", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_serve_flags_are_tf_servings(tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    code = cli.main(["serve", "--model-base-path", str(models),
                     "--batching_parameters_file", str(tmp_path / "b.txt")])
    assert code == 2 and "needs --enable_batching" in capsys.readouterr().err
    code = cli.main(["serve", "--model-base-path", str(models), "--enable_batching=true",
                     "--batching_parameters_file", str(tmp_path / "missing.txt")])
    err = capsys.readouterr().err
    assert code == 2 and "missing.txt" in err and "No such file" in err
    with pytest.raises(SystemExit):
        cli.main(["serve", "--model-base-path", str(models), "--enable_batching=maybe"])
    assert "expected true or false" in capsys.readouterr().err
