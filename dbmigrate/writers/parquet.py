"""Write a Parquet snapshot directory: the backup end of a copy.

    <dir>/.dbmigrate-snapshot            marker: this directory is a snapshot being written
    <dir>/<table>/part-00000.parquet     one dataset per table, more part files as it grows
    <dir>/manifest.json                  written last (temp file + fsync + rename): its presence
                                         is what makes the snapshot complete

Types are exact, from the source's type tags (dbmigrate.model): int -> int64, float/decimal ->
float64 (IEEE bits as they are: NaN, +-inf, -0.0, subnormals), bool -> bool, bytes ->
large_binary, str/json/date/datetime -> large_string holding the canonical text; NULL is a Parquet
null. A value of another Python type than its tag allows is refused, never converted (pyarrow
would turn 1.0 into 1 or b'x' into 'x'). The manifest records per table the row count, the
columns and the verifier's order-independent checksum (dbmigrate.checksum, columns in name
order) and every file with its size and sha256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import dbmigrate
from dbmigrate.checksum import MASK, Checksum
from dbmigrate.arrow_rows import add_batch, arrow_schema, in_range
from dbmigrate.errors import DataError, MigrationError, TargetNotEmpty
from dbmigrate.model import CANONICAL_TYPES, Capabilities, Part, Table

FORMAT = "dbmigrate-parquet-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MARKER = ".dbmigrate-snapshot"
CHECKSUM_ALGORITHM = "dbmigrate.checksum: sum mod 2^64 of blake2b-64 of typed tokens, columns in name order"
def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _TableFile:
    """The open part file of one table, its buffered rows and what has been written so far."""

    def __init__(self, table: Table, columns: list[str]):
        self.table, self.columns = table, columns
        self.schema = arrow_schema(table, columns)
        self.allowed = [CANONICAL_TYPES[table.column(c).type] + (type(None),) for c in columns]
        self.tags = {c: table.column(c).type for c in columns}
        self.checksum = Checksum()
        self.files: list[dict] = []       # closed part files: {path, rows, bytes, sha256}
        self.writer: pq.ParquetWriter | None = None
        self.path: str | None = None
        self.file_rows = self.next_file = 0  # part file numbers only grow (a rewrite reuses none)
        self.buffer: list[pa.RecordBatch] = []
        self.buffer_rows = self.buffer_bytes = 0


class SnapshotWriter:
    """A Writer (dbmigrate.model) into a snapshot directory. Rows are durable at `finalize`."""

    capabilities = Capabilities(parallel_writers=1, durable_writes=False, keeps_negative_zero=True)

    def __init__(self, directory: str, *, overwrite: bool = False, row_group_rows: int = 128 * 1024,
                 row_group_bytes: int = 32 << 20, file_rows: int = 4_000_000, compression: str = "zstd"):
        self.directory = os.path.abspath(directory)
        self.overwrite = overwrite
        self.row_group_rows, self.row_group_bytes = row_group_rows, row_group_bytes
        self.file_rows, self.compression = file_rows, compression
        self.schema: dict[str, Table] = {}
        self.revision: str | None = None
        self.open: dict[str, _TableFile] = {}
        self.finished = False

    # ------------------------------------------------------------------ prepare
    def prepare(self, schema: Mapping[str, Table], revision: str) -> None:
        d = self.directory
        entries = os.listdir(d) if os.path.isdir(d) else []
        if os.path.exists(d) and not os.path.isdir(d):
            raise TargetNotEmpty(f"The snapshot target {d} is a file, not a directory")
        if entries:
            if MANIFEST in entries and not self.overwrite:
                raise TargetNotEmpty(f"{d} already holds a complete snapshot ({os.path.join(d, MANIFEST)})",
                                     hint="choose a new directory, or overwrite it explicitly")
            if MANIFEST not in entries and MARKER not in entries:
                raise TargetNotEmpty(f"{d} is not empty and is not a dbmigrate snapshot "
                                     f"(found: {', '.join(sorted(entries)[:8])})",
                                     hint="choose an empty or new directory")
            self._clear(entries)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, MARKER), "w") as f:
            f.write("a dbmigrate Parquet snapshot; incomplete until manifest.json exists\n")
        self.schema, self.revision = dict(schema), revision

    def begin(self, schema: Mapping[str, Table], revision: str | None) -> None:
        """The Writer protocol's first step (dbmigrate.model.Writer): `prepare`. A snapshot is
        made from `schema` itself; an incomplete one (of an interrupted run) is cleared, since
        rows are durable only at `finalize` (capabilities.durable_writes is False)."""
        self.prepare(schema, revision)

    def _clear(self, entries: list[str]) -> None:
        """Remove an incomplete snapshot (or, when told to overwrite, a complete one): the
        manifest first, so a kill in the middle leaves an incomplete snapshot, never a wrong one."""
        d = self.directory
        with open(os.path.join(d, MARKER), "w") as f:
            f.write("a dbmigrate Parquet snapshot being cleared\n")
        if MANIFEST in entries:
            os.remove(os.path.join(d, MANIFEST))
        for name in entries:
            path = os.path.join(d, name)
            if name in (MANIFEST, MARKER):
                continue
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)

    # ------------------------------------------------------------------ write
    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        tf = self._table_file(table, list(columns))
        if not rows:
            return
        if set(map(len, rows)) != {len(columns)}:
            raise DataError(f"Rows of {sorted(set(map(len, rows)))} values for {len(columns)} columns", table=table)
        cols = list(zip(*rows))
        for i, values in enumerate(cols):
            if not set(map(type, values)) <= set(tf.allowed[i]):
                self._refuse(tf, rows, i)
        try:
            arrays = [pa.array(values, type=f.type) for values, f in zip(cols, tf.schema)]
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise DataError(f"A value does not fit its Parquet column: {exc}", table=table) from None
        tf.buffer.append(batch := pa.RecordBatch.from_arrays(arrays, schema=tf.schema))
        add_batch(tf.checksum, batch, tf.tags)  # what the file holds, values checked exact above
        tf.buffer_rows, tf.buffer_bytes = tf.buffer_rows + batch.num_rows, tf.buffer_bytes + batch.nbytes
        if tf.buffer_rows >= self.row_group_rows or tf.buffer_bytes >= self.row_group_bytes:
            self._flush(tf)

    def _refuse(self, tf: _TableFile, rows: list[tuple], i: int):
        name, allowed = tf.columns[i], tf.allowed[i]
        bad = next(r for r in rows if type(r[i]) not in allowed)
        pk = [tf.columns.index(k) for k in tf.table.pk if k in tf.columns]
        key = tuple(bad[k] for k in pk) if pk else None
        raise DataError(f"{type(bad[i]).__name__} value {bad[i]!r:.80} in a column of type "
                        f"{tf.table.column(name).type}; a snapshot keeps values exactly and converts none",
                        table=tf.table.name, column=name,
                        key=key[0] if key and len(key) == 1 else key)

    def _table_file(self, table: str, columns: list[str]) -> _TableFile:
        if self.finished:
            raise MigrationError("The snapshot was finalized: it takes no more rows", table=table)
        tf = self.open.get(table)
        if tf is None:
            if table not in self.schema:
                raise MigrationError(f"Table {table!r} was not in the schema given to prepare()", table=table)
            tf = self.open[table] = _TableFile(self.schema[table], columns)
            os.makedirs(os.path.join(self.directory, table), exist_ok=True)
        elif tf.columns != columns:
            raise DataError(f"Columns {columns} differ from the {tf.columns} of earlier batches", table=table)
        return tf

    def _flush(self, tf: _TableFile) -> None:
        """Write the buffered batches as one row group; start a new part file when this one is full."""
        if not tf.buffer:
            return
        data = pa.Table.from_batches(tf.buffer, schema=tf.schema)
        tf.buffer, tf.buffer_rows, tf.buffer_bytes = [], 0, 0
        if tf.writer is None:
            self._open_file(tf)
        tf.writer.write_table(data, row_group_size=max(len(data), 1))
        tf.file_rows += len(data)
        if tf.file_rows >= self.file_rows:
            self._close_file(tf)

    def _open_file(self, tf: _TableFile) -> None:
        tf.path = os.path.join(self.directory, tf.table.name, f"part-{tf.next_file:05d}.parquet")
        tf.next_file += 1
        tf.writer = pq.ParquetWriter(tf.path, tf.schema, compression=self.compression)

    def _close_file(self, tf: _TableFile) -> None:
        if tf.writer is None:
            return
        tf.writer.close()
        with open(tf.path, "rb+") as f:
            os.fsync(f.fileno())
        tf.files.append({"path": os.path.relpath(tf.path, self.directory), "rows": tf.file_rows,
                         "bytes": os.path.getsize(tf.path), "sha256": file_sha256(tf.path)})
        tf.writer, tf.path, tf.file_rows = None, None, 0

    def delete_part(self, table: str, part: Part) -> int:
        """Remove exactly the rows of `part` written so far (all of them for None): the table's
        open file is closed, each file holding rows of the range is rewritten without them (temp
        file + rename) and their hashes leave the table's checksum. Returns the rows removed."""
        tf = self.open.get(table)
        if tf is None:
            return 0
        if part is None:
            if tf.writer is not None:
                tf.writer.close()
            shutil.rmtree(os.path.join(self.directory, table), ignore_errors=True)
            os.makedirs(os.path.join(self.directory, table))
            self.open[table] = _TableFile(tf.table, tf.columns)
            return tf.checksum.count
        column, lo, hi = part
        if column not in tf.columns:
            raise MigrationError(f"Part column {column!r} is not among the columns written", table=table)
        self._flush(tf)
        self._close_file(tf)
        removed = 0
        for entry in tf.files:
            path = os.path.join(self.directory, entry["path"])
            n = self._rewrite_without(tf, path, column, lo, hi)
            if n:
                removed += n
                entry.update(rows=entry["rows"] - n, bytes=os.path.getsize(path), sha256=file_sha256(path))
        return removed

    def _rewrite_without(self, tf: _TableFile, path: str, column: str, lo, hi) -> int:
        """Rewrite one part file without the rows in the range, a row group at a time; 0: untouched."""
        removed, tmp, out = 0, path + ".tmp", None
        pf = pq.ParquetFile(path)
        for g in range(pf.num_row_groups):
            data = pf.read_row_group(g)
            inside = in_range(data.column(column), lo, hi)
            gone, less = data.filter(inside), Checksum()
            add_batch(less, gone, tf.tags)
            tf.checksum.total = (tf.checksum.total - less.total) & MASK
            tf.checksum.count -= gone.num_rows
            removed += gone.num_rows
            out = out or pq.ParquetWriter(tmp, tf.schema, compression=self.compression)
            out.write_table(data.filter(pc.invert(inside)))
        if out is not None:
            out.close()
        if removed:
            os.replace(tmp, path)
        elif out is not None:
            os.remove(tmp)
        return removed

    # ------------------------------------------------------------------ finalize
    def finalize(self) -> dict:
        """Close every part file, fsync, then write manifest.json last (temp + fsync + rename)."""
        tables, stats = {}, {}
        for name, table in sorted(self.schema.items()):
            tf = self.open.get(name) or self._table_file(name, table.column_names)
            self._flush(tf)
            if not tf.files and tf.writer is None:  # an empty table still gets one (empty) file
                self._open_file(tf)
            self._close_file(tf)
            tables[name] = {
                "rows": tf.checksum.count, "checksum": f"{tf.checksum.total:016x}",
                "columns": [{"name": c, "type": table.column(c).type, "nullable": table.column(c).nullable}
                            for c in tf.columns],
                "primary_key": list(table.pk), "files": tf.files}
            stats[name] = {"rows": tf.checksum.count, "files": len(tf.files),
                           "bytes": sum(f["bytes"] for f in tf.files)}
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "tool": "dbmigrate",
                    "tool_version": dbmigrate.__version__, "mlflow_revision": self.revision,
                    "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "checksum_algorithm": CHECKSUM_ALGORITHM, "tables": tables}
        _fsync_dir(self.directory)
        for name in tables:
            _fsync_dir(os.path.join(self.directory, name))
        tmp = os.path.join(self.directory, MANIFEST + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.directory, MANIFEST))
        os.remove(os.path.join(self.directory, MARKER))
        _fsync_dir(self.directory)
        self.open.clear()
        self.finished = True
        return stats

    def close(self) -> None:
        """Close open files without a manifest: what was written stays an incomplete snapshot."""
        for tf in self.open.values():
            if tf.writer is not None:
                tf.writer.close()
                tf.writer = None
        self.open.clear()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
