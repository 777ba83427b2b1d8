"""The MySQL/MariaDB writer's bulk path (LOAD DATA LOCAL INFILE from memory) against the real
MariaDB: the nastiest values come back exactly, the batches really went by LOAD DATA (the server's
own Com_load counter says so), whatever the server would have changed silently (LOCAL turns errors
into warnings) goes by INSERT and is refused there by name, and a server asking for a local file
gets nothing."""

from __future__ import annotations

import pymysql
import pytest
import sqlalchemy as sa

from dbmigrate.errors import DataError
from dbmigrate.uri import parse_uri
from dbmigrate.writers.sql import SqlWriter, _mysql_infile
from tests.support import servers

NASTY = [
    "", "\\N", "\\\\N", "N", "NULL", "\\", "\\\\", "a\\tb", "tab\there", "new\nline", "cr\rlf\r\n",
    "\t", "\n", "\t\n\\N\t", "nul\x00byte", "\x00", "\x1a(ctrl-Z)", "é ü ß", "日本語のテキスト",
    "emoji 🚀🧪 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "'quotes' \"double\" `back`", "trailing space ", " ", "x" * 6000,
    "🚀" * 1500, "\\0", "\\n (escaped n as text)", "line\\\nbreak", ",;|", "\ufeffBOM",
]


@pytest.fixture
def target(sql_db):
    uri = sql_db("mysql", "dbm_bulk")
    engine = sa.create_engine(servers.mlflow_uri(uri), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        if not int(conn.exec_driver_sql("SELECT @@local_infile").scalar()):  # MySQL 8's default
            conn.exec_driver_sql("SET GLOBAL local_infile = ON")
        conn.exec_driver_sql(
            "CREATE TABLE nasty (id INT PRIMARY KEY, s VARCHAR(6000), t LONGTEXT, b LONGBLOB, "
            "vb VARBINARY(64), d DOUBLE, n BIGINT, f TINYINT(1), dec_ DECIMAL(20, 6), dt DATETIME(6), "
            "req VARCHAR(5) NOT NULL)")
    engine.dispose()
    return uri


def _writer(uri):
    return SqlWriter(parse_uri(uri, role="target"))


def _read(uri, sql):
    u = sa.engine.make_url(servers.mlflow_uri(uri))
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "",
                           database=u.database, charset="utf8mb4")
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def _loads(writer) -> int:
    cur = writer.connect().cursor()
    cur.execute("SHOW SESSION STATUS LIKE 'Com_load'")
    n = int(cur.fetchone()[1])
    cur.close()
    return n


COLUMNS = ["id", "s", "t", "b", "vb", "d", "n", "f", "dec_", "dt", "req"]


def test_nastiest_values_round_trip_through_load_data(target):
    binaries = [b"", b"\x00", b"\\N", b"\t\n\r\\", bytes(range(256)), b"\xff\xfe\x00\x01"]
    doubles = [0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308,
               0.1, 1 / 3, -123456.789e-200, 1e16, 123456789012345678.0]
    rows = []
    for i, text in enumerate(NASTY):
        rows.append((i, text, text, binaries[i % len(binaries)] if i % 7 else None,
                     binaries[i % len(binaries)][:64] if i % 5 else None,
                     doubles[i % len(doubles)] if i % 11 else None,
                     [0, -1, 2**63 - 1, -2**63, 42][i % 5], [True, False, None][i % 3],
                     [1.5, 0.000001, -99999999999999.5, None][i % 4],
                     ["2024-02-29T23:59:59.999999", "1970-01-01T00:00:00", None][i % 3], "ok"))
    rows.append((len(rows), None, None, None, None, None, None, None, None, None, ""))  # NULL vs ''
    writer = _writer(target)
    try:
        writer.connect()
        before = _loads(writer)
        for k in range(0, len(rows), 8):  # several batches
            writer.insert_rows("nasty", COLUMNS, rows[k:k + 8], key_columns=["id"])
        assert _loads(writer) - before == (len(rows) + 7) // 8, "the batches did not go by LOAD DATA"
        assert writer.stats["nasty"].loaded == writer.stats["nasty"].batches
    finally:
        writer.close()

    got = _read(target, f"SELECT {', '.join(COLUMNS)} FROM nasty ORDER BY id")
    assert len(got) == len(rows)
    for want, have in zip(rows, got):
        i = want[0]
        assert have[1] == want[1] and have[2] == want[2], f"row {i}: text {want[1]!r} came back {have[1]!r}"
        assert (None if have[3] is None else bytes(have[3])) == want[3], f"row {i}: blob"
        assert (None if have[4] is None else bytes(have[4])) == want[4], f"row {i}: varbinary"
        assert have[5] == want[5] and (have[5] is None or repr(have[5]) == repr(want[5])), f"row {i}: double"
        assert have[6] == want[6] and have[7] == (None if want[7] is None else int(want[7])), f"row {i}: ints"
        assert (None if have[8] is None else float(have[8])) == want[8], f"row {i}: decimal"
        assert (None if have[9] is None else have[9].isoformat()) == want[9], f"row {i}: datetime"
        assert have[10] == want[10]
    # NULL and '' stay apart; the text "\N" is text.
    assert _read(target, "SELECT COUNT(*) FROM nasty WHERE s IS NULL")[0][0] == 1
    assert _read(target, "SELECT COUNT(*) FROM nasty WHERE LENGTH(s) = 0")[0][0] == 1  # not ' ': PAD SPACE
    assert _read(target, "SELECT id FROM nasty WHERE s = '\\\\N'")[0][0] == NASTY.index("\\N")


