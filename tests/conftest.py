"""Shared fixtures: real servers (see tests/support/servers.py), databases made and dropped per
test, and MLflow-made source databases shared by the tests that only read them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support import servers

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long trials (many kills, big data); not run in CI")


_PREBUILD: list = []


def pytest_collection_finish(session):
    """Start building the MLflow release virtualenvs the collected tests will need, in one
    background process, so that their pip installs overlap the tests that run first (the tests
    wait on each venv's file lock, or build it themselves if this process failed)."""
    mods = {item.module for item in session.items if item.module.__name__.endswith("test_release_sources")}
    if not mods:
        return
    from tests.support.mlflow_release import _ready
    todo = [v for v in mods.pop().VENV_RELEASES if not _ready(v)]
    if todo:
        _PREBUILD.append(subprocess.Popen([sys.executable, "-m", "tests.support.mlflow_release", *todo], cwd=ROOT,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def pytest_sessionfinish(session, exitstatus):
    for proc in _PREBUILD:  # a session that ended early: a half-built venv is rebuilt next time
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


# ----------------------------------------------------------------------------- servers
@pytest.fixture(scope="session")
def pg_base() -> str:
    return servers.postgres_base_uri()


@pytest.fixture(scope="session")
def mongo_server():
    base, server = servers.mongo_base_uri()
    yield base, server
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def mongo_base(mongo_server) -> str:
    return mongo_server[0]


@pytest.fixture(scope="session")
def mysql_base() -> str:
    return servers.mysql_base_uri()


@pytest.fixture
def pg_db(pg_base):
    """A fresh, empty PostgreSQL database; its URI. Dropped afterwards."""
    names = []

    def make(prefix="dbm"):
        name = servers.create_pg_database(pg_base, prefix)
        names.append(name)
        return servers.pg_database(pg_base, name)
    yield make
    for n in names:
        servers.drop_pg_database(pg_base, n)


@pytest.fixture
def mongo_db(mongo_base):
    """A MongoDB URI naming a fresh database; dropped afterwards."""
    import pymongo
    names = []

    def make(prefix="dbm"):
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        names.append(name)
        return servers.with_database(mongo_base, name)
    yield make
    client = pymongo.MongoClient(mongo_base)
    for n in names:
        client.drop_database(n)
    client.close()


# ----------------------------------------------------------------------------- MLflow sources
def _populate(uri: str, **kw) -> dict:
    """Run the MLflow client in a subprocess so each source gets a clean MLflow state."""
    import json
    code = ("import json,sys; from tests.support.make_source import populate; "
            f"print('IDS=' + json.dumps(populate(sys.argv[1], **{kw!r})))")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MLFLOW_") or k == "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"}
    res = subprocess.run([sys.executable, "-c", code, servers.mlflow_uri(uri)], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"making the MLflow source failed:\n{res.stderr[-4000:]}")
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("IDS="))
    return json.loads(line[4:])


@pytest.fixture(scope="session")
def pg_source(pg_base):
    """A PostgreSQL database made by MLflow 3.17.2's client (see tests/support/make_source.py).
    Shared: tests only read it."""
    name = servers.create_pg_database(pg_base, "dbm_src")
    uri = servers.pg_database(pg_base, name)
    ids = _populate(uri)
    yield uri, ids
    servers.drop_pg_database(pg_base, name)


@pytest.fixture
def sql_db(pg_base, mysql_base, tmp_path):
    """make(engine) -> the URI of a fresh empty database on postgresql | mysql | sqlite."""
    made = []

    def make(engine: str, prefix: str = "dbm") -> str:
        if engine == "postgresql":
            name = servers.create_pg_database(pg_base, prefix)
            made.append(("postgresql", name))
            return servers.pg_database(pg_base, name)
        if engine == "mysql":
            name = servers.create_mysql_database(mysql_base, prefix)
            made.append(("mysql", name))
            return servers.mysql_database(mysql_base, name)
        path = tmp_path / f"{prefix}_{uuid.uuid4().hex[:8]}.db"
        return f"sqlite:///{path}"
    yield make
    for engine, name in made:
        (servers.drop_pg_database(pg_base, name) if engine == "postgresql"
         else servers.drop_mysql_database(mysql_base, name))


@pytest.fixture(scope="session")
def mlflow_source(pg_base, mysql_base, tmp_path_factory):
    """get(engine, major) -> (uri, ids): a database made by MLflow 3.17.2 (major 3) or 2.22.5
    (major 2) on postgresql | mysql | sqlite, every table MLflow's client left empty then given
    rows by tests/support/fill_all_tables.py. Made once per session; tests only read them."""
    cache, made = {}, []

    def get(engine: str, major: int = 3):
        if (engine, major) in cache:
            return cache[(engine, major)]
        prefix = f"dbm_src{major}"
        if engine == "postgresql":
            name = servers.create_pg_database(pg_base, prefix)
            made.append(("postgresql", name))
            uri = servers.pg_database(pg_base, name)
        elif engine == "mysql":
            name = servers.create_mysql_database(mysql_base, prefix)
            made.append(("mysql", name))
            uri = servers.mysql_database(mysql_base, name)
        else:
            uri = f"sqlite:///{tmp_path_factory.mktemp('src') / f'{prefix}.db'}"
        if major == 3:
            ids = _populate(uri)
        else:
            from tests.support.mlflow2 import populate_mlflow2
            ids = populate_mlflow2(servers.mlflow_uri(uri))
        from tests.support.fill_all_tables import fill
        ids["filled"] = fill(servers.mlflow_uri(uri))
        cache[(engine, major)] = (uri, ids)
        return cache[(engine, major)]
    yield get
    for engine, name in made:
        (servers.drop_pg_database(pg_base, name) if engine == "postgresql"
         else servers.drop_mysql_database(mysql_base, name))


def generated_pg_source(pg_base: str, prefix: str, *, metrics: int, runs: int, params: int, tags: int,
                        seed: int):
    """Yield the URI of a seeded MLflow-shaped PostgreSQL database made by benchmarks/generate.py
    (big enough to be cut into parts), dropped afterwards: the body of a module fixture."""
    name = f"{prefix}_{os.urandom(4).hex()}"
    res = subprocess.run([sys.executable, "-m", "benchmarks.generate", "--pg-uri", pg_base, "--database", name,
                          "--metrics", str(metrics), "--runs", str(runs), "--params", str(params),
                          "--tags", str(tags), "--seed", str(seed)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    yield servers.pg_database(pg_base, name)
    servers.drop_pg_database(pg_base, name)


_STATE_DIR = os.path.join(__import__("tempfile").mkdtemp(prefix="dbm-state-"), "state")


def run_cli(*args, env=None, input=None, timeout=600, script="dbmigrate") -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess; returns the completed process."""
    e = dict(os.environ)
    e.pop("DBMIGRATE_SOURCE_URI", None)
    e.pop("DBMIGRATE_TARGET_URI", None)
    e.setdefault("DBMIGRATE_STATE_DIR", _STATE_DIR)
    e.update(env or {})
    cmd = [sys.executable, str(ROOT / "run_migration.py")] if script == "run_migration" else \
        [sys.executable, "-m", "dbmigrate.cli"]
    return subprocess.run(cmd + [str(a) for a in args], cwd=ROOT, env=e, capture_output=True,
                          text=True, input=input, timeout=timeout)
