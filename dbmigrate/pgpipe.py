"""PostgreSQL -> PostgreSQL without parsing: the source's `COPY (SELECT ...) TO STDOUT (FORMAT
binary)` fed straight into the target's `COPY ... FROM STDIN (FORMAT binary)`.

Used when a table's columns have the same types on both sides and no value changes on the way
(no experiment id is remapped): every value arrives bit for bit, including NaN, infinities and
-0.0, and no Python object is made per value. The two COPYs run at once, a reader thread
handing the target chunks of ~1 MB through a short queue, so memory stays at a few chunks
whatever the table's size. A failure on either side stops both and is raised in the caller.

Verification cannot add up rows it never decoded, so tables copied this way are checked by
`server_checksum`, computed by each server over the same text form of its rows.
"""

from __future__ import annotations

import math
import queue
import struct
import threading
from itertools import chain, repeat
from operator import add

CHUNK = 1 << 20  # bytes handed over at a time
DEPTH = 4  # chunks in flight at most

# Session settings that fix the text form of every value `server_checksum` hashes.
TEXT_SETTINGS = ("SET LOCAL extra_float_digits = 3", "SET LOCAL TimeZone = 'UTC'",
                 "SET LOCAL DateStyle = 'ISO, MDY'", "SET LOCAL IntervalStyle = 'postgres'",
                 "SET LOCAL bytea_output = 'hex'")


class _Cancelled(Exception):
    pass


class SourceFailed(Exception):
    """The source's COPY failed (its exception is `original`); the target's was abandoned."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


class _Sink:
    """The file psycopg2's COPY TO writes into: one write per row, gathered into chunks."""

    def __init__(self, chunks: queue.Queue, stop: threading.Event, on_rows):
        self.chunks, self.stop, self.on_rows = chunks, stop, on_rows
        self.buf = bytearray()
        self.writes = 0

    def write(self, data) -> None:
        self.buf += data
        self.writes += 1
        if len(self.buf) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.stop.is_set():  # the target side gave up: let the source's COPY run out
            self.buf.clear()
            return
        if self.buf:
            self._put(bytes(self.buf))
            self.buf.clear()
        if self.on_rows and self.writes:
            self.on_rows(self.writes)  # ~ rows (psycopg2 writes one COPY message per row)
            self.writes = 0

    def _put(self, item) -> None:
        while True:
            try:
                self.chunks.put(item, timeout=0.2)
                return
            except queue.Full:
                if self.stop.is_set():
                    return


class _Source:
    """The file psycopg2's COPY FROM reads: the chunks the reader thread produced."""

    def __init__(self, chunks: queue.Queue):
        self.chunks = chunks
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        item = self.chunks.get()
        if isinstance(item, BaseException):
            self.error = item
            raise _Cancelled("the source's COPY failed")
        return item or b""

    readline = read


def pipe(src_conn, out_sql: str, dst_conn, in_sql: str, on_rows=None) -> int:
    """Run `out_sql` (COPY ... TO STDOUT) on `src_conn` and `in_sql` (COPY ... FROM STDIN) on
    `dst_conn` at once, the first's output as the second's input. Returns the rows the target
    took. The caller commits (or rolls back) the target; an error on either side is raised."""
    chunks: queue.Queue = queue.Queue(maxsize=DEPTH)
    stop = threading.Event()
    sink = _Sink(chunks, stop, on_rows)
    failure: list[BaseException] = []

    def produce():
        cur = src_conn.cursor()
        try:
            cur.copy_expert(out_sql, sink, size=CHUNK)
            sink.flush()
            sink._put(b"")
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            failure.append(exc)
            sink._put(exc)
        finally:
            cur.close()

    reader = threading.Thread(target=produce, name="dbmigrate-copy-out", daemon=True)
    reader.start()
    source = _Source(chunks)
    cur = dst_conn.cursor()
    try:
        cur.copy_expert(in_sql, source, size=CHUNK)
        rows = cur.rowcount
    except BaseException:
        stop.set()
        _drain(chunks)
        reader.join()
        if failure:
            raise SourceFailed(failure[0]) from None
        raise
    finally:
        cur.close()
    reader.join()
    if failure:
        raise SourceFailed(failure[0])
    return rows


def _drain(chunks: queue.Queue) -> None:
    while True:
        try:
            chunks.get_nowait()
        except queue.Empty:
            return


def column_types(conn, table: str, columns: list[str]) -> list[str] | None:
    """format_type of each column of `table` (in the connection's search path), None if missing."""
    cur = conn.cursor()
    try:
        cur.execute("""SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                       WHERE a.attrelid = to_regclass(quote_ident(%s)) AND a.attnum > 0
                         AND NOT a.attisdropped""", (table,))
        types = dict(cur.fetchall())
    finally:
        cur.close()
    if not all(c in types for c in columns):
        return None
    return [types[c] for c in columns]


def same_types(src_conn, dst_conn, table: str, columns: list[str]) -> bool:
    """Whether `columns` of `table` exist with the same types on both connections' databases."""
    mine = column_types(src_conn, table, columns)
    return mine is not None and mine == column_types(dst_conn, table, columns)


