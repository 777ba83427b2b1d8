"""`dbmigrate verify` with a Parquet snapshot as the target: the snapshot's files are read back and
proved against its manifest (file hashes, each table's rows against its checksum), then every
table's rows are read from the source and their count and checksum compared with the manifest's.
(A snapshot as the *source* of `verify` is read like any other source by verification.sql.)"""

from __future__ import annotations

import time

from dbmigrate.checksum import Checksum
from dbmigrate.config import Config
from dbmigrate.mlflow_schema import load_rank, schema_version
from dbmigrate.report import Check, Report, Verification
from dbmigrate.uri import DatabaseURI


def verify_snapshot(cfg: Config, src_uri: DatabaseURI, dst_uri: DatabaseURI, report: Report, steps) -> None:
    from dbmigrate.backends import open_source
    from dbmigrate.readers.parquet import ParquetSnapshot
    from dbmigrate.readers.sql import SqlSource
    steps("read the snapshot %s and prove its files against its manifest", dst_uri.masked)
    snap = ParquetSnapshot(dst_uri.path, verify="files" if cfg.verify == "counts" else "full").open()
    source = open_source(cfg, src_uri)
    try:
        t0 = time.perf_counter()
        if isinstance(source, SqlSource):
            schema = source.inspect()
            revision, tables = schema.revision, set(schema.tables)
            report.snapshot = source.snapshot_id or ""
        else:
            revision, tables = source.revision, set(source.tables())
        report.mlflow, report.revision = schema_version(snap.revision).describe(), snap.revision
        steps("verify (%s): the source's rows against the snapshot's manifest", cfg.verify)
        v = Verification(level=cfg.verify)
        if revision != snap.revision:
            v.failures.append(f"revision: source {revision}, snapshot {snap.revision}")
        theirs = set(snap.tables())
        v.failures += [f"{t}: in the source, not in the snapshot" for t in sorted(tables - theirs)]
        v.failures += [f"{t}: in the snapshot, not in the source" for t in sorted(theirs - tables)]
        for t in sorted(tables & theirs, key=load_rank):
            columns = sorted(c.name for c in snap.table(t).columns)
            got = Checksum()
            reads = (source.stream(t, columns, cfg.batch_size) if isinstance(source, SqlSource)
                     else source.rows(t, columns, cfg.batch_size))
            for rows in reads:
                for r in rows:
                    got.add(r)
            check_against_manifest(v, t, got, snap.manifest["tables"][t])
        v.seconds = time.perf_counter() - t0
        report.verification = v
        steps("done")
    finally:
        source.close()
        snap.close()


def check_against_manifest(v: Verification, table: str, got: Checksum, entry: dict, counts_only: bool = False) -> None:
    """Add to `v` the count (and, unless `counts_only`, checksum) of the source's rows of `table`
    against the snapshot manifest's `entry`; a difference names the table's files."""
    v.counts.append(Check(table, got.count == entry["rows"], f"source {got.count:,}, snapshot {entry['rows']:,}"))
    if counts_only:
        return
    same = (got.count, f"{got.total:016x}") == (entry["rows"], entry["checksum"])
    v.checksums.append({"name": table, "table": table, "source": str(got),
                        "target": f"{entry['rows']:,} rows #{entry['checksum']}", "match": same, "rows": got.count})
    if not same:
        files = ", ".join(f["path"] for f in entry["files"])
        v.failures.append(f"{table}: the source's rows ({got}) differ from the snapshot's files {files} "
                          f"({entry['rows']:,} rows #{entry['checksum']})")
