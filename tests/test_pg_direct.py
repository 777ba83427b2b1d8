"""PostgreSQL -> PostgreSQL byte for byte (dbmigrate.pgpipe), on a real server: a failure on
either side of the pipe stops both, leaves nothing written and is raised as what it is; the
servers' own checksums see a one-ulp change."""

from __future__ import annotations

import threading

import psycopg2
import pytest

from dbmigrate import pgpipe


@pytest.fixture
def two_dbs(pg_db):
    src, dst = psycopg2.connect(pg_db("dbm_pipe")), psycopg2.connect(pg_db("dbm_pipe"))
    yield src, dst
    src.close()
    dst.close()


def _threads():
    return [t for t in threading.enumerate() if t.name == "dbmigrate-copy-out"]


def _nothing_kept_both_usable(src, dst):
    """After a failed pipe: the target's table is empty, both connections answer, no reader thread is left."""
    with dst.cursor() as c:
        c.execute("SELECT count(*) FROM t")
        assert c.fetchone()[0] == 0
    with src.cursor() as c:
        c.execute("SELECT 1")
        assert c.fetchone()[0] == 1
    assert not _threads()


def test_rows_arrive_bit_for_bit(two_dbs):
    src, dst = two_dbs
    with src.cursor() as c:
        c.execute("CREATE TABLE m (k text, v double precision, n bigint)")
        c.execute("INSERT INTO m VALUES ('nan', 'NaN', 1), ('inf', 'Infinity', 2), ('-inf', '-Infinity', 3), "
                  "('-0', '-0', 4), ('tiny', 5e-324, 5), ('tab\tnew\nline\\', 0.1, -9223372036854775808), "
                  "(NULL, NULL, NULL)")
        c.execute("INSERT INTO m SELECT 'r' || i, i / 7.0, i FROM generate_series(1, 300000) i")  # > 4 chunks
    src.commit()
    with dst.cursor() as c:
        c.execute("CREATE TABLE m (k text, v double precision, n bigint)")
    dst.commit()
    seen = []
    n = pgpipe.pipe(src, "COPY (SELECT k, v, n FROM m) TO STDOUT (FORMAT binary)", dst,
                    "COPY m (k, v, n) FROM STDIN (FORMAT binary)", on_rows=seen.append)
    dst.commit()
    assert n == 300007 and sum(seen) >= n  # progress counts one message per row (+ the trailer)
    assert pgpipe.server_checksum(src, "SELECT k, v, n FROM m") == pgpipe.server_checksum(dst, "SELECT k, v, n FROM m")
    with dst.cursor() as c:
        c.execute("SELECT k, v::text, float8send(v) FROM m WHERE k NOT LIKE 'r%' ORDER BY n")
        got = c.fetchall()
    assert {r[0]: r[1] for r in got} == {"tab\tnew\nline\\": "0.1", "nan": "NaN", "inf": "Infinity",
                                         "-inf": "-Infinity", "-0": "-0", "tiny": "5e-324"}
    assert bytes(dict((r[0], r[2]) for r in got)["-0"]) == b"\x80" + b"\x00" * 7  # the sign bit kept
    # One ulp more in one value (5e-324 -> 1e-323): the servers' checksums differ.
    with dst.cursor() as c:
        c.execute("UPDATE m SET v = v + 5e-324 WHERE k = 'tiny'")
    dst.commit()
    assert pgpipe.server_checksum(src, "SELECT k, v, n FROM m") != pgpipe.server_checksum(dst, "SELECT k, v, n FROM m")


def test_source_error_mid_stream_stops_both_sides(two_dbs):
    """The source's query fails after ~200k rows were sent: the target's COPY is abandoned (no row
    kept), the error is the source's, and both connections stay usable."""
    src, dst = two_dbs
    with dst.cursor() as c:
        c.execute("CREATE TABLE t (i bigint, x bigint)")
    dst.commit()
    with pytest.raises(pgpipe.SourceFailed) as err:
        pgpipe.pipe(src, "COPY (SELECT i::bigint, (1 / (200000 - i))::bigint FROM generate_series(1, 400000) i) TO STDOUT (FORMAT binary)",
                    dst, "COPY t (i, x) FROM STDIN (FORMAT binary)")
    assert "division by zero" in str(err.value.original)
    dst.rollback()
    src.rollback()
    _nothing_kept_both_usable(src, dst)


def test_target_error_stops_the_source_side(two_dbs):
    """The target refuses a row (a CHECK constraint) while the source still has ~40 MB to send:
    the target's error comes back, the reader thread ends instead of waiting on a full queue."""
    src, dst = two_dbs
    with dst.cursor() as c:
        c.execute("CREATE TABLE t (i bigint CHECK (i < 1500), x bigint)")
    dst.commit()
    with pytest.raises(psycopg2.errors.CheckViolation):
        pgpipe.pipe(src, "COPY (SELECT i::bigint, i::bigint FROM generate_series(1, 2000000) i) TO STDOUT (FORMAT binary)",
                    dst, "COPY t (i, x) FROM STDIN (FORMAT binary)")
    dst.rollback()
    _nothing_kept_both_usable(src, dst)


def test_column_types_tell_what_can_go_byte_for_byte(two_dbs):
    src, dst = two_dbs
    with src.cursor() as c:
        c.execute("CREATE TABLE t (a bigint, b varchar(250), c double precision)")
    with dst.cursor() as c:
        c.execute("CREATE TABLE t (a bigint, b varchar(500), c double precision)")
    assert pgpipe.column_types(src, "t", ["a", "c"]) == pgpipe.column_types(dst, "t", ["a", "c"])
    assert pgpipe.column_types(src, "t", ["a", "b"]) != pgpipe.column_types(dst, "t", ["a", "b"])
    assert pgpipe.column_types(src, "t", ["a", "missing"]) is None
    assert pgpipe.column_types(src, "nosuchtable", ["a"]) is None
    assert pgpipe.same_types(src, dst, "t", ["a", "c"]) and not pgpipe.same_types(src, dst, "t", ["a", "b"])
    assert not pgpipe.same_types(src, dst, "t", ["a", "missing"])
