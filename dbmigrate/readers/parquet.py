"""Read a Parquet snapshot directory (dbmigrate.writers.parquet): the restore end of a copy.

`open()` trusts nothing it has not checked: the manifest (present, parseable, a format version
this build reads), every table's directory, every file (no file missing or unlisted, its size and
sha256 as recorded, its footer's row count and column types as the manifest says), the row
counts, and (verify="full", the default) every table's checksum, recomputed from its rows. Each
failure is a DataError (SchemaError for an unknown format) naming the table and the file.

Rows come back as the canonical values the writer was given (dbmigrate.model): floats bit for
bit, bytes as bytes, str as str, NULL as None, never ''.

Besides the Reader protocol it offers what the SQL end (dbmigrate.ends.sql) asks of a source that is not SQL
(tables, count, produce, revision, plan_experiment_ids, layout, close), so it can feed a SQL target.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from dbmigrate.checksum import Checksum
from dbmigrate.arrow_rows import ARROW_TYPES, add_batch, in_range
from dbmigrate.errors import DataError, SchemaError
from dbmigrate.mlflow_schema import load_rank
from dbmigrate.model import Column, Part, Table
from dbmigrate.readers.sql import Columnar
from dbmigrate.writers.parquet import FORMAT, FORMAT_VERSION, MANIFEST, MARKER, file_sha256


class ParquetSnapshot:
    """A Reader (dbmigrate.model) over a snapshot directory. The files never change while it is
    read (a snapshot is written once), so every read sees the same state."""

    layout = "parquet snapshot"

    def __init__(self, directory: str, *, verify: str = "full"):
        if verify not in ("full", "files"):
            raise ValueError(f"verify must be 'full' or 'files', not {verify!r}")
        self.directory = os.path.abspath(directory)
        self.verify = verify
        self.revision: str | None = None
        self.manifest: dict = {}
        self.schema: dict[str, Table] = {}
        self.remapped: dict = {}
        self.target_has_analytics = True  # set by the SQL end; nothing to rebuild here

    # ------------------------------------------------------------------ open / validate
    def open(self) -> "ParquetSnapshot":
        self.manifest = m = self._load_manifest()
        self.revision = m.get("mlflow_revision")
        for name, entry in m["tables"].items():
            self._check_table(name, entry)
        if self.verify == "full":
            for name in self.tables():
                self._check_checksum(name)
        return self

    def _load_manifest(self) -> dict:
        path = os.path.join(self.directory, MANIFEST)
        if not os.path.isfile(path):
            if os.path.exists(os.path.join(self.directory, MARKER)):
                raise DataError(f"{self.directory} is an incomplete snapshot: its backup was stopped before "
                                f"{MANIFEST} was written", hint="take the backup again into the same directory")
            if not os.path.isdir(self.directory):
                raise SchemaError(f"{self.directory} does not exist: no Parquet snapshot there")
            tables = sorted(e for e in os.listdir(self.directory) if os.path.isdir(os.path.join(self.directory, e))
                            and any(f.endswith(".parquet") for f in os.listdir(os.path.join(self.directory, e))))
            if tables:
                raise DataError(f"{path} is missing, yet {self.directory} holds table directories "
                                f"({', '.join(tables[:8])}): the manifest was deleted or the backup stopped "
                                "early, so nothing in it can be checked", hint="take the backup again")
            raise SchemaError(f"{self.directory} has no {MANIFEST}: not a dbmigrate Parquet snapshot")
        try:
            with open(path, encoding="utf-8") as f:
                m = json.load(f)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not valid JSON ({exc}); the manifest was damaged") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise SchemaError(f"{path} is not a dbmigrate Parquet snapshot manifest (format "
                              f"{m.get('format') if isinstance(m, dict) else None!r}, expected {FORMAT!r})")
        version = m.get("format_version")
        if version != FORMAT_VERSION:
            raise SchemaError(f"{path} has format version {version!r}; this dbmigrate reads version "
                              f"{FORMAT_VERSION}", hint="use the dbmigrate release that wrote the snapshot")
        if not isinstance(m.get("tables"), dict):
            raise DataError(f"{path} lists no tables; the manifest was damaged")
        return m

    def _check_table(self, name: str, entry: dict) -> None:
        tdir = os.path.join(self.directory, name)
        try:
            columns = [Column(c["name"], c["type"], bool(c["nullable"])) for c in entry["columns"]]
            rows, files = int(entry["rows"]), list(entry["files"])
            int(entry["checksum"], 16)
            if any(c.type not in ARROW_TYPES for c in columns):
                raise ValueError("an unknown column type")
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"The manifest's entry for the table is damaged ({exc})", table=name) from None
        if os.path.basename(name) != name or name in ("", ".", ".."):
            raise DataError(f"The manifest names a table {name!r} that is not a directory name", table=name)
        if not os.path.isdir(tdir):
            raise DataError(f"The table's directory {tdir} is missing", table=name)
        listed = {f.get("path") for f in files}
        for extra in sorted(set(os.listdir(tdir)) - {os.path.basename(p or "") for p in listed}):
            raise DataError(f"{os.path.join(tdir, extra)} is not listed in the manifest", table=name)
        expected = pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in columns])
        total = 0
        for f in files:
            total += self._check_file(name, tdir, f, expected)
        if total != rows:
            raise DataError(f"The manifest says {rows:,} rows but its files ({', '.join(sorted(listed))}) "
                            f"hold {total:,}", table=name)
        self.schema[name] = Table(name, columns, list(entry.get("primary_key") or []))

    def _check_file(self, table: str, tdir: str, f: dict, expected: pa.Schema) -> int:
        rel = f.get("path") or ""
        path = os.path.join(self.directory, rel)
        if os.path.dirname(os.path.normpath(path)) != tdir:
            raise DataError(f"The manifest lists a file {rel!r} outside the table's directory", table=table)
        if not os.path.isfile(path):
            raise DataError(f"{path} is missing", table=table)
        size = os.path.getsize(path)
        if size != f.get("bytes"):
            raise DataError(f"{path} has {size:,} bytes, the manifest says {f.get('bytes')} "
                            f"({'truncated' if size < (f.get('bytes') or 0) else 'changed'})", table=table)
        if file_sha256(path) != f.get("sha256"):
            raise DataError(f"{path} was altered: its sha256 differs from the manifest's", table=table)
        try:
            meta = pq.ParquetFile(path)
            schema, rows = meta.schema_arrow, meta.metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path} is not a readable Parquet file: {exc}", table=table) from None
        if [(x.name, x.type) for x in schema] != [(x.name, x.type) for x in expected]:
            raise DataError(f"{path} has columns {schema.names} of types {[str(x.type) for x in schema]}, "
                            f"not the manifest's", table=table)
        if rows != f.get("rows"):
            raise DataError(f"{path} holds {rows:,} rows, the manifest says {f.get('rows')!r}", table=table)
        return rows

    def _check_checksum(self, table: str) -> None:
        entry = self.manifest["tables"][table]
        tags = {c.name: c.type for c in self.schema[table].columns}
        got = Checksum()
        for f in entry["files"]:
            path = os.path.join(self.directory, f["path"])
            try:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
                    add_batch(got, batch, tags)
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"{path} could not be read: {exc}", table=table) from None
        files = ", ".join(f["path"] for f in entry["files"])
        if got.count != entry["rows"] or f"{got.total:016x}" != entry["checksum"]:
            raise DataError(f"The rows of {files} ({got}) do not match the manifest's checksum "
                            f"({entry['rows']:,} rows #{entry['checksum']})", table=table)

    # ------------------------------------------------------------------ the Reader protocol
    def tables(self) -> list[str]:
        return sorted(self.schema, key=load_rank)

    def table(self, name: str) -> Table:
        return self.schema[name]

    def count(self, table: str, part: Part = None) -> int:
        if table not in self.schema:
            return 0
        if part is None:
            return int(self.manifest["tables"][table]["rows"])
        return sum(len(b) for b in self.rows(table, [part[0]], 100_000, part))

    def rows(self, table: str, columns: Sequence[str], batch_size: int,
             part: Part = None) -> Iterator[list[tuple]]:
        entry = self.manifest["tables"][table]
        columns = list(columns)
        unknown = [c for c in columns if self.schema[table].column(c) is None]
        if unknown:
            raise DataError(f"No column {unknown[0]!r} in the snapshot", table=table, column=unknown[0])
        read = columns + ([part[0]] if part and part[0] not in columns else [])
        for f in entry["files"]:
            path = os.path.join(self.directory, f["path"])
            try:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=read):
                    if part:
                        batch = batch.filter(in_range(batch.column(part[0]), part[1], part[2]))
                    if batch.num_rows:  # the columns too, which the SQL end would otherwise transpose back
                        cols = [batch.column(c).to_pylist() for c in columns]
                        yield Columnar(list(zip(*cols)), cols)
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"{path} could not be read: {exc}", table=table) from None

    def verified_checksum(self, table: str, columns: Sequence[str]) -> tuple[int, int] | None:
        """(rows, checksum total) the manifest records for `table`, when open() proved that the
        files' rows give exactly that (verify='full') and `columns` are all of the table's
        columns (the manifest's checksum covers them all); else None."""
        entry = self.manifest.get("tables", {}).get(table)
        if self.verify != "full" or entry is None or table not in self.schema:
            return None
        if sorted(columns) != sorted(c.name for c in self.schema[table].columns):
            return None
        return int(entry["rows"]), int(entry["checksum"], 16)

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ what the SQL end asks
    def produce(self, table: str, batch_size: int) -> tuple[list[str], Iterator[list[tuple]]]:
        """(columns, batches) of a whole table, generated columns included."""
        if table not in self.schema:
            return [], iter(())
        columns = [c.name for c in self.schema[table].columns]
        return columns, self.rows(table, columns, batch_size)

    def plan_experiment_ids(self, max_id: int) -> dict:
        """Experiment ids the target's INTEGER cannot hold (an 18-digit FileStore id from SQLite)
        -> the next free ids, in creation order; as dbmigrate.sql_rows.sql_experiment_map does."""
        if "experiments" not in self.schema:
            return {}
        rows = [r for b in self.rows("experiments", ["experiment_id", "creation_time"], 10_000) for r in b]
        fits = [r[0] for r in rows if 0 <= r[0] <= max_id]
        nxt = max(fits, default=0) + 1
        self.remapped = {}
        for exp_id, _ in sorted((r for r in rows if not 0 <= r[0] <= max_id), key=lambda r: (r[1] or 0, r[0])):
            self.remapped[exp_id] = nxt
            nxt += 1
        return self.remapped

