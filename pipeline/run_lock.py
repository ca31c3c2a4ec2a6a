"""One `facealign run` at a time per pipeline: two at once would both train and race to push.

Locally the lock is an OS file lock (flock) on LOCK_FILE in the pipeline root, which also
covers the SQLite ML Metadata store kept there. With pipeline.mysql it is also a MySQL /
MariaDB named lock (GET_LOCK) keyed by database and pipeline name, so runs on different
machines sharing the server are serialised. Both are the kernel's or the server's, so they
are released when the process dies, even by SIGKILL; a killed run never leaves a stale
lock behind. A remote root (gs://...) cannot be locked from here: without pipeline.mysql
nothing stops a second run on it, and run_local says so. No TensorFlow here.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import pathlib
import socket
import time
from collections.abc import Iterator

LOCK_FILE = ".facealign-run.lock"
POLL_S = 0.5
MYSQL_NAME_MAX = 64           # MySQL's longest lock name
MYSQL_KEEP_ALIVE_S = 31536000  # the session outlives the server's idle timeout (8 h)


class RunLockedError(RuntimeError):
    """Another run holds the pipeline's lock; the message names the root and the holder."""


def holder_record() -> dict:
    """Who holds the lock, as the refused run reports it."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def describe_holder(record: dict | None) -> str:
    if not record:
        return "a process that has not written its name yet"
    return (f"pid {record.get('pid')} on {record.get('host')}, started "
            f"{record.get('started')}")


def _waited(wait_s: float) -> str:
    return f"; waited {wait_s:g} s" if wait_s > 0 else ""


@contextlib.contextmanager
def file_lock(root: pathlib.Path, wait_s: float = 0) -> Iterator[None]:
    """Holds an exclusive flock on root/LOCK_FILE, waiting up to wait_s seconds for it."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    # not O_TRUNC: the holder's record must survive a refused run's open
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunLockedError(
                        f"pipeline root {root} is in use by another facealign run "
                        f"({describe_holder(_read_record(path))}){_waited(wait_s)}") from None
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_record()).encode(), 0)
        yield
    finally:
        os.close(fd)   # releases the lock; the file stays (unlinking it would race)


def _read_record(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def mysql_lock_name(database: str, pipeline_name: str) -> str:
    """The server-wide lock name of a pipeline in a database, at most 64 characters."""
    name = f"facealign-run:{database}:{pipeline_name}"
    if len(name) > MYSQL_NAME_MAX:
        name = "facealign-run:" + hashlib.sha256(name.encode()).hexdigest()[:40]
    return name


@contextlib.contextmanager
def mysql_lock(mysql, password: str | None, pipeline_name: str,
               wait_s: float = 0) -> Iterator[None]:
    """Holds GET_LOCK on the pipeline's name for as long as its connection is open."""
    import pymysql

    name = mysql_lock_name(mysql.database, pipeline_name)
    connection = pymysql.connect(host=mysql.host, port=mysql.port, user=mysql.user,
                                 password=password or "", connect_timeout=10)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION wait_timeout = %s", (MYSQL_KEEP_ALIVE_S,))
            cursor.execute("SELECT GET_LOCK(%s, %s)", (name, wait_s))
            (acquired,) = cursor.fetchone()
            if acquired != 1:
                raise RunLockedError(
                    f"pipeline {pipeline_name!r} in database {mysql.database!r} on "
                    f"{mysql.host}:{mysql.port} is in use by another facealign run "
                    f"({_mysql_holder(cursor, name)}){_waited(wait_s)}")
        yield
    finally:
        connection.close()   # the server releases the lock with the session


def _mysql_holder(cursor, name: str) -> str:
    """The holding session as the server knows it: its client address and idle time (it
    has been idle since it took the lock)."""
    cursor.execute("SELECT IS_USED_LOCK(%s)", (name,))
    (session,) = cursor.fetchone()
    if session is None:
        return "a session that has just let it go"
    cursor.execute("SELECT HOST, TIME FROM information_schema.PROCESSLIST WHERE ID = %s",
                   (session,))
    row = cursor.fetchone()
    if row is None:
        return f"server session {session}"
    host, seconds = row
    return f"server session {session} from {host}, holding it for {seconds} s"


@contextlib.contextmanager
def hold(root: str | pathlib.Path, mysql=None, mysql_password: str | None = None,
         pipeline_name: str = "", wait_s: float = 0) -> Iterator[list[str]]:
    """The pipeline's locks (the root's file lock, pipeline.mysql's named lock); yields
    what is left unlocked (a remote root without pipeline.mysql), for the caller to say."""
    unlocked = []
    deadline = time.monotonic() + wait_s
    with contextlib.ExitStack() as stack:
        if "://" in str(root):
            if mysql is None:
                unlocked.append(f"pipeline root {root} is not local: nothing stops a second "
                                "run on it at the same time (pipeline.mysql would)")
        else:
            stack.enter_context(file_lock(pathlib.Path(root), wait_s))
        if mysql is not None:
            stack.enter_context(mysql_lock(mysql, mysql_password, pipeline_name,
                                           max(0.0, deadline - time.monotonic())))
        yield unlocked
