"""pipeline.mysql: the ML Metadata store on a MySQL / MariaDB server instead of the SQLite file.

A private MariaDB server (Debian's mariadb-server; `make test` installs it when missing,
`make mariadb` alone) runs for this module on a free 127.0.0.1 port with its own data
folder, a user with a password, and stops afterwards. The demo pipeline runs twice against
it: the second run executes nothing (every component CACHED in MLMD).
"""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest
from test_pipeline_e2e import run_pipeline

from facealign.core import config
from facealign.core.config import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
USER, PASSWORD, PASSWORD_ENV = "facealign", "mlmd-test-password", "FACEALIGN_TEST_MLMD_PASSWORD"
COMPLETE, CACHED = 3, 5
INSTALL = ("install MariaDB: `make mariadb` (runs `apt-get install -y mariadb-server`; "
           "`make test` does it too)")


def _program(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    """A private MariaDB server: (host, port); the user USER may create databases."""
    server = _program("mariadbd", "mysqld")
    install_db = _program("mariadb-install-db", "mysql_install_db")
    if not server or not install_db:
        pytest.fail(f"no MariaDB server here (mariadbd / mariadb-install-db): {INSTALL}")
    folder = tmp_path_factory.mktemp("mariadb")
    data, port = folder / "data", _free_port()
    as_root = ["--user=root"] if os.geteuid() == 0 else []   # mariadbd refuses root otherwise
    small = ["--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M", "--skip-log-bin"]
    installed = subprocess.run(
        [install_db, "--no-defaults", f"--datadir={data}", "--skip-test-db",
         "--auth-root-authentication-method=normal", *as_root, *small],
        capture_output=True, text=True, timeout=300)
    if installed.returncode != 0:
        pytest.fail(f"mariadb-install-db failed:\n{installed.stdout}\n{installed.stderr}")
    init = folder / "init.sql"
    init.write_text("".join(
        f"CREATE USER IF NOT EXISTS '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}';\n"
        f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'{host}';\n"
        for host in ("127.0.0.1", "localhost")))
    log = folder / "server.log"
    process = subprocess.Popen(
        [server, "--no-defaults", f"--datadir={data}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--socket={folder / 'server.sock'}",
         f"--pid-file={folder / 'server.pid'}", f"--log-error={log}", f"--init-file={init}",
         *as_root, *small], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while "ready for connections" not in (log.read_text() if log.exists() else ""):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"mariadbd did not start:\n{log.read_text() if log.exists() else ''}")
        time.sleep(0.2)
    yield "127.0.0.1", port
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _mysql(host, port, database="facealign_mlmd", password_env=PASSWORD_ENV) -> list[str]:
    return [f"pipeline.mysql.host={host}", f"pipeline.mysql.port={port}",
            f"pipeline.mysql.database={database}", f"pipeline.mysql.user={USER}",
            f"pipeline.mysql.password_env={password_env}"]


def _node_executions(host, port, database) -> list[tuple[str, str, int]]:
    """(node id, execution type, state) of every execution in the store, in order."""
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    store = metadata_store.MetadataStore(metadata.mysql_metadata_connection_config(
        host=host, port=port, database=database, username=USER, password=PASSWORD))
    types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    rows = [(execution.id, context.name.split(".", 1)[-1], types[execution.type_id],
             execution.last_known_state)
            for context in store.get_contexts_by_type("node")
            for execution in store.get_executions_by_context(context.id)]
    return [row[1:] for row in sorted(rows)]


@pytest.mark.e2e
@pytest.mark.slow
def test_the_pipeline_on_a_mysql_store_reruns_fully_cached(mariadb, tmp_path, monkeypatch):
    host, port = mariadb
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    # one DAN stage: the store is under test here, not the cascade (test_pipeline_e2e has it)
    first = run_pipeline(tmp_path, "model.dan.stages=1", *_mysql(host, port))
    assert "Evaluator: BLESSED" in first.stdout
    before = len(_node_executions(host, port, "facealign_mlmd"))
    assert before >= 8
    run_pipeline(tmp_path, "model.dan.stages=1", *_mysql(host, port))
    new = _node_executions(host, port, "facealign_mlmd")[before:]
    assert {node for node, _, _ in new} >= {
        "LandmarkExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Augment",
        "Trainer", "LandmarkEvaluator", "Pusher"}
    # resolvers only query MLMD and are recorded as run; every component was CACHED
    assert [(node, state) for node, kind, state in new if kind != "Resolver"] == [
        (node, CACHED) for node, kind, _ in new if kind != "Resolver"]
    assert not (tmp_path / "root" / "metadata.sqlite").exists()


def _run_local(*overrides):
    from pipeline import runners

    runners.run_local(config.load(REPO / "pipeline.yaml", list(overrides)))


def test_no_server_at_the_address_says_how_to_start_one(monkeypatch):
    from pipeline.runners import MetadataStoreError

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    port = _free_port()
    with pytest.raises(MetadataStoreError, match=rf"pipeline\.mysql: no MySQL / MariaDB server "
                                                 rf"answers at 127\.0\.0\.1:{port} .*mariadbd"):
        _run_local(*_mysql("127.0.0.1", port))


def test_a_wrong_password_is_refused_by_name(mariadb, monkeypatch):
    from pipeline.runners import MetadataStoreError

    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    with pytest.raises(MetadataStoreError, match=rf"the server at 127\.0\.0\.1:{mariadb[1]} "
                                                 rf"refused user 'facealign' with the password "
                                                 rf"in \${PASSWORD_ENV}"):
        _run_local(*_mysql(*mariadb))


def test_the_password_comes_from_the_environment_never_the_file(monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ConfigError, match=rf"pipeline\.mysql\.password_env: the environment "
                                          rf"variable {PASSWORD_ENV} is not set"):
        _run_local(*_mysql("127.0.0.1", 3306))
    with pytest.raises(ConfigError, match=r"pipeline\.mysql\.password: unknown key"):
        config.load(REPO / "pipeline.yaml", [*_mysql("127.0.0.1", 3306),
                                             "pipeline.mysql.password=secret"])
    with pytest.raises(ConfigError, match=r"pipeline\.mysql: give pipeline\.metadata_path .* "
                                          r"or pipeline\.mysql .*, not both"):
        config.load(REPO / "pipeline.yaml", [*_mysql("127.0.0.1", 3306),
                                             "pipeline.metadata_path=m.sqlite"])
