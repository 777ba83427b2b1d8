"""The declared ends of a copy: what the pipeline may ask of any Reader and any Writer.

A batch's path is a straight line: `reader.rows(table, columns, n, part)` yields lists of tuples in
canonical values -> (converters of a target layout, if any) -> `writer.write(table, columns, rows)`.
What differs between targets is declared in the writer's `Capabilities`, never learnt by asking what
kind of server it is.

Canonical values (what every Reader yields and every Writer accepts), by the column's type tag
(`Column.type`, made by `dbmigrate.readers.sql._type_tag`):

    int       int (64-bit range)            float     float, every bit kept: NaN, +-inf, -0.0, 5e-324
    bool      bool (never 0/1)              decimal   float (the SQL reader converts NUMERIC)
    str       str (full Unicode)            json      str: the JSON text as stored, not parsed
    bytes     bytes (never str)             date      str: ISO 8601 text, `date.isoformat()`
    datetime  str: ISO 8601 text as `datetime.isoformat()` gives it (naive stays naive)

and None for NULL in any column. NULL and '' are different values; so are 1, 1.0, True and '1'
(dbmigrate.checksum hashes them apart). Rows of one table come in no particular order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from dbmigrate.readers.sql import Column, Table

__all__ = ["Capabilities", "Column", "Part", "Reader", "Table", "Writer", "CANONICAL_TYPES"]

# A key range of one table: (column, lo, hi) for lo <= column < hi, either end open (None);
# None is the whole table.
Part = tuple | None

# The Python types a value of each type tag may have (besides None).
CANONICAL_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (float,), "decimal": (float,), "bool": (bool,), "str": (str,),
    "json": (str,), "date": (str,), "datetime": (str,), "bytes": (bytes,),
}


@dataclass(frozen=True)
class Capabilities:
    """What a target can do, which is what the orchestrator plans by.

    parallel_writers     how many writers may write at once (separate processes, each its own
                         Writer); None: no limit beyond the plan's workers; 1: one at a time.
    unique_indexes_first unique indexes must exist before the first row (Cosmos DB refuses to
                         build one on a non-empty collection); otherwise indexes come after the load.
    max_batch_rows       most rows one `write` may carry (None: no limit).
    max_batch_bytes      most bytes one `write` may carry once encoded (None: no limit).
    defers_keys          keys and indexes are dropped before a big load and rebuilt by `finalize`.
    advances_sequences   `finalize` moves id generators past the copied ids.
    durable_writes       True: a `write` is durable when it returns, so a part may be checkpointed
                         as soon as its last write returns. False: rows are durable only when
                         `finalize` returns; a killed run is redone from nothing (`begin` clears
                         what it left), never resumed part by part.
    keeps_negative_zero  -0.0 is stored as -0.0. False: the engine would store 0.0 (SQLite,
                         MySQL/MariaDB), so the writer refuses -0.0 with a DataError naming
                         table, column and key; a caller that accepts 0.0 converts it first and
                         reports it (as dbmigrate.sql_rows.NegativeZeros does).
    fast_paths           names of (reader, writer) shortcuts this writer offers, e.g.
                         "postgresql-binary-copy"; the orchestrator uses one only when the reader
                         declares the same name.
    """

    parallel_writers: int | None = None
    unique_indexes_first: bool = False
    max_batch_rows: int | None = None
    max_batch_bytes: int | None = None
    defers_keys: bool = False
    advances_sequences: bool = False
    durable_writes: bool = True
    keeps_negative_zero: bool = True
    fast_paths: frozenset[str] = frozenset()


@runtime_checkable
class Reader(Protocol):
    """One source, read in one consistent snapshot: every method sees the same state of it."""

    revision: str | None
    """MLflow's alembic revision of the source's schema (None: the source records none)."""

    def open(self) -> "Reader":
        """Connect and fix the snapshot every later read sees; returns self. Errors:
        ConnectionFailed (unreachable), SchemaError (not an MLflow store, unknown revision),
        DataError (a store that is damaged, naming the table and the file or key)."""

    def tables(self) -> list[str]:
        """The tables this source holds, parents before children."""

    def table(self, name: str) -> Table:
        """The table's columns with their type tags (in the source's order) and its primary key."""

    def count(self, table: str, part: Part = None) -> int:
        """Exactly the rows `rows(table, ..., part)` yields, in the snapshot."""

    def rows(self, table: str, columns: Sequence[str], batch_size: int,
             part: Part = None) -> Iterator[list[tuple]]:
        """The rows of `table` (of one key range, `part`) as tuples of canonical values in the
        order of `columns`, in lists of at most `batch_size`; memory holds a batch or two, never
        the table. Each row is yielded exactly once; the parts of a table partition its rows."""

    def close(self) -> None:
        """Release the snapshot and connections; safe to call twice."""


@runtime_checkable
class Writer(Protocol):
    """One target. The orchestrator calls: begin once, then write (and delete_part on a rerun
    of a part) per table in parent-before-child order, then finalize once, then close.

    The first step is `begin(schema, revision)`, not `prepare`: the writers' existing `prepare`
    methods are their orchestrators' and differ (SqlWriter.prepare(revision, *, dry_run) makes
    MLflow's schema by MLflow's migrations; SnapshotWriter.prepare(schema, revision)), so no
    one `prepare` signature fits them all without breaking a caller. `begin` is what every
    writer honours; a writer's own `prepare` may be what its `begin` calls."""

    capabilities: Capabilities

    def begin(self, schema: Mapping[str, Table], revision: str | None) -> None:
        """Make the target ready for these tables (columns with type tags, primary keys) at MLflow
        revision `revision` (None: no MLflow revision to make; the tables are taken as they are).
        A writer that makes its target's schema makes it here (the snapshot: from `schema`; SQL:
        MLflow's migrations at `revision`, never from `schema`); every writer checks that each
        table of `schema` has a place with each of its columns, else SchemaError. Refuses
        (TargetNotEmpty) a target that already holds a complete copy; clears what an interrupted
        run of its own left when the target cannot resume it (`durable_writes` False)."""

    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        """Add `rows` (canonical values, in the order of `columns`) to `table`. Durable when it
        returns if `capabilities.durable_writes`, else when `finalize` returns. A value its column
        cannot hold exactly is refused with a DataError naming table, column and key; nothing is
        silently converted."""

    def delete_part(self, table: str, part: Part) -> int:
        """Remove exactly the rows of `table` in `part` (all of them for None) that earlier writes
        added, so the part can be written again; returns how many were removed."""

    def finalize(self) -> dict:
        """Finish the copy (indexes, deferred keys, sequences, manifests); when it returns every
        row written is durable. Returns stats: {table: {"rows": n, ...}}."""

    def close(self) -> None:
        """Release connections and files; after a failure too. Safe to call twice."""
