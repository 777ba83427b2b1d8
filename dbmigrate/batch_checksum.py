"""checksum.Checksum.add over a whole batch, computed a column at a time.

The same count and sum, bit for bit, as calling `Checksum.add` on each row (checksum.row_hash:
blake2b-64 of the length-prefixed type-tagged tokens of the row's values): only the work is laid
out differently. A column whose values are all of one type (the usual case: the readers give
canonical types) is turned into tokens by C-level `map`s over the column, instead of one Python
call per value; a column holding NULLs or several types takes checksum's own per-value path. Then
each row's tokens are joined and hashed from a copied empty BLAKE2b state (cheaper than parsing
`digest_size=8` per row). Measured on MLflow's metrics rows: ~2.0 us a row against ~3.4 us.
"""

from __future__ import annotations

import hashlib
import math
import struct
from itertools import repeat
from operator import add, methodcaller

from dbmigrate.checksum import MASK, Checksum, _fast_token

_encode = methodcaller("encode", "utf-8", "surrogatepass")
_pack_double = struct.Struct(">d").pack
_isnan = math.isnan
_DOUBLE = (9).to_bytes(4, "big") + b"d"  # a double's token: 4-byte length 9, tag, 8 bytes
_BOOL = {True: b"\x00\x00\x00\x01T", False: b"\x00\x00\x00\x01F"}
_EMPTY = hashlib.blake2b(digest_size=8)


class _Prefix(dict):
    """Token payload length -> the 4-byte big-endian token length (payload + tag) and the tag."""

    def __init__(self, tag: bytes):
        super().__init__()
        self.tag = tag

    def __missing__(self, n: int) -> bytes:
        v = (n + 1).to_bytes(4, "big") + self.tag
        if n < 4096:  # long texts' lengths are not kept: the table stays small
            self[n] = v
        return v


_TEXT, _INT = _Prefix(b"s"), _Prefix(b"i")


def _token(v) -> bytes:
    t = _fast_token(v)
    return len(t).to_bytes(4, "big") + t


def column_tokens(col, types: set) -> list[bytes]:
    """The length-prefixed checksum token of each value of one column (`types`: the set of the
    values' exact types, which the caller has at hand)."""
    if len(types) == 1:
        t = next(iter(types))
        if t is str:
            e = list(map(_encode, col))
            return list(map(add, map(_TEXT.__getitem__, map(len, e)), e))
        if t is float:
            if not any(map(_isnan, col)):  # NaN: one bit pattern in the checksum, per value below
                return list(map(_DOUBLE.__add__, map(_pack_double, col)))
        elif t is int:
            e = list(map(str.encode, map(int.__repr__, col)))
            return list(map(add, map(_INT.__getitem__, map(len, e)), e))
        elif t is bool:
            return list(map(_BOOL.__getitem__, col))
    return [_token(v) for v in col]


def add_columns(check: Checksum, cols: list, types: list[set]) -> None:
    """Add a batch to `check`: `cols` its columns in the checksum's canonical (column name)
    order, each a sequence of the batch's values, `types[i]` the set of exact types in cols[i]."""
    if not cols or not len(cols[0]):
        return
    tokens = [column_tokens(c, t) for c, t in zip(cols, types)]
    copy = _EMPTY.copy
    digests = []
    keep = digests.append
    for data in map(b"".join, zip(*tokens)):
        h = copy()
        h.update(data)
        keep(h.digest())
    check.count += len(digests)
    check.total = (check.total + sum(map(int.from_bytes, digests, repeat("big")))) & MASK


def batch_columns(rows, width: int) -> list:
    """A batch's values a column at a time: the batch's own when it carries them (readers.sql.
    Columnar, ends.sql.Batch), else its rows transposed (`width` empty columns for no rows)."""
    cols = getattr(rows, "cols", None)
    if cols is not None:
        return cols
    return list(zip(*rows)) if rows else [()] * width


def add_rows(check: Checksum, rows: list[tuple], order: list[int]) -> None:
    """Add a batch of row tuples to `check`, their values taken in `order` (the canonical column
    order): the same as `check.add(tuple(r[i] for i in order))` for each row."""
    if not rows:
        return
    cols = batch_columns(rows, len(order))
    cols = [cols[i] for i in order]
    add_columns(check, cols, [set(map(type, c)) for c in cols])
