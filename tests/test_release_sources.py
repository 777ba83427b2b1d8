"""Sources made by each MLflow release's own client (each release in its own cached virtualenv,
tests/support/mlflow_release.py) go to MongoDB (mlflow-mongodb layout), SQLite and PostgreSQL; then
MLflow 3.17.2 (this environment) must answer the same on the source and on each target. Where the
source is older than 3.17.2, MLflow 3.17.2 reads a copy of it upgraded by `mlflow db upgrade`, and
the SQL targets (left at the source's revision by the copy) are upgraded the same way first.

And two upgrades in flight (--target-revision head into PostgreSQL), judged against `mlflow db
upgrade` run on a copy of the source: same revision, same tables, same rows, same answers."""

from __future__ import annotations

import json
import os

import pytest
import sqlalchemy as sa

from dbmigrate.mlflow_schema import RELEASE_HEAD
from tests.conftest import run_cli
from tests.support import servers
from tests.support.mlflow_api import snapshot
from tests.support.mlflow_release import MAIN_RELEASE, db_upgrade, populate_release, run_dbmigrate

# DBMIGRATE_TEST_RELEASES=2.13.1,3.2.0,... tries other releases by hand (each gets its venv).
RELEASES = [v.strip() for v in os.environ.get("DBMIGRATE_TEST_RELEASES", "").split(",") if v.strip()] \
    or ["2.9.2", "2.16.2", "3.0.1", "3.1.4", "3.4.0", "3.10.1", MAIN_RELEASE]
# Every release virtualenv this module uses: conftest starts building the missing ones in the
# background when the session begins, so the builds overlap the tests that come before this one.
VENV_RELEASES = [v for v in RELEASES if v != MAIN_RELEASE] + ["3.18.0"]
# The data's word for where each release's client leaves its database (checked against the
# databases the clients really make, below).
REVISION = dict(RELEASE_HEAD)
HEAD_3_17 = RELEASE_HEAD[MAIN_RELEASE]
assert HEAD_3_17 == "dc11669786a5" and REVISION["3.0.1"] == REVISION["3.1.4"] == "bda7b8c39065"


@pytest.fixture(scope="module")
def release_source(pg_base):
    """get(version) -> (PostgreSQL URI, ids): a database made by that release's client, once per
    module; tests only read it (copies are made with CREATE DATABASE ... TEMPLATE)."""
    made, cache = [], {}

    def get(version):
        if version not in cache:
            name = servers.create_pg_database(pg_base, "dbm_rel")
            made.append(name)
            uri = servers.pg_database(pg_base, name)
            cache[version] = (uri, populate_release(version, servers.mlflow_uri(uri)))
        return cache[version]
    yield get
    for name in made:
        servers.drop_pg_database(pg_base, name)


@pytest.fixture
def pg_copy(pg_base):
    """copy(uri) -> the URI of a new PostgreSQL database made from it as a template."""
    made = []

    def copy(uri):
        src = uri.rsplit("/", 1)[1]
        name = f"dbm_copy_{len(made)}_{src[-10:]}"
        # A template must have no other sessions: earlier tests' MLflow clients keep pooled
        # connections to the shared sources (their engines ping before reuse, so they reconnect).
        servers.pg_admin_exec(pg_base, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                       f"WHERE datname = '{src}' AND pid <> pg_backend_pid()")
        servers.pg_admin_exec(pg_base, f'CREATE DATABASE "{name}" TEMPLATE "{src}"')
        made.append(name)
        return servers.pg_database(pg_base, name)
    yield copy
    for name in made:
        servers.drop_pg_database(pg_base, name)


def _revision(uri: str) -> str:
    eng = sa.create_engine(servers.mlflow_uri(uri))
    try:
        with eng.connect() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        eng.dispose()


def _api(uri: str) -> dict:
    return json.loads(json.dumps(snapshot(servers.mlflow_uri(uri)), default=str))


