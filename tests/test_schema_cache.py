"""dbmigrate.schema_cache against real servers: a schema replayed from the cache is the schema
MLflow's migrations build (create_schema, itself proven equal to MLflow's own initialisation in
test_sql_schema.py), on every dialect, at the installed MLflow's head and at an older revision;
and a cache entry that would not give that schema is never used.

"The same schema" is judged twice, independently: by SQLAlchemy's inspector plus the catalogs
(test_sql_schema.schema_snapshot: tables, columns with types, nullability, defaults, identity and
generation, primary keys, indexes, foreign keys, unique and check constraints, table options,
triggers, sequences, alembic_version, row counts), and by the cache's own fingerprint.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy as sa

from dbmigrate import schema_cache
from dbmigrate.sql_schema import create_schema, inspect_target, prepare_target
from tests.test_sql_schema import (MLFLOW2_HEAD, MLFLOW3_HEAD, assert_same_schema, new_db,  # noqa: F401
                                   schema_snapshot)

KINDS = ["sqlite", "postgresql", "mysql"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private, empty schema cache for the test."""
    path = tmp_path / "schema-cache"
    monkeypatch.setenv("DBMIGRATE_SCHEMA_CACHE", str(path))
    return path


def _dialect(url: str) -> str:
    return sa.engine.make_url(url).get_backend_name()


def _fingerprint(url: str) -> list:
    engine = schema_cache._engine(url)
    try:
        raw = engine.raw_connection()
        try:
            return schema_cache.fingerprint(raw.driver_connection, _dialect(url))
        finally:
            raw.close()
    finally:
        engine.dispose()


def _entries(cache) -> list:
    return sorted(cache.glob("*.json")) if cache.exists() else []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("revision", [MLFLOW3_HEAD, MLFLOW2_HEAD], ids=["3.17-head", "2.22-head"])
def test_replayed_schema_is_mlflows(new_db, cache, kind, revision):
    mlflow_url, cached_url = new_db(kind), new_db(kind)
    create_schema(mlflow_url, revision)           # MLflow's migrations; recorded into the cache
    [entry] = _entries(cache)
    assert entry.name.startswith(f"{revision}-{_dialect(mlflow_url)}-")

    assert schema_cache.replay(cached_url, revision, _dialect(cached_url)) is True
    ours, mlflows = schema_snapshot(cached_url), schema_snapshot(mlflow_url)
    assert_same_schema(ours, mlflows)
    assert ours["rows"] == mlflows["rows"] == {"alembic_version": 1}
    assert ours["revision"] == revision
    assert _fingerprint(cached_url) == _fingerprint(mlflow_url)


def _tamper(entry, change) -> None:
    doc = json.loads(entry.read_text())
    change(doc["entry"])
    text = json.dumps(doc["entry"], sort_keys=True)
    doc["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    entry.write_text(json.dumps(doc))


@pytest.mark.parametrize("kind", KINDS)
def test_an_entry_that_would_make_another_schema_is_undone_and_dropped(new_db, cache, kind):
    """A replay whose result differs from the recorded fingerprint (here: an entry whose last
    CREATE statement was removed) is undone, the entry deleted, and prepare_target builds the schema
    with MLflow's migrations instead: the target ends up exactly as MLflow makes it."""
    reference, target = new_db(kind), new_db(kind)
    create_schema(reference, MLFLOW3_HEAD)
    [entry] = _entries(cache)

    def drop_the_last_create(body):  # an index (PostgreSQL, SQLite), a trigger (MySQL)
        steps = body["steps"]
        del steps[max(i for i, s in enumerate(steps) if s[0] != "commit" and "CREATE " in s[1].upper())]
    _tamper(entry, drop_the_last_create)

    assert schema_cache.replay(target, MLFLOW3_HEAD, _dialect(target)) is False
    assert inspect_target(target).tables == set(), "the differing replay was not undone"
    assert not entry.exists()

    prepare_target(target, MLFLOW3_HEAD)          # a miss now: MLflow's migrations, recorded again
    assert_same_schema(schema_snapshot(target), schema_snapshot(reference))
    assert len(_entries(cache)) == 1


def test_a_failing_or_damaged_entry_is_a_miss(new_db, cache):
    reference, target = new_db("postgresql"), new_db("postgresql")
    create_schema(reference, MLFLOW3_HEAD)
    [entry] = _entries(cache)
    good = entry.read_text()

    # A statement the server refuses midway: PostgreSQL rolls the whole replay back.
    _tamper(entry, lambda body: body["steps"].insert(len(body["steps"]) // 2, ["bare", "CREATE TABLE (", []]))
    assert schema_cache.replay(target, MLFLOW3_HEAD, "postgresql") is False
    assert inspect_target(target).tables == set()
    assert not entry.exists()

    # A file whose checksum does not match its content is never replayed.
    entry.write_text(good.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
    assert schema_cache.replay(target, MLFLOW3_HEAD, "postgresql") is False
    assert not entry.exists()

    # Another MLflow (or migration scripts, alembic, SQLAlchemy): another key, so a miss.
    entry.write_text(good)
    tools = dict(schema_cache.tools_key())
    try:
        schema_cache._TOOLS = {**tools, "mlflow": "0.0.0"}
        assert schema_cache.replay(target, MLFLOW3_HEAD, "postgresql") is False
    finally:
        schema_cache._TOOLS = tools
    assert schema_cache.replay(target, MLFLOW3_HEAD, "postgresql") is True


def test_cache_off(new_db, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DBMIGRATE_SCHEMA_CACHE", "off")
    url = new_db("sqlite")
    create_schema(url, MLFLOW3_HEAD)
    assert not (tmp_path / "xdg").exists()
    assert schema_cache.replay(new_db("sqlite"), MLFLOW3_HEAD, "sqlite") is False
    monkeypatch.delenv("DBMIGRATE_SCHEMA_CACHE")
    assert schema_cache.cache_dir() == tmp_path / "xdg" / "dbmigrate" / "schemas"
