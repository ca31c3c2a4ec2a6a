"""One `facealign run` at a time per pipeline (pipeline/run_lock.py): a second one stops with
the holder named, or waits when asked; a killed holder never leaves a stale lock."""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest
import test_metadata_mysql
from test_pipeline_e2e import pipeline_args

from facealign.core.config import MysqlSection
from pipeline import run_lock

REPO = pathlib.Path(__file__).resolve().parents[1]
mariadb = test_metadata_mysql.mariadb    # a private MariaDB server for this module


def _holder(code: str) -> subprocess.Popen:
    """Another process that takes a lock with `code` (a `with` header), prints 'held' and
    keeps it until killed."""
    script = (f"import sys, time\nfrom facealign.core.config import MysqlSection\n"
              f"from pipeline import run_lock\n"
              f"with {code}:\n    print('held', flush=True)\n    time.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    line = process.stdout.readline()
    assert line == "held\n", process.stderr.read()
    return process


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)


def test_a_held_root_is_refused_with_its_holder_and_free_once_the_holder_dies(tmp_path):
    root = tmp_path / "root"
    holder = _holder(f"run_lock.file_lock(__import__('pathlib').Path({str(root)!r}))")
    try:
        with pytest.raises(run_lock.RunLockedError) as refused:
            with run_lock.file_lock(root):
                pass
        message = str(refused.value)
        assert f"pipeline root {root} is in use by another facealign run" in message
        assert f"(pid {holder.pid} on {socket.gethostname()}, started 20" in message
        started = time.monotonic()
        with pytest.raises(run_lock.RunLockedError, match=r"; waited 1 s$"):
            with run_lock.file_lock(root, wait_s=1):
                pass
        assert 1 <= time.monotonic() - started < 5
    finally:
        _kill(holder)   # SIGKILL: no cleanup ran, yet the kernel let the lock go
    with run_lock.file_lock(root):
        assert f'"pid": {os.getpid()}' in (root / run_lock.LOCK_FILE).read_text()


def test_a_waiting_run_starts_when_the_holder_ends(tmp_path):
    root = tmp_path / "root"
    holder = _holder(f"run_lock.file_lock(__import__('pathlib').Path({str(root)!r}))")
    killer = subprocess.Popen(["sh", "-c", f"sleep 1; kill -9 {holder.pid}"])
    started = time.monotonic()
    with run_lock.file_lock(root, wait_s=60):
        waited = time.monotonic() - started
    killer.wait(30)
    holder.wait(30)
    assert 0.5 < waited < 30


def test_a_remote_root_is_said_to_be_unlocked():
    with run_lock.hold("gs://bucket/root") as unlocked:
        assert unlocked == ["pipeline root gs://bucket/root is not local: nothing stops a "
                            "second run on it at the same time (pipeline.mysql would)"]


@pytest.mark.e2e
def test_a_second_run_on_a_held_root_stops_at_once_with_exit_code_2(tmp_path):
    root = tmp_path / "root"
    with run_lock.file_lock(root):    # this test process is the run in progress
        started = time.monotonic()
        result = subprocess.run(pipeline_args(tmp_path), cwd=REPO, capture_output=True,
                                text=True, timeout=300)
        took = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-3000:]
    assert (f"facealign run: error: pipeline root {root} is in use by another facealign run "
            f"(pid {os.getpid()} on {socket.gethostname()}, started ") in result.stderr
    assert "--wait-for-lock SECONDS waits for it" in result.stderr
    assert "Traceback" not in result.stderr
    assert took < 60                         # the imports, then the refusal: no pipeline work
    assert sorted(p.name for p in root.iterdir()) == [run_lock.LOCK_FILE]  # MLMD untouched


# --- pipeline.mysql: runs on different machines share the server's named lock ---------------

def test_mysql_lock_names_fit_the_server():
    assert run_lock.mysql_lock_name("mlmd", "demo") == "facealign-run:mlmd:demo"
    long_name = run_lock.mysql_lock_name("d" * 64, "p" * 64)
    assert len(long_name) <= 64 and long_name != run_lock.mysql_lock_name("d" * 64, "q" * 64)


def test_a_pipeline_held_on_the_mysql_server_is_refused_until_its_holder_dies(mariadb):
    host, port = mariadb
    mysql = MysqlSection(host=host, port=port, database="locks", user=test_metadata_mysql.USER)
    holder = _holder(f"run_lock.mysql_lock(MysqlSection(host={host!r}, port={port}, "
                     f"database='locks', user={test_metadata_mysql.USER!r}), "
                     f"{test_metadata_mysql.PASSWORD!r}, 'demo')")
    try:
        with pytest.raises(run_lock.RunLockedError) as refused:
            with run_lock.mysql_lock(mysql, test_metadata_mysql.PASSWORD, "demo", wait_s=0.5):
                pass
        assert (f"pipeline 'demo' in database 'locks' on {host}:{port} is in use by another "
                f"facealign run (server session ") in str(refused.value)
        # another pipeline in the same database is not held
        with run_lock.mysql_lock(mysql, test_metadata_mysql.PASSWORD, "other"):
            pass
    finally:
        _kill(holder)   # its connection drops; the server lets the lock go
    with run_lock.mysql_lock(mysql, test_metadata_mysql.PASSWORD, "demo", wait_s=30):
        pass