def _readable_by_3_17(uri: str) -> str:
    """`mlflow db upgrade` with MLflow 3.17.2 unless the database is at its head already."""
    if _revision(uri) != HEAD_3_17:
        db_upgrade(MAIN_RELEASE, servers.mlflow_uri(uri))
    assert _revision(uri) == HEAD_3_17
    return uri


def _migrate(source, target, *extra, tmp_path):
    report = tmp_path / f"report-{abs(hash(target))}.json"
    res = run_cli("migrate", "--source", source, "--target", target, "--no-progress",
                  "--verify", "full", "--report-json", report, *extra)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    out = json.loads(report.read_text())
    assert out["status"] == "SUCCESS" and out["verification"]["passed"]
    return out


def _expected_for_mongodb(src: dict) -> dict:
    """What mlflow-mongodb shows for a SQL source (see test_e2e_postgres_to_mongo): a NaN
    logged-model metric kept as NaN rather than SQL's 0. And spans: the plugin rebuilds each one
    with Span.from_dict(content).to_dict(), which adds "links": [] where the writing client (3.10)
    stored none, while MLflow's SQL store hands the stored content back as it is. The stored
    content itself is the same (--verify full compares it); only the reading differs."""
    from tests.test_e2e_postgres_to_mongo import expected_from_source
    out = expected_from_source(src)
    for trace in out.get("traces", {}).values():
        for span in trace["spans"]:
            span.setdefault("links", [])
    return out


@pytest.mark.parametrize("version", RELEASES)
def test_release_source_to_every_target(version, release_source, pg_copy, pg_db, mongo_db, sql_db,
                                        tmp_path):
    src, ids = release_source(version)
    rev = REVISION[version]
    assert _revision(src) == rev, "the release's client left another revision than the data says"
    expected = _api(_readable_by_3_17(pg_copy(src)))
    # Guard against a vacuous pass: what every release can make is there.
    assert len(expected["experiments"]) == 4 and len(expected["runs"]) == 6
    assert expected["registered_models"] and len(expected["metric_history"]) >= 9
    tracing = tuple(map(int, version.split("."))) >= (2, 13)  # tracing arrived in 2.13
    assert bool(expected.get("traces")) == tracing

    for target in (pg_db(), sql_db("sqlite")):
        report = _migrate(src, target, tmp_path=tmp_path)
        assert report["revision"] == rev and _revision(target) == rev  # the source's schema
        assert _api(_readable_by_3_17(target)) == expected, target.split(":")[0]

    mongo = mongo_db()
    report = _migrate(src, mongo, "--layout", "mlflow-mongodb", tmp_path=tmp_path)
    assert report["revision"] == rev
    import pymongo
    marker = pymongo.MongoClient(mongo).get_default_database()["_dbmigrate_meta"].find_one(
        {"_id": "migration"})
    assert marker["source_revision"] == rev and marker["layout"] == "mlflow-mongodb"
    got = json.loads(json.dumps(snapshot(mongo), default=str))
    want = _expected_for_mongodb(expected)
    for section in want:
        assert got[section] == want[section], f"mlflow-mongodb: {section} differs"


def _plain(value):
    """A value whose repr is its content (BYTEA comes back as a memoryview)."""
    return bytes(value).hex() if isinstance(value, (memoryview, bytes, bytearray)) else value


