"""Connections that never answer, SQL targets dbmigrate must check before writing, and SQLite paths
(issue 10, items 1, 7, 9a, 9b, 9f).

The silent peer is a real socket: a listener thread on 127.0.0.1 that accepts every connection and
never sends a byte. A server that stops answering in the middle of a query is a real MariaDB
server (a private `mariadbd`, started here) frozen with SIGSTOP: the kernel still accepts and
acknowledges, the server process answers nothing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support import servers


# ----------------------------------------------------------------------------- silent peers
@pytest.fixture
def silent_port():
    """A port on 127.0.0.1 where a listener accepts every connection and never answers."""
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    lsock.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            held.append(conn)  # kept open, never read from, never written to
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield lsock.getsockname()[1]
    stop.set()
    t.join(timeout=2)
    for c in held:
        c.close()
    lsock.close()


SILENT = {"mysql": "mysql://root:s3cretpw@127.0.0.1:{port}/mlflow",
          "postgresql": "postgresql://postgres:s3cretpw@127.0.0.1:{port}/mlflow",
          "mongodb": "mongodb://root:s3cretpw@127.0.0.1:{port}/mlflow"}
BOUND = 30  # seconds: the connect timeout (10 s) and start-up, with room for a loaded machine


@pytest.mark.parametrize("side", ["source", "target"])
@pytest.mark.parametrize("scheme", ["mysql", "postgresql", "mongodb"])
def test_a_server_that_accepts_and_never_answers_stops_with_exit_3(mlflow_source, silent_port, tmp_path,
                                                                   scheme, side):
    silent = SILENT[scheme].format(port=silent_port)
    if side == "source":
        args = ["--source", silent, "--target", f"sqlite:///{tmp_path / 'out.db'}"]
    else:
        src, _ = mlflow_source("sqlite", 3)
        args = ["--source", src, "--target", silent]
    t0 = time.monotonic()
    res = run_cli("migrate", *args, "--no-progress", timeout=120)
    took = time.monotonic() - t0
    out = res.stdout + res.stderr
    assert res.returncode == 3, out[-3000:]
    assert took < BOUND, f"took {took:.1f} s"
    error = next(ln for ln in res.stdout.splitlines() if ln.startswith("ERROR"))
    assert side in error.lower() and f"127.0.0.1:{silent_port}" in error, error
    assert "s3cretpw" not in out
    assert not (tmp_path / "out.db").exists()


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_connections_carry_tcp_keepalives(pg_base, mysql_base, engine):
    """A host that vanishes mid-query (no more acknowledgements) is found by TCP keepalives,
    not by a read timeout that would also cut long statements: the options must be on the real
    sockets of both the reader's and the writer's connections."""
    from dbmigrate import netbounds
    from dbmigrate.readers.sql import SqlSource
    from dbmigrate.uri import parse_uri
    from dbmigrate.writers.sql import SqlWriter
    uri = servers.pg_database(pg_base, "postgres") if engine == "postgresql" else \
        servers.mysql_database(mysql_base, "mysql")
    source = SqlSource(parse_uri(uri, role="source")).open()
    writer = SqlWriter(parse_uri(uri, role="target"))
    try:
        conns = [source._conn, writer.connect()]
        for conn in conns:
            fd = conn.fileno() if engine == "postgresql" else conn._sock.fileno()
            sock = socket.socket(fileno=os.dup(fd))
            try:
                got = (sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                       sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                       sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                       sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT))
            finally:
                sock.close()
            assert got == (1, netbounds.KEEPALIVE_IDLE, netbounds.KEEPALIVE_INTERVAL,
                           netbounds.KEEPALIVE_COUNT), got
    finally:
        source.close()
        writer.close()


# ----------------------------------------------------------------------------- a frozen MariaDB
def _mysql_ok(port: int) -> bool:
    import pymysql
    try:
        pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=2).close()
        return True
    except pymysql.err.OperationalError:
        return False


@pytest.fixture
def private_mariadb():
    """A MariaDB server of this test's own (it is frozen and killed): (port, process)."""
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    if not Path(mariadbd).exists():
        pytest.fail("mariadbd is needed to freeze a real server mid-query")
    data = tempfile.mkdtemp(prefix="dbm-frozen-")
    user = ["--user=mysql"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(data, "mysql", "mysql")
    subprocess.run([shutil.which("mariadb-install-db") or "mariadb-install-db", f"--datadir={data}",
                    "--auth-root-authentication-method=normal", "--skip-test-db"] + user,
                   check=True, capture_output=True)
    port = servers.free_port()
    proc = subprocess.Popen([mariadbd, f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
                             f"--socket={data}/mysqld.sock", "--skip-log-bin"] + user,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _mysql_ok(port):
            assert proc.poll() is None and time.monotonic() < deadline, "private mariadbd did not start"
            time.sleep(0.3)
        yield port, proc
    finally:
        try:
            proc.send_signal(signal.SIGCONT)
        except ProcessLookupError:
            pass
        proc.kill()
        proc.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


def _run_bounded(fn, limit: float):
    """fn() in a thread; (result or exception, seconds). Fails (instead of hanging) past `limit`."""
    box = {}

    def run():
        t0 = time.monotonic()
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["value"] = exc
        box["seconds"] = time.monotonic() - t0
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"still waiting after {limit} s: the read has no bound"
    return box["value"], box["seconds"]


def test_a_mysql_server_that_freezes_mid_query_is_cut_off(private_mariadb, monkeypatch):
    """The server is frozen (SIGSTOP) while it runs a query for the source: the read waits
    STALL_PROBE_SECONDS, a new connection gets no greeting within connect_timeout, and the read
    fails with exit code 3 and a message naming the source and the silence."""
    from dbmigrate import netbounds
    from dbmigrate.errors import ConnectionFailed
    from dbmigrate.readers.sql import SqlSource
    from dbmigrate.uri import parse_uri
    port, proc = private_mariadb
    monkeypatch.setattr(netbounds, "STALL_PROBE_SECONDS", 2)
    src = SqlSource(parse_uri(f"mysql://root@127.0.0.1:{port}/mysql", role="source"), connect_timeout=3).open()
    try:
        threading.Timer(1.0, proc.send_signal, (signal.SIGSTOP,)).start()
        err, seconds = _run_bounded(lambda: src.query("SELECT SLEEP(20)"), limit=40)
    finally:
        proc.send_signal(signal.SIGCONT)
        src.close()
    assert isinstance(err, ConnectionFailed), err
    assert err.exit_code == 3
    assert "source server stopped answering" in str(err) and "no greeting within 3 s" in str(err), str(err)
    assert seconds < 15, seconds


def test_a_mysql_target_that_freezes_mid_write_is_cut_off(private_mariadb, monkeypatch):
    """The target freezes between two batches: the next batch's reply never comes, the retry's
    new connection gets no greeting, and the write stops with exit code 3 naming the target
    (RETRIES lowered to 2 to keep the test short)."""
    from dbmigrate import netbounds
    from dbmigrate.errors import ConnectionFailed
    from dbmigrate.writers import sql as sql_writer
    from dbmigrate.uri import parse_uri
    port, proc = private_mariadb
    monkeypatch.setattr(netbounds, "STALL_PROBE_SECONDS", 2)
    monkeypatch.setattr(sql_writer, "RETRIES", 2)
    servers.mysql_admin_exec(f"mysql://root@127.0.0.1:{port}/mysql",
                             "CREATE DATABASE frozen CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    servers.mysql_admin_exec(f"mysql://root@127.0.0.1:{port}/mysql", "CREATE TABLE frozen.t (k INT PRIMARY KEY)")
    servers.mysql_admin_exec(f"mysql://root@127.0.0.1:{port}/mysql", "CREATE USER dbm IDENTIFIED BY 's3cretpw2'")
    servers.mysql_admin_exec(f"mysql://root@127.0.0.1:{port}/mysql", "GRANT ALL ON frozen.* TO dbm")
    writer = sql_writer.SqlWriter(parse_uri(f"mysql://dbm:s3cretpw2@127.0.0.1:{port}/frozen", role="target"),
                                  connect_timeout=3)
    try:
        writer.insert_rows("t", ["k"], [(1,), (2,)])
        proc.send_signal(signal.SIGSTOP)
        err, seconds = _run_bounded(lambda: writer.insert_rows("t", ["k"], [(3,)]), limit=60)
    finally:
        proc.send_signal(signal.SIGCONT)
        writer.close()
    assert isinstance(err, ConnectionFailed) and err.exit_code == 3, err
    text = str(err)
    assert "target mysql://dbm:***@127.0.0.1" in text and "failed 2 times in a row" in text, text
    assert "s3cretpw2" not in text
    assert seconds < 20, seconds


def test_a_long_mysql_query_on_a_live_server_is_not_cut(mysql_base, monkeypatch):
    """A statement that sends nothing for several probe intervals goes on while the server
    greets new connections: only a silent server is cut off, never a slow query."""
    from dbmigrate import netbounds
    from dbmigrate.readers.sql import SqlSource
    from dbmigrate.uri import parse_uri
    monkeypatch.setattr(netbounds, "STALL_PROBE_SECONDS", 1)
    probes = []
    real = netbounds.server_greets
    monkeypatch.setattr(netbounds, "server_greets", lambda *a: probes.append(a) or real(*a))
    src = SqlSource(parse_uri(servers.mysql_database(mysql_base, "mysql"), role="source"),
                    connect_timeout=3).open()
    try:
        rows, seconds = _run_bounded(lambda: src.query("SELECT SLEEP(5), 42"), limit=60)
    finally:
        src.close()
    assert rows == ((0, 42),) or list(rows) == [(0, 42)], rows
    assert seconds >= 5 and len(probes) >= 3, (seconds, probes)


# ----------------------------------------------------------------------------- MySQL character sets
@pytest.fixture
def mysql_db_with(mysql_base):
    """make(spec) -> URI of a new empty MariaDB database created with `spec` (its character set
    and collation); dropped afterwards."""
    import uuid
    made = []

    def make(spec: str) -> str:
        name = f"dbm_cs_{uuid.uuid4().hex[:10]}"
        servers.mysql_admin_exec(mysql_base, f"CREATE DATABASE `{name}` {spec}")
        made.append(name)
        return servers.mysql_database(mysql_base, name)
    yield make
    for name in made:
        servers.drop_mysql_database(mysql_base, name)


def _mysql_tables(uri: str) -> list[str]:
    import pymysql
    from urllib.parse import urlsplit
    p = urlsplit(uri)
    conn = pymysql.connect(host=p.hostname, port=p.port or 3306, user=p.username or "root",
                           password=p.password or "", database=p.path.lstrip("/"))
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


KEYS = {"lr": "1", "LR": "2", "lr ": "3", "名前": "実験 🧪", "Ærø": "café"}  # distinct keys to MLflow


@pytest.fixture(scope="module")
def keys_source(tmp_path_factory):
    """An MLflow SQLite database whose params differ only in case, in a trailing space, and hold
    CJK, emoji and Latin-1 text (MLflow's own client wrote them)."""
    path = tmp_path_factory.mktemp("keys") / "keys.db"
    _mlflow_log(f"sqlite:///{path}", "with mlflow.start_run(run_name='名前 🧪'):\n    mlflow.log_params(%r)" % KEYS)
    return f"sqlite:///{path}"


@pytest.mark.parametrize("spec, found", [
    ("CHARACTER SET latin1", "character set latin1 and collation latin1_swedish_ci"),
    ("CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci", "collation utf8mb4_general_ci"),
    ("CHARACTER SET utf8mb3 COLLATE utf8mb3_bin", "character set utf8mb3"),
])
def test_mysql_target_charset_and_collation_are_checked_before_writing(keys_source, mysql_db_with, mysql_base,
                                                                       spec, found):
    import re
    target = mysql_db_with(spec)
    db = target.rsplit("/", 1)[1]
    for command in (["analyze"], ["migrate", "--dry-run"], ["migrate"]):
        res = run_cli(*command, "--source", keys_source, "--target", target, "--no-progress")
        out = res.stdout + res.stderr
        assert res.returncode == 4, (command, out[-3000:])
        error = next(ln for ln in res.stdout.splitlines() if ln.startswith("ERROR"))
        assert f"target database `{db}`" in error and found in error, error
        assert _mysql_tables(target) == [], command  # nothing was written
    # the fix the message gives works: run it, and the same migration succeeds with every key
    fix = re.search(rf"Run `(ALTER DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_\w*bin)`", error)
    assert fix, error
    servers.mysql_admin_exec(mysql_base, fix[1])
    res = run_cli("migrate", "--source", keys_source, "--target", target, "--no-progress")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    import pymysql
    from urllib.parse import urlsplit
    p = urlsplit(target)
    conn = pymysql.connect(host=p.hostname, port=p.port or 3306, user="root", database=db, charset="utf8mb4")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT `key`, value FROM params")
            assert dict(cur.fetchall()) == KEYS
            cur.execute("SELECT name FROM runs")
            assert cur.fetchall() == (("名前 🧪",),)
    finally:
        conn.close()


def test_mysql_target_columns_of_an_existing_schema_are_checked(mlflow_source, mysql_db_with, mysql_base):
    """A database whose default is right but whose tables were made under another default:
    the columns count, and are named."""
    src, _ = mlflow_source("sqlite", 3)
    target = mysql_db_with("CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    db = target.rsplit("/", 1)[1]
    servers.mysql_admin_exec(mysql_base, f"CREATE TABLE `{db}`.experiments (name VARCHAR(256) "
                                         "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci)")
    res = run_cli("migrate", "--source", src, "--target", target, "--no-progress")
    assert res.returncode == 4, res.stdout[-3000:] + res.stderr[-3000:]
    assert "experiments.name (utf8mb4, utf8mb4_unicode_ci)" in res.stdout
    assert _mysql_tables(target) == ["experiments"]


def _mlflow_log(uri: str, code: str) -> None:
    """Run MLflow's own client against `uri` (a subprocess: a clean MLflow state)."""
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    res = subprocess.run([sys.executable, "-c", "import mlflow, sys\nmlflow.set_tracking_uri(sys.argv[1])\n" + code,
                          servers.mlflow_uri(uri)], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.parametrize("spec, values", [
    # a latin1 source holds what latin1 can: it must arrive as the same characters, not mojibake
    ("CHARACTER SET latin1", {"name": "café crème", "note": "Ærøskøbing ½ ±"}),
    ("CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", {"name": "実験 🧪", "note": "ß ẞ Ω 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "lr": "x", "LR": "y"}),
])
def test_mysql_source_text_arrives_unchanged(mysql_db_with, tmp_path, spec, values):
    source = mysql_db_with(spec)
    _mlflow_log(source, "with mlflow.start_run(run_name=%r):\n    mlflow.log_params(%r)" % (values["name"], values))
    target = tmp_path / "copy.db"
    res = run_cli("migrate", "--source", source, "--target", f"sqlite:///{target}", "--no-progress")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    with sqlite3.connect(target) as db:
        params = dict(db.execute("SELECT key, value FROM params").fetchall())
        names = [r[0] for r in db.execute("SELECT name FROM runs").fetchall()]
    assert params == values and names == [values["name"]]


# ----------------------------------------------------------------------------- SQLite paths
@pytest.mark.parametrize("kind, code, says", [
    ("text", 4, "is not an SQLite database (it does not start with SQLite's header; its first bytes are "
                "b'name,value\\nlr,0.'), so not an MLflow database"),
    ("empty", 4, "is empty (0 bytes): not an MLflow database"),
    ("directory", 2, "is a directory, not a database file"),
    ("missing", 2, "does not exist"),
])
def test_a_sqlite_source_that_is_not_a_database_is_named(tmp_path, kind, code, says):
    path = tmp_path / "source.db"
    if kind == "text":
        path.write_text("name,value\nlr,0.1\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    for command in (["analyze"], ["migrate"]):
        res = run_cli(*command, "--source", f"sqlite:///{path}", "--target", f"sqlite:///{tmp_path / 'out.db'}",
                      "--no-progress")
        out = res.stdout + res.stderr
        assert res.returncode == code, out[-3000:]
        assert f"{path} {says}" in out, out[-3000:]
        assert "unexpected" not in out
        assert not (tmp_path / "out.db").exists()


def test_a_dry_run_into_sqlite_creates_nothing(mlflow_source, tmp_path):
    src, _ = mlflow_source("sqlite", 3)
    missing = tmp_path / "new" / "dir" / "mlflow.db"
    for command in (["analyze"], ["migrate", "--dry-run"]):
        res = run_cli(*command, "--source", src, "--target", f"sqlite:///{missing}", "--no-progress")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "Status: DRY RUN" in res.stdout
        assert list(tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))
    # an existing target is only read: same bytes, no journal files beside it (a WAL-mode file,
    # as a user may keep one, included: a read-only open makes -wal/-shm)
    for mode in ("delete", "wal"):
        existing = tmp_path / f"existing-{mode}.db"
        db = sqlite3.connect(existing)
        db.execute(f"PRAGMA journal_mode={mode}")
        db.close()
        before = existing.read_bytes()
        res = run_cli("analyze", "--source", src, "--target", f"sqlite:///{existing}", "--no-progress")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert existing.read_bytes() == before
        made = sorted(p.name for p in tmp_path.iterdir())
        assert made == sorted({f"existing-{m}.db" for m in ("delete", mode)}), made


# ----------------------------------------------------------------------------- MariaDB per-table cost
def test_a_mariadb_target_costs_no_connection_per_table(mlflow_source, sql_db, tmp_path, monkeypatch):
    """The copy into MariaDB spent ~0.2 s per table (65 tables: 13 s for a few rows) opening
    connections: two per table to reflect the target, each also building a new SSL context. The
    connections of the migrating process are counted (the schema is made in a child process)."""
    import pymysql.connections
    from dbmigrate.config import Config
    from dbmigrate.pipeline import migrate
    src, _ = mlflow_source("sqlite", 3)
    target = sql_db("mysql")
    opened = []
    real_init = pymysql.connections.Connection.__init__

    def counting_init(self, *args, **kwargs):
        import traceback
        opened.append(" < ".join(f"{f.name}:{f.lineno}" for f in reversed(traceback.extract_stack())
                                 if "/dbmigrate/" in f.filename)[:200])
        real_init(self, *args, **kwargs)
    monkeypatch.setattr(pymysql.connections.Connection, "__init__", counting_init)
    cfg = Config(source=src, target=target, progress=False, state_dir=str(tmp_path / "state")).check()
    t0 = time.monotonic()
    report = migrate(cfg)
    seconds = time.monotonic() - t0
    assert report.exit_code == 0, report.to_text()[-3000:]
    tables = len(report.tables)
    assert tables > 60
    print(f"{tables} tables, {len(opened)} MySQL connections, {seconds:.1f} s")
    from collections import Counter
    assert len(opened) <= 20, (f"{len(opened)} connections for {tables} tables, most from: "
                               f"{Counter(opened).most_common(3)}")