def server_checksum(conn, select_sql: str, params=()) -> tuple[int, str]:
    """(rows, sum) of the 64-bit prefixes of md5 over each row's text form, computed by the
    server: the same rows with the same types give the same pair on any PostgreSQL server of the
    same major version. Runs in the connection's current transaction (the source's snapshot)."""
    cur = conn.cursor()
    try:
        cur.execute("SAVEPOINT dbm_checksum")  # the settings end with it
        for s in TEXT_SETTINGS:
            cur.execute(s)
        cur.execute(f"SELECT count(*), coalesce(sum(('x' || left(md5(dbm_r::text), 16))::bit(64)::bigint::numeric), 0)"
                    f"::text FROM ({select_sql}) dbm_r", params or None)
        n, total = cur.fetchone()
        cur.execute("ROLLBACK TO SAVEPOINT dbm_checksum")
        cur.execute("RELEASE SAVEPOINT dbm_checksum")
    finally:
        cur.close()
    return int(n), total


def server_major(conn) -> int:
    return int(conn.server_version) // 10000


# ----------------------------------------------------------------------------- rows -> binary COPY
# A batch of Python rows as COPY's binary format, for the columns whose types it knows. Values go
# as their exact bits (a double's 8 bytes: -0.0, infinities and the NaN bit pattern PostgreSQL uses
# itself; integers as 2/4/8 bytes, text as UTF-8): no number is formatted as text and parsed back,
# and each column is encoded by C-level maps over it (repr() of a random double alone costs ~1 us;
# packing its bits ~0.05 us). Anything else -- another column type, a value of another Python type
# than the column's, an integer out of the column's range, text that is not UTF-8 -- makes
# `binary_rows` return None and the batch goes in COPY's text format, where PostgreSQL decides.

_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no header extension
_TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_pack_len = struct.Struct(">i").pack
_pack_d = struct.Struct(">d").pack
_NAN = struct.pack(">d", float("nan"))  # PostgreSQL's own NaN (what float8in gives for 'NaN')
# the target's columns as SQLAlchemy reflects them (SqlWriter.table_columns) -> encoding
_KIND_OF = {"TEXT": "text", "VARCHAR": "text", "JSON": "text", "DOUBLE_PRECISION": "float8", "BIGINT": "int8",
            "INTEGER": "int4", "SMALLINT": "int2", "BOOLEAN": "bool", "BYTEA": "bytea"}
_FIXED = {"float8": (b"\x00\x00\x00\x08", _pack_d), "int8": (b"\x00\x00\x00\x08", struct.Struct(">q").pack),
          "int4": (b"\x00\x00\x00\x04", struct.Struct(">i").pack),
          "int2": (b"\x00\x00\x00\x02", struct.Struct(">h").pack)}
_PY_TYPE = {"text": str, "float8": float, "int8": int, "int4": int, "int2": int, "bool": bool, "bytea": bytes}
_BOOLS = {True: b"\x00\x00\x00\x01\x01", False: b"\x00\x00\x00\x01\x00"}


class _NotBinary(Exception):
    pass


def copy_kinds(types: list[str] | None) -> list[str] | None:
    """The binary encoding of each column (`types`: SQLAlchemy's reflected type names, such as
    VARCHAR or DOUBLE_PRECISION), None when one has no encoding here."""
    if not types:
        return None
    kinds = [_KIND_OF.get(t) for t in types]
    return None if None in kinds else kinds


def _one(kind: str, v) -> bytes:
    """One non-NULL value of a column of `kind` (the per-value path)."""
    if type(v) is not _PY_TYPE[kind]:
        raise _NotBinary
    if kind == "text":
        b = v.encode()
        return _pack_len(len(b)) + b
    if kind == "bytea":
        return _pack_len(len(v)) + v
    if kind == "bool":
        return _BOOLS[v]
    prefix, pack = _FIXED[kind]
    if kind == "float8" and v != v:
        return prefix + _NAN
    return prefix + pack(v)


def _column(kind: str, col, types: set) -> list[bytes]:
    if len(types) == 1 and _PY_TYPE[kind] in types:
        if kind == "text":
            e = list(map(str.encode, col))
            return list(map(add, map(_pack_len, map(len, e)), e))
        if kind == "bytea":
            return list(map(add, map(_pack_len, map(len, col)), col))
        if kind == "bool":
            return list(map(_BOOLS.__getitem__, col))
        if kind != "float8" or not any(map(math.isnan, col)):
            prefix, pack = _FIXED[kind]
            return list(map(prefix.__add__, map(pack, col)))
    return [_NULL if v is None else _one(kind, v) for v in col]


def binary_rows(kinds: list[str], cols: list, types: list[set]) -> bytes | None:
    """A batch in COPY's binary format (header, rows, trailer): `cols` its columns (each a
    sequence of values), `types[i]` the set of exact Python types in cols[i], `kinds` from
    `copy_kinds`. None when a value cannot go this way exactly (see above)."""
    try:
        encoded = [_column(k, c, t) for k, c, t in zip(kinds, cols, types)]
    except (_NotBinary, struct.error, UnicodeEncodeError, OverflowError):
        return None
    fields = struct.pack(">h", len(kinds))
    return b"".join(chain((_HEADER,), chain.from_iterable(zip(repeat(fields), *encoded)), (_TRAILER,)))