def _tables_and_rows(uri: str) -> dict:
    """Every table's columns and rows (as text, sorted): what two databases must share."""
    eng = sa.create_engine(servers.mlflow_uri(uri))
    out = {}
    try:
        with eng.connect() as conn:
            insp = sa.inspect(conn)
            for t in sorted(insp.get_table_names()):
                cols = sorted(c["name"] for c in insp.get_columns(t))
                rows = conn.execute(sa.text(f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{t}"'))
                out[t] = (cols, sorted(repr(tuple(_plain(v) for v in r)) for r in rows))
    finally:
        eng.dispose()
    return out


@pytest.mark.parametrize("version", ["2.16.2", "3.0.1"])
def test_upgrade_in_flight_matches_mlflow_db_upgrade(version, release_source, pg_copy, pg_db,
                                                     tmp_path):
    src, _ = release_source(version)
    reference = _readable_by_3_17(pg_copy(src))  # `mlflow db upgrade` on a copy of the source
    target = pg_db()
    report = _migrate(src, target, "--target-revision", "head", tmp_path=tmp_path)
    assert report["revision"] == REVISION[version] and report["target_revision"] == HEAD_3_17
    assert _revision(target) == HEAD_3_17
    assert any("upgraded" in n and HEAD_3_17 in n for n in report["notes"])
    assert _tables_and_rows(target) == _tables_and_rows(reference)
    assert _api(target) == _api(reference)


def test_upgrade_in_flight_to_3_18_with_its_migrations(mlflow_source, pg_copy, pg_db, tmp_path):
    """dbmigrate run where MLflow 3.18.0 is installed (its own venv): a 3.17.2 source with every
    table filled goes to head = 3.18.0's f4a9b2c7d1e6, through 3.18's data migrations (the
    issue_categories backfill from issues, the MCP version keys); the result equals `mlflow db
    upgrade` of 3.18.0 on a copy of the source, table by table and row by row."""
    src, _ = mlflow_source("postgresql", 3)
    reference = pg_copy(src)
    db_upgrade("3.18.0", servers.mlflow_uri(reference))
    target = pg_db()
    report_path = tmp_path / "report-3.18.json"
    res = run_dbmigrate("3.18.0", "migrate", "--source", src, "--target", target, "--no-progress",
                        "--verify", "full", "--target-revision", "head", "--report-json", str(report_path))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["revision"] == HEAD_3_17 and report["target_revision"] == RELEASE_HEAD["3.18.0"]
    ours, theirs = _tables_and_rows(target), _tables_and_rows(reference)
    assert theirs["issue_categories"][1] and len(theirs) == 71  # 70 tables + alembic_version
    assert ours == theirs


def test_upgrade_in_flight_into_mariadb(release_source, pg_copy, sql_db, tmp_path):
    """MariaDB runs MLflow's migrations without transactional DDL, on other code paths: the
    upgraded target answers as `mlflow db upgrade` on a (PostgreSQL) copy of the source does."""
    src, _ = release_source("2.16.2")
    reference = _readable_by_3_17(pg_copy(src))
    target = sql_db("mysql")
    report = _migrate(src, target, "--target-revision", HEAD_3_17, tmp_path=tmp_path)
    assert report["target_revision"] == HEAD_3_17 and _revision(target) == HEAD_3_17
    assert _api(target) == _api(reference)


def test_target_revision_refusals(release_source, pg_db, mongo_db):
    src, _ = release_source("3.0.1")
    target = pg_db()
    res = run_cli("migrate", "--source", src, "--target", target, "--target-revision", "4465047574b1")
    assert res.returncode == 4
    assert ("the target cannot end at MLflow 2.15.0 \u2013 2.16.2 (alembic revision 4465047574b1), "
            "which is not an upgrade of the source's MLflow 3.0.1, 3.1.1 \u2013 3.1.4 (alembic "
            "revision bda7b8c39065)") in res.stdout + res.stderr
    res = run_cli("migrate", "--source", src, "--target", target, "--target-revision", "0123abcd")
    assert res.returncode == 4 and "Unknown alembic revision '0123abcd'" in res.stdout + res.stderr
    assert not sa.inspect(sa.create_engine(servers.mlflow_uri(target))).get_table_names()  # nothing written
    res = run_cli("migrate", "--source", src, "--target", mongo_db(), "--target-revision", "head")
    assert res.returncode == 2 and "--target-revision applies to SQL targets" in res.stderr
