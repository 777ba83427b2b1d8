"""Tiny tables with the edge values every reader and writer must carry exactly (the seed of a
conformance suite): NaN, +-inf, -0.0, +-5e-324, max double, int64 extremes, NULL vs '', 6000-character
text with 4-byte UTF-8, bytes (empty, NUL, every byte value), bools, JSON/date/datetime text,
a composite key, an empty table; and exact comparisons (type and float bits) that ignore row order."""

from __future__ import annotations

import math
import struct
from collections import Counter

from dbmigrate.checksum import Checksum
from dbmigrate.model import Column, Table

NAN, INF = float("nan"), float("inf")
LONG = "x値🙂" * 2000                                # 6000 characters, 4-byte UTF-8 among them
FLOATS = [NAN, INF, -INF, -0.0, 0.0, 5e-324, -5e-324, 1.7976931348623157e308, 0.1, None]

SCHEMA = {
    "metrics": Table("metrics", [Column("run_uuid", "str", False), Column("key", "str", False),
                                 Column("step", "int", False), Column("value", "float", True),
                                 Column("is_nan", "bool", False), Column("timestamp", "int", False)],
                     ["run_uuid", "key", "step"]),
    "texts": Table("texts", [Column("id", "int", False), Column("s", "str", True), Column("b", "bytes", True),
                             Column("j", "json", True), Column("d", "date", True),
                             Column("t", "datetime", True), Column("n", "decimal", True)], ["id"]),
    "empty": Table("empty", [Column("id", "int", False), Column("v", "float", True)], ["id"]),
}
ROWS = {
    "metrics": [(f"run{i % 3}", "loss", i, v, isinstance(v, float) and math.isnan(v), 1_700_000_000_000 + i)
                for i, v in enumerate(FLOATS * 3)]
    + [("run0", "k", -(2**63), 1.0, False, 2**63 - 1), ("", "", 0, -0.0, True, 0)],
    "texts": [(1, "", b"", "{}", "2026-11-29", "2026-11-29T12:00:00.123456", 1.5),
              (2, None, None, None, None, None, None),
              (3, LONG, b"\x00\xff" * 3000, '{"a": [1, 2.5, "\\u00e9"]}', "1970-01-01",
               "2026-11-29T12:00:00+00:00", 0.0),
              (4, "𝄞 値 🙂 \u0000 nul", bytes(range(256)), "null", None, None, -0.0),
              (5, "1", b"1", "1", None, None, 1e-300)],
    "empty": [],
}


def token(v):
    """A value's exact identity: its type and, for floats, its bits."""
    return (type(v).__name__, struct.pack(">d", v) if isinstance(v, float) else v)


def rows_tokens(rows):
    return Counter(tuple(token(v) for v in r) for r in rows)


def checksum_of(rows, columns):
    order = sorted(range(len(columns)), key=lambda i: columns[i])
    c = Checksum()
    for r in rows:
        c.add(tuple(r[i] for i in order))
    return c
