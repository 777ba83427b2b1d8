"""Canonical rows (dbmigrate.model) as Arrow data: the exact Arrow type of each type tag, key-range
masks, and dbmigrate.checksum's Checksum computed column by column.

The checksum: each column's typed, length-prefixed tokens are built by Arrow kernels, joined per
row, and only the 64-bit blake2b per row runs in Python. Same canonical form, same numbers: a row's hash
here equals `checksum.row_hash` of its Python values, columns in name order (tests prove it on the
edge values and on random rows).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dbmigrate.checksum import MASK, Checksum
from dbmigrate.errors import DataError
from dbmigrate.model import Table

ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "decimal": pa.float64(), "bool": pa.bool_(),
               "bytes": pa.large_binary(), "str": pa.large_string(), "json": pa.large_string(),
               "date": pa.large_string(), "datetime": pa.large_string()}


def arrow_schema(table: Table, columns: Sequence[str]) -> pa.Schema:
    """The Arrow schema of `columns` of `table`; each field keeps its type tag in its metadata."""
    fields = []
    for name in columns:
        col = table.column(name)
        if col is None:
            raise DataError(f"No column {name!r} in the schema given to prepare()", table=table.name, column=name)
        fields.append(pa.field(name, ARROW_TYPES[col.type], nullable=True,
                               metadata={"dbmigrate.type": col.type}))
    return pa.schema(fields)


def in_range(values, lo, hi):
    """Mask of lo <= value < hi, either end open (None); NULL is in no range, as in SQL."""
    mask = pc.is_valid(values)
    if lo is not None:
        mask = pc.and_(mask, pc.greater_equal(values, lo))
    if hi is not None:
        mask = pc.and_(mask, pc.less(values, hi))
    return pc.fill_null(mask, False)


_NULL = pa.scalar(b"\x00\x00\x00\x01N", pa.large_binary())
_SEP = pa.scalar(b"", pa.large_binary())
_NAN_BITS = int.from_bytes(struct.pack(">d", float("nan")), "big")


def _fixed(data: bytes, width: int, n: int) -> pa.Array:
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(data)]) \
        .cast(pa.large_binary())


def _prefixed(tag: bytes, payload: pa.Array) -> pa.Array:
    """4-byte big-endian length of tag + payload, the tag, the payload (NULL rows: anything)."""
    payload = payload.cast(pa.large_binary())
    lengths = pc.add(pc.binary_length(payload), len(tag)).fill_null(0).to_numpy().astype(">u4")
    return pc.binary_join_element_wise(_fixed(lengths.tobytes(), 4, len(payload)),
                                       pa.scalar(tag, pa.large_binary()), payload, _SEP)


def _float_payload(values: pa.Array) -> pa.Array:
    bits = values.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64).view(np.uint64).copy()
    bits[np.isnan(bits.view(np.float64))] = _NAN_BITS  # one NaN pattern, as checksum._token
    return _fixed(bits.astype(">u8").tobytes(), 8, len(values))


def column_tokens(values: pa.Array, tag: str) -> pa.Array:
    """Each value's length-prefixed token, as checksum.row_hash builds it."""
    if tag in ("float", "decimal"):
        token = pc.binary_join_element_wise(pa.scalar(b"\x00\x00\x00\x09d", pa.large_binary()),
                                            _float_payload(values), _SEP)
    elif tag == "bool":
        token = pc.if_else(values.fill_null(False), pa.scalar(b"\x00\x00\x00\x01T", pa.large_binary()),
                           pa.scalar(b"\x00\x00\x00\x01F", pa.large_binary()))
    elif tag == "int":
        token = _prefixed(b"i", pc.cast(values, pa.string()))
    elif tag == "bytes":
        token = _prefixed(b"b", values)
    else:  # str, json, date, datetime: text
        token = _prefixed(b"s", values)
    return pc.if_else(pc.is_null(values), _NULL, token) if values.null_count else token


def add_batch(checksum: Checksum, batch: pa.RecordBatch | pa.Table, tags: dict[str, str]) -> None:
    """Add every row of `batch` to `checksum`; `tags` maps each column to its type tag."""
    n = batch.num_rows
    if not n:
        return
    names = sorted(batch.schema.names)
    tokens = [column_tokens(_chunk(batch.column(c)), tags[c]) for c in names]
    rows = pc.binary_join_element_wise(*tokens, _SEP).to_pylist() if len(tokens) > 1 else tokens[0].to_pylist()
    blake, from_bytes = hashlib.blake2b, int.from_bytes
    total = sum(from_bytes(blake(r, digest_size=8).digest(), "big") for r in rows)
    checksum.count += n
    checksum.total = (checksum.total + total) & MASK


def _chunk(col) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
