"""A SQLite source in rollback-journal mode (how MLflow makes its files) is read by several worker
processes as one snapshot: the coordinator's read transaction holds SQLite's SHARED lock, so no
writer can commit until the copy ends, and each worker checks the file's change counter against
the coordinator's. A WAL-mode source, where writers commit beside readers, keeps one worker. A
SQLite target is given back the journal mode it had before the load."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from dbmigrate.errors import MigrationError
from dbmigrate.readers.sql import SqlSource
from dbmigrate.uri import parse_uri
from tests.conftest import generated_pg_source, run_cli
from tests.support import servers

METRICS = 220_000  # over engine.MIN_ROWS_FOR_WORKERS, so the parts go to worker processes


@pytest.fixture(scope="module")
def big_pg(pg_base):
    yield from generated_pg_source(pg_base, "dbm_sqlshare", metrics=METRICS, runs=400, params=2000, tags=1000,
                                   seed=31)


@pytest.fixture(scope="module")
def sqlite_file(big_pg, tmp_path_factory):
    """The generated source copied by dbmigrate into a new SQLite file (itself a test of the
    journal mode given back: MLflow's migrations make the file in rollback-journal mode)."""
    path = tmp_path_factory.mktemp("sqlshare") / "source.db"
    res = run_cli("migrate", "--source", big_pg, "--target", f"sqlite:///{path}", "--no-progress", "--verify", "none")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return path


def _journal(path) -> str:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        con.close()


def test_sqlite_target_is_given_back_its_journal_mode(sqlite_file):
    assert _journal(sqlite_file) == "delete"  # dbmigrate loads in WAL mode, then switches back
    assert not sqlite_file.with_name(sqlite_file.name + "-wal").exists()


def _migrate(src_path, pg_base, tmp_path, *extra):
    name = servers.create_pg_database(pg_base, "dbm_sqlshare_t")
    try:
        report = tmp_path / "report.json"
        res = run_cli("migrate", "--source", f"sqlite:///{src_path}", "--target", servers.pg_database(pg_base, name),
                      "--no-progress", "--verify", "full", "--workers", "2", "--report-json", str(report), *extra)
        return res, json.loads(report.read_text()) if report.exists() else {}
    finally:
        servers.drop_pg_database(pg_base, name)


def test_rollback_journal_source_is_read_by_two_workers(sqlite_file, pg_base, tmp_path):
    res, report = _migrate(sqlite_file, pg_base, tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "2 workers)" in res.stderr, res.stderr[-3000:]
    assert not any(n.startswith("one worker") for n in report["notes"]), report["notes"]
    assert report["verification"]["passed"]
    metrics = next(c for c in report["verification"]["checksums"] if c["name"] == "metrics")
    assert metrics["match"] and metrics["rows"] == METRICS, metrics
    assert next(t for t in report["tables"] if t["table"] == "metrics")["migrated"] == METRICS


def test_wal_source_is_read_by_one_worker(sqlite_file, pg_base, tmp_path):
    wal = tmp_path / "wal.db"
    shutil.copy(sqlite_file, wal)
    con = sqlite3.connect(wal)
    assert con.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    con.close()
    res, report = _migrate(wal, pg_base, tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "1 worker)" in res.stderr, res.stderr[-3000:]
    assert "one worker: a sqlite source in WAL mode has no snapshot that several connections can share" \
        in report["notes"], report["notes"]
    assert report["verification"]["passed"]


def test_the_snapshot_holds_writers_off_and_a_changed_file_is_refused(sqlite_file, tmp_path):
    path = tmp_path / "small.db"
    shutil.copy(sqlite_file, path)
    uri = parse_uri(f"sqlite:///{path}", role="source")
    coordinator = SqlSource(uri).open()
    try:
        token = coordinator.shared_snapshot
        assert token and "file change counter" in token
        # while the coordinator reads, a writer cannot commit (SQLite's SHARED lock)...
        writer = sqlite3.connect(path, timeout=0.3)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            writer.execute("UPDATE tags SET value = 'changed' WHERE rowid = 1")
            writer.commit()
        writer.rollback()
        writer.close()
        # ...so a worker opening the file meanwhile sees the same state
        worker = SqlSource(uri).open(snapshot_id=token)
        assert worker.shared_snapshot == token
        worker.close()
    finally:
        coordinator.close()
    # once the snapshot has ended, a commit changes the file: a worker holding the old token refuses it
    writer = sqlite3.connect(path)
    writer.execute("UPDATE tags SET value = 'changed' WHERE rowid = 1")
    writer.commit()
    writer.close()
    with pytest.raises(MigrationError, match="not in the state the migration's snapshot saw"):
        SqlSource(uri).open(snapshot_id=token)
