"""Order-independent table checksums: the row count and the sum (mod 2^64) of a 64-bit hash of
each row's canonical form. Two databases compare by reading each side once, in any order.

Canonical form: columns in name order; NULL, booleans, integers, doubles (by their bits, one NaN
pattern, -0.0 distinct from 0.0), text (UTF-8) and bytes each with a type tag, so 1, 1.0, True and
"1" all differ. Integer-valued doubles from a SQLite REAL column are doubles here too (the reader
normalises them), so the same table on two engines gives the same checksum.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

_NAN = struct.pack(">d", float("nan"))
MASK = (1 << 64) - 1
MISSING = object()  # a field absent from a document (not the same as a null one)


def _token(v) -> bytes:
    if v is MISSING:
        return b"M"
    if v is None:
        return b"N"
    if isinstance(v, bool):
        return b"T" if v else b"F"
    if isinstance(v, int):
        return b"i" + str(int(v)).encode()
    if isinstance(v, float):
        return b"d" + (_NAN if math.isnan(v) else struct.pack(">d", v))
    if isinstance(v, (bytes, bytearray, memoryview)):
        return b"b" + bytes(v)
    if isinstance(v, str):
        return b"s" + v.encode("utf-8", "surrogatepass")
    return b"s" + str(v).encode("utf-8", "surrogatepass")


_pack_double = struct.Struct(">d").pack


def _fast_token(v, isnan=math.isnan) -> bytes:
    """_token for the common exact types first (a checksum hashes every row read)."""
    tv = type(v)
    if tv is str:
        return b"s" + v.encode("utf-8", "surrogatepass")
    if tv is float:
        return b"d" + (_NAN if isnan(v) else _pack_double(v))
    if tv is int:
        return b"i" + str(v).encode()
    return _token(v)


def row_hash(values, _blake2b=hashlib.blake2b) -> int:
    """64-bit blake2b of the length-prefixed tokens of the values (one hash call per row)."""
    parts = []
    for v in values:
        t = _fast_token(v)
        parts.append(len(t).to_bytes(4, "big"))
        parts.append(t)
    return int.from_bytes(_blake2b(b"".join(parts), digest_size=8).digest(), "big")


@dataclass
class Checksum:
    count: int = 0
    total: int = 0

    def add(self, values) -> None:
        self.count += 1
        self.total = (self.total + row_hash(values)) & MASK

    def __str__(self) -> str:
        return f"{self.count:,} rows #{self.total:016x}"


def source_checksum(source, table: str, columns: list[str], batch_size: int) -> Checksum:
    cols = sorted(columns)
    c = Checksum()
    for rows in source.stream(table, cols, batch_size):
        for r in rows:
            c.add(r)
    return c


def documents_checksum(coll, columns: list[str], batch_size: int = 10_000) -> Checksum:
    """Checksum of a `tables`-form collection: each document's fields named like the columns."""
    cols = sorted(columns)
    c = Checksum()
    projection = {k: 1 for k in cols}
    projection["_id"] = 0
    for d in coll.find({}, projection, batch_size=batch_size):
        c.add(tuple(d.get(k, MISSING) for k in cols))
    return c
