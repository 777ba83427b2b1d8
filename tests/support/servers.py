"""Real database servers for the tests and the demo.

Each server comes from an environment variable first (DBMIGRATE_TEST_PG_URI,
DBMIGRATE_TEST_MYSQL_URI, DBMIGRATE_TEST_MONGODB_URI), else the machine's local service, else one
started here as a separate process: a private PostgreSQL cluster (pg_ctl, as the postgres user when
run as root), a private MariaDB (mariadbd), a SecantusDB MongoDB-wire server (secantusd-py; GPL,
test/demo only, never imported by the package).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_MYSQL = "mysql://root@127.0.0.1:3306/mysql"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, what: str, timeout: float = 60.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - server still starting
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s: {last}")


# ----------------------------------------------------------------------------- MongoDB wire
class SecantusServer:
    """A SecantusDB server in its own process, on its own port and storage directory."""

    def __init__(self, port: int | None = None, storage: str | None = None, test_commands: bool = False):
        self.test_commands = test_commands  # configureFailPoint, for fault injection
        self.port = port or free_port()
        self.storage = storage or tempfile.mkdtemp(prefix="dbm-secantus-")
        self.proc: subprocess.Popen | None = None
        exe = Path(sys.executable).parent / "secantusd-py"
        self.exe = str(exe) if exe.exists() else (shutil.which("secantusd-py") or "secantusd-py")

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> "SecantusServer":
        log = open(Path(self.storage).with_suffix(".log"), "ab")
        self.proc = subprocess.Popen(
            [self.exe, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path",
             self.storage, "--log-level", "WARNING", "--oplog-max-entries", "1000"]
            + (["--enable-test-commands"] if self.test_commands else []),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        import pymongo

        def ping():
            if self.proc.poll() is not None:
                raise RuntimeError(f"secantusd-py exited with {self.proc.returncode}")
            c = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=500)
            try:
                return c.admin.command("ping")["ok"] == 1
            finally:
                c.close()
        _wait(ping, f"SecantusDB on port {self.port}")
        atexit.register(self.stop)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def mongo_base_uri() -> tuple[str, SecantusServer | None]:
    env = os.environ.get("DBMIGRATE_TEST_MONGODB_URI")
    if env:
        return env.rstrip("/"), None
    server = SecantusServer().start()
    return server.uri, server


def with_database(base: str, name: str) -> str:
    """mongodb://host:port[/anything][?opts] -> mongodb://host:port/name[?opts]."""
    head, _, query = base.partition("?")
    scheme, _, rest = head.partition("://")
    hostpart = rest.split("/", 1)[0]
    return f"{scheme}://{hostpart}/{name}" + (f"?{query}" if query else "")


# ----------------------------------------------------------------------------- PostgreSQL
def _pg_ok(uri: str) -> bool:
    import psycopg2
    try:
        psycopg2.connect(uri.replace("postgresql+psycopg2://", "postgresql://"), connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def postgres_base_uri() -> str:
    env = os.environ.get("DBMIGRATE_TEST_PG_URI")
    if env:
        return env
    if _pg_ok(LOCAL_PG):
        return LOCAL_PG
    return _start_private_postgres()


def _start_private_postgres() -> str:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bins:
        raise RuntimeError("No PostgreSQL server reachable and no PostgreSQL binaries to start one")
    bindir = bins[-1]
    port = free_port()
    data = tempfile.mkdtemp(prefix="dbm-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_user + [str(bindir / "initdb"), "-D", data, "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", data, "-l", f"{data}/log", "-o",
                              f"-p {port} -k /tmp -c listen_addresses=127.0.0.1", "start", "-w"],
                   check=True, capture_output=True)
    atexit.register(lambda: subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", data, "stop",
                                                      "-m", "fast"], capture_output=True))
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def pg_admin_exec(base: str, sql: str) -> None:
    import psycopg2
    conn = psycopg2.connect(base.replace("postgresql+psycopg2://", "postgresql://"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def pg_database(base: str, name: str) -> str:
    head, _, query = base.partition("?")
    return head.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


def create_pg_database(base: str, prefix: str = "dbm") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    pg_admin_exec(base, f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(base: str, name: str) -> None:
    pg_admin_exec(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ----------------------------------------------------------------------------- MariaDB / MySQL
def _mysql_ok(uri: str) -> bool:
    import pymysql
    from urllib.parse import urlsplit
    p = urlsplit(uri)
    try:
        pymysql.connect(host=p.hostname, port=p.port or 3306, user=p.username or "root",
                        password=p.password or "", connect_timeout=3).close()
        return True
    except pymysql.err.OperationalError:
        return False


def mysql_base_uri() -> str:
    env = os.environ.get("DBMIGRATE_TEST_MYSQL_URI")
    if env:
        return env
    if _mysql_ok(LOCAL_MYSQL):
        return LOCAL_MYSQL
    return _start_private_mariadb()


def _start_private_mariadb() -> str:
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    if not Path(mariadbd).exists():
        raise RuntimeError("No MariaDB/MySQL server reachable and no mariadbd to start one")
    port = free_port()
    data = tempfile.mkdtemp(prefix="dbm-mariadb-")
    install = shutil.which("mariadb-install-db") or "mariadb-install-db"
    user = ["--user=mysql"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(data, "mysql", "mysql")
    subprocess.run([install, f"--datadir={data}", "--auth-root-authentication-method=normal",
                    "--skip-test-db"] + user, check=True, capture_output=True)
    proc = subprocess.Popen([mariadbd, f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
                             f"--socket={data}/mysqld.sock", "--skip-grant-tables=0"] + user,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    atexit.register(proc.terminate)
    uri = f"mysql://root@127.0.0.1:{port}/mysql"
    _wait(lambda: _mysql_ok(uri), f"MariaDB on port {port}")
    return uri


def mysql_admin_exec(base: str, sql: str) -> None:
    import pymysql
    from urllib.parse import urlsplit
    p = urlsplit(base)
    conn = pymysql.connect(host=p.hostname, port=p.port or 3306, user=p.username or "root",
                           password=p.password or "", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def mysql_database(base: str, name: str) -> str:
    head, _, query = base.partition("?")
    return head.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


def create_mysql_database(base: str, prefix: str = "dbm") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    mysql_admin_exec(base, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    return name


def drop_mysql_database(base: str, name: str) -> None:
    mysql_admin_exec(base, f"DROP DATABASE IF EXISTS `{name}`")


def mlflow_uri(uri: str) -> str:
    """The URI as MLflow's SQLAlchemy needs it with the drivers installed here (SQLAlchemy 2.1
    maps a bare postgresql:// to psycopg 3, which is not installed)."""
    if uri.startswith("postgresql://"):
        return "postgresql+psycopg2://" + uri[len("postgresql://"):]
    if uri.startswith("mysql://"):
        return "mysql+pymysql://" + uri[len("mysql://"):]
    return uri
