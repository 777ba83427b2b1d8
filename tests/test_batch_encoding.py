"""The batch path's column-at-a-time work gives exactly what the per-row work gave: the checksum
(batch_checksum against checksum.Checksum.add), and PostgreSQL's binary COPY (pgpipe.binary_rows)
stores every value as the text COPY did, or hands the batch back to the text path."""

from __future__ import annotations

import math
import random
import struct

import psycopg2
import pytest

from dbmigrate import pgpipe
from dbmigrate.batch_checksum import add_rows
from dbmigrate.checksum import Checksum

VALUES = [None, True, False, 0, 1, -1, 2**63 - 1, -2**63, 2**70, 0.0, -0.0, float("nan"), -float("nan"),
          float("inf"), -float("inf"), 5e-324, 1.5, "", "a", "\ud800x", "é漢😀", "x" * 5000, b"", b"\x00\xff",
          bytearray(b"ab"), memoryview(b"cd"), "1", 1.0]


def _value(kind: str, rng: random.Random):
    if kind == "str":
        return rng.choice(["", "abc", "\ud800", "é漢😀", "y" * rng.randint(0, 6000), None])
    if kind == "float":
        return rng.choice([rng.random(), -0.0, 0.0, float("inf"), float("nan"), 1e300, rng.random()])
    if kind == "int":
        return rng.randint(-2**63, 2**63)
    if kind == "bool":
        return rng.random() < .5
    return rng.choice(VALUES)


def test_column_checksum_is_the_row_checksum():
    rng = random.Random(7)
    for _ in range(300):
        kinds = [rng.choice(["str", "float", "int", "bool", "mixed"]) for _ in range(rng.randint(1, 6))]
        rows = [tuple(_value(k, rng) for k in kinds) for _ in range(rng.randint(0, 40))]
        order = list(range(len(kinds)))
        rng.shuffle(order)
        want, got = Checksum(), Checksum()
        for r in rows:
            want.add(tuple(r[i] for i in order))
        add_rows(got, rows, order)
        assert (got.count, got.total) == (want.count, want.total), kinds


def _binary(kinds, rows):
    cols = list(zip(*rows))
    return pgpipe.binary_rows(kinds, cols, [set(map(type, c)) for c in cols])


def test_binary_rows_fall_back_to_text_for_what_they_do_not_encode():
    assert pgpipe.copy_kinds(["VARCHAR", "DATE"]) is None
    assert _binary(["float8"], [(1,)]) is None            # an int in a double column
    assert _binary(["int8"], [(True,)]) is None           # a bool in a bigint column
    assert _binary(["int8"], [(2**63,)]) is None          # out of range
    assert _binary(["int4"], [(2**31,)]) is None
    assert _binary(["text"], [("a\ud800",)]) is None      # not UTF-8
    assert _binary(["bytea"], [(bytearray(b"x"),)]) is None
    data = _binary(["float8", "text"], [(float("nan"), None)])
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
    assert struct.pack(">d", float("nan")) in data


def test_binary_copy_stores_what_text_copy_stores(pg_base):
    from dbmigrate.ends.sql import Batch
    from dbmigrate.writers.sql import SqlWriter
    from dbmigrate.uri import parse_uri
    from tests.support import servers
    name = servers.create_pg_database(pg_base, "dbm_bincopy")
    uri = servers.pg_database(pg_base, name)
    try:
        conn = psycopg2.connect(uri)
        with conn, conn.cursor() as cur:
            for t in ("bin", "txt"):
                cur.execute(f"CREATE TABLE {t} (id integer PRIMARY KEY, a text, b double precision, c bigint, "
                            "d integer, e smallint, f boolean, g bytea, h json, i varchar(5))")
        cols = ["id", "a", "b", "c", "d", "e", "f", "g", "h", "i"]
        odd_nan = struct.unpack(">d", b"\xff\xf8\x00\x00\x00\x00\x00\x01")[0]
        rows = [(1, "plain", 1.5, 2**63 - 1, 2**31 - 1, 2**15 - 1, True, b"\x00\xff", '{"a": 1}', "abcde"),
                (2, "tab\there\nnl\\bs\r", -0.0, -2**63, -2**31, -2**15, False, b"", "[]", ""),
                (3, "漢😀é", float("nan"), 0, 0, 0, None, None, None, None),
                (4, "", float("inf"), None, None, None, True, b"x", "null", "x"),
                (5, None, -float("inf"), 5, 5, 5, False, b"y", '"s"', "\\N"),
                (6, "\\N", 5e-324, 1, 1, 1, True, b"z", "1", "z"),
                (7, "x", odd_nan, 1, 1, 1, True, b"z", "1", "z"),
                (8, "x", None, 1, 1, 1, True, b"z", "1", "z")]
        w = SqlWriter(parse_uri(uri, role="target"))
        try:
            assert w.encode_copy("bin", cols, rows) is None  # before the first connection: text
            w.ping()
            batch = Batch(rows, cols, ["id"], list(zip(*rows)), [set(map(type, c)) for c in zip(*rows)])
            assert w.encode_copy("bin", cols, batch)  # this batch goes in binary
            w.insert_rows("bin", cols, batch, key_columns=["id"])
            batch.encoded = b""  # the text path
            w.insert_rows("txt", cols, batch, key_columns=["id"])
            for bad in [(20, "a\x00b", 1.0, 1, 1, 1, True, None, None, None),
                        (21, "a", 1.0, 1, 1, 1, True, None, None, "toolong"),
                        (22, "a", 1.0, 1, 1, 1, True, None, "{bad json", None)]:
                for t in ("bin", "txt"):
                    b = Batch([bad], cols, ["id"], list(zip(bad)), [{type(v)} for v in bad])
                    if t == "txt":
                        b.encoded = b""
                    with pytest.raises(Exception):
                        w.insert_rows(t, cols, b, key_columns=["id"])
        finally:
            w.close()
        with conn, conn.cursor() as cur:
            got = {}
            for t in ("bin", "txt"):
                cur.execute(f"SELECT id, a, float8send(b), c, d, e, f, g, h::text, i FROM {t} ORDER BY id")
                got[t] = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cur.fetchall()]
        conn.close()
        assert got["bin"] == got["txt"] and len(got["bin"]) == len(rows)
        assert got["bin"][1][2] == struct.pack(">d", -0.0)
        assert all(math.isnan(struct.unpack(">d", got["bin"][i][2])[0]) for i in (2, 6))
    finally:
        servers.drop_pg_database(pg_base, name)
