"""Verification of tables copied byte for byte (PostgreSQL -> PostgreSQL): the servers' checksums
of all tables are taken in one savepoint per session (issue 15); the result is the same as table by
table, a differing row is still named, and the sessions' settings end with the verification."""

from __future__ import annotations

import shutil
import subprocess

import psycopg2
import pytest

from dbmigrate.config import Config
from dbmigrate.readers.sql import SqlSource
from dbmigrate.report import Report, Verification
from dbmigrate.uri import parse_uri
from dbmigrate.verification.sql import server_verify, verify_tables


def _copy_database(src_url: str, pg_db) -> str:
    """A copy of the (MLflow) source, by pg_dump and psql (CREATE DATABASE ... TEMPLATE needs a
    source no other session uses, and the session's source is shared)."""
    if not (shutil.which("pg_dump") and shutil.which("psql")):
        pytest.skip("pg_dump/psql not installed")
    dst_url = pg_db("dbm_vs")
    dump = subprocess.run(["pg_dump", "--no-owner", "--no-acl", src_url], check=True, capture_output=True)
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", dst_url], input=dump.stdout, check=True,
                   capture_output=True)
    return dst_url


def _settings(conn) -> list:
    with conn.cursor() as c:
        c.execute("SELECT current_setting('extra_float_digits'), current_setting('TimeZone')")
        return c.fetchone()


def test_one_setting_scope_for_all_tables(pg_db, mlflow_source):
    src_url, _ids = mlflow_source("postgresql")
    dst_url = _copy_database(src_url, pg_db)
    conn = psycopg2.connect(dst_url)
    with conn, conn.cursor() as c:  # one value of one row differs
        c.execute("UPDATE metrics SET value = value + 1 WHERE ctid = (SELECT min(ctid) FROM metrics)")
        assert c.rowcount == 1
    conn.close()
    source = SqlSource(parse_uri(src_url, role="source")).open()
    try:
        schema = source.inspect()
        tables = ["experiments", "metrics", "params", "runs"]
        server = {t: [c.name for c in schema.tables[t].columns] for t in tables}
        before = _settings(source.pg_connection)
        v = verify_tables(parse_uri(dst_url, role="target"), {}, Config(verify="full"), Report("migrate", "s", "t", "sql"),
                          source=source, server=server)
        assert _settings(source.pg_connection) == before
        by = {c["table"]: c for c in v.checksums}
        assert [t for t in tables if not by[t]["match"]] == ["metrics"]
        assert v.failures and all(f.startswith("metrics") for f in v.failures), v.failures
        # the same figures as table by table (pgpipe.server_checksum in its own savepoint)
        target = SqlSource(parse_uri(dst_url, role="target")).open()
        try:
            target.inspect()
            for t in tables:
                one = Verification(level="counts")
                assert server_verify(source, target, t, server[t], one, Config(verify="counts"), None)
                assert (one.checksums[0]["source"], one.checksums[0]["target"]) == (by[t]["source"], by[t]["target"])
        finally:
            target.close()
    finally:
        source.close()