@pytest.mark.parametrize("bad, why", [
    ((1, "x" * 6001), "6001 characters"),                      # too long: LOAD DATA LOCAL truncates
    ((1, "ok", "dup"), "Duplicate"),                             # duplicate key: LOCAL skips the row
])
def test_what_load_data_would_change_goes_by_insert_and_is_refused(target, bad, why):
    writer = _writer(target)
    try:
        writer.insert_rows("nasty", ["id", "s", "req"], [(1, "first", "a")], key_columns=["id"])
        loads = _loads(writer)
        if len(bad) == 2:  # the writer's own check refuses it before any load (write() path)
            with pytest.raises(DataError, match=why):
                writer.write("nasty", ["id", "s"], [bad])
            # and the raw batch path: LOAD DATA warns (truncation), the batch goes by INSERT,
            # which the server refuses in strict mode.
            with pytest.raises(DataError):
                writer.insert_rows("nasty", ["id", "s", "req"], [(2, bad[1], "b")], key_columns=["id"])
        else:
            with pytest.raises(DataError, match=why):
                writer.insert_rows("nasty", ["id", "s", "req"], [(3, "new", "c"), bad], key_columns=["id"])
        assert _loads(writer) > loads, "LOAD DATA was not tried first"
    finally:
        writer.close()
    # Nothing of the refused batches is left.
    assert _read(target, "SELECT id, s, req FROM nasty ORDER BY id") == ((1, "first", "a"),)


def test_not_null_and_empty_string(target):
    """'' into a NOT NULL column is a value, NULL is refused by name before any load."""
    writer = _writer(target)
    try:
        writer.insert_rows("nasty", ["id", "req"], [(1, "")], key_columns=["id"])
        with pytest.raises(DataError, match="NULL in a column that is NOT NULL"):
            writer.insert_rows("nasty", ["id", "req"], [(2, None)], key_columns=["id"])
    finally:
        writer.close()
    assert _read(target, "SELECT id, req FROM nasty") == ((1, ""),)


def test_the_server_gets_no_local_file_but_the_batch(target, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("1\tsecret\tx\n")
    writer = _writer(target)
    try:
        cur = writer.connect().cursor()
        with pytest.raises(pymysql.err.OperationalError, match="dbmigrate sends none"):
            cur.execute(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE nasty (id, s, req)")
        writer._reset()
    finally:
        writer.close()
    assert _read(target, "SELECT COUNT(*) FROM nasty")[0][0] == 0


def test_encoder_escapes():
    data, hexed = _mysql_infile([(1, "a\tb\nc\\d\re\x00", None, "", "\\N", b"\x00\xff", 1.5, True)], 8)
    assert hexed == {5}
    assert data == b"1\ta\\tb\\nc\\\\d\\re\\0\t\\N\t\t\\\\N\t00ff\t1.5\t1\n"
    # Without bytes (the common batch) the same text comes from the one-lookup-per-value loop.
    data, hexed = _mysql_infile([(1, "a\tb\nc\\d\re\x00", None, "", "\\N", 1.5, True, -7)], 8)
    assert hexed == set()
    assert data == b"1\ta\\tb\\nc\\\\d\\re\\0\t\\N\t\t\\\\N\t1.5\t1\t-7\n"
    # A column mixing bytes and text, or a type it does not write: not by LOAD DATA.
    assert _mysql_infile([(b"x",), ("x",)], 1) is None
    assert _mysql_infile([(object(),)], 1) is None
    assert _mysql_infile([("\ud800",)], 1) is None  # a lone surrogate
