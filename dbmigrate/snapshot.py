"""Backup and restore through the declared ends (dbmigrate.model), not yet wired to the CLI.

`copy_tables(reader, writer)` is the straight line a batch takes: reader.rows -> writer.write, table
by table, parents first, then writer.finalize (any Reader, any Writer of dbmigrate.model);
`backup(uri, directory)` writes a Parquet snapshot of a SQL database in one read snapshot;
`compare(reader, snapshot)` checks a database against its snapshot by the verifier's checksums.
"""

from __future__ import annotations

from collections.abc import Sequence

from dbmigrate.model import Reader, Writer
from dbmigrate.readers.sql import SqlSource


def SqlReader(source: SqlSource) -> SqlSource:
    """A SqlSource is a Reader itself (dbmigrate.readers.sql); kept so that
    `SqlReader(SqlSource(uri)).open()` still reads."""
    return source


def copy_tables(reader: Reader, writer: Writer, *, batch_size: int = 10_000,
                tables: Sequence[str] | None = None) -> dict:
    """Every table of `reader` (or those named) into `writer`, all columns; returns finalize's stats."""
    names = [t for t in reader.tables() if tables is None or t in tables]
    schema = {t: reader.table(t) for t in names}
    writer.begin(schema, reader.revision)
    for t in names:
        columns = [c.name for c in schema[t].columns]
        for rows in reader.rows(t, columns, batch_size):
            writer.write(t, columns, rows)
    return writer.finalize()


def backup(uri: str, directory: str, *, batch_size: int = 10_000, overwrite: bool = False) -> dict:
    """A Parquet snapshot of the SQL database at `uri` in `directory`; finalize's stats."""
    from dbmigrate.uri import parse_uri
    from dbmigrate.writers.parquet import SnapshotWriter
    reader = SqlSource(parse_uri(uri, role="source")).open()
    writer = SnapshotWriter(directory, overwrite=overwrite)
    try:
        return copy_tables(reader, writer, batch_size=batch_size)
    finally:
        writer.close()
        reader.close()


def compare(reader: Reader, snapshot, *, batch_size: int = 10_000) -> list[str]:
    """Differences between a database (any Reader) and a snapshot that claims to be its copy:
    revision, tables, and each table's count and checksum (the snapshot's from its manifest,
    which its open() proved against its files; the database's recomputed here). [] when equal."""
    from dbmigrate.checksum import Checksum
    out = []
    if reader.revision != snapshot.revision:
        out.append(f"revision: database {reader.revision}, snapshot {snapshot.revision}")
    mine, theirs = set(reader.tables()), set(snapshot.tables())
    out += [f"{t}: only in the database" for t in sorted(mine - theirs)]
    out += [f"{t}: only in the snapshot" for t in sorted(theirs - mine)]
    for t in sorted(mine & theirs):
        columns = sorted(c.name for c in snapshot.table(t).columns)
        got = Checksum()
        for rows in reader.rows(t, columns, batch_size):
            for r in rows:
                got.add(r)
        entry = snapshot.manifest["tables"][t]
        if (got.count, f"{got.total:016x}") != (entry["rows"], entry["checksum"]):
            out.append(f"{t}: database {got}, snapshot {entry['rows']:,} rows #{entry['checksum']}")
    return out
