"""The Parquet snapshot end (`--target parquet:///dir`): every table of the source, every column, as
it is (no id remapping, no conversion), into one Parquet dataset per table and a manifest with the
revision, per-table row counts and checksums (dbmigrate.writers.parquet). A snapshot is durable
only when its manifest is written, so a killed run is redone from nothing, never resumed part by
part; verification reads the files back and compares them with the rows the source gave."""

from __future__ import annotations

import logging
import os

from dbmigrate.batch_checksum import add_rows
from dbmigrate.checksum import Checksum
from dbmigrate.config import Config
from dbmigrate.engine import Part, PartResult
from dbmigrate.ends.sql import Batch
from dbmigrate.errors import ConfigError, TargetNotEmpty
from dbmigrate.mlflow_schema import load_rank, schema_version
from dbmigrate.readers.sql import SqlSource
from dbmigrate.report import Report, TableRow, Verification
from dbmigrate.uri import DatabaseURI

log = logging.getLogger("dbmigrate")


class ParquetEnd:
    units = "tables"
    overlap_writes = False
    steps_total = 6
    parallel_limit_reason = "a snapshot's files are written by one process"

    def __init__(self, cfg: Config, uri: DatabaseURI):
        from dbmigrate.writers.parquet import SnapshotWriter
        from dbmigrate.writers.recording import RecordingSqlWriter
        self.cfg, self.uri, self.directory = cfg, uri, uri.path
        self.snap = SnapshotWriter(self.directory)
        self.writer = RecordingSqlWriter(self.snap) if cfg.dry_run else self.snap
        self.capabilities = self.snap.capabilities
        self.schema: dict = {}
        self.revision = None
        self.counts: dict[str, int] = {}
        self.per_table: dict[str, list] = {}
        self.checks: dict[str, Checksum] = {}

    def needs_sql_source(self, source) -> bool:
        """Whether `source` must first be staged in SQLite (dbmigrate.staging) for this end."""
        return not isinstance(source, SqlSource) and not hasattr(source, "table")

    def connect(self, source, report: Report) -> None:
        if isinstance(source, SqlSource):
            s = source.inspect()
            self.schema, self.revision = dict(s.tables), s.revision
            report.snapshot = source.snapshot_id or ""
        elif hasattr(source, "table"):
            self.schema = {t: source.table(t) for t in source.tables()}
            self.revision = source.revision
        else:
            raise ConfigError(f"{report.source} cannot be written to a Parquet snapshot: it does not describe "
                              "its tables' columns", hint="copy it into a SQL database first, then snapshot that")
        if self.revision is None:
            raise ConfigError(f"{report.source} records no MLflow schema revision; a snapshot must name one")
        report.mlflow, report.revision = schema_version(self.revision).describe(), self.revision
        report.layout = "Parquet snapshot"

    def plan_step(self) -> tuple:
        return ("plan a snapshot of %d tables into %s", len(self.schema), self.directory)

    def plan(self, source, report: Report) -> dict:
        is_sql = isinstance(source, SqlSource)
        self.tables = sorted(self.schema, key=load_rank)
        self.counts = {t: (source.count(t, raw=True) if is_sql else source.count(t)) or 0 for t in self.tables}
        return {"source": report.source, "target": self.uri.masked, "layout": "parquet", "revision": self.revision}

    # ------------------------------------------------------------------ no catalog: see the module
    def require_empty(self) -> None:
        d = self.directory
        if os.path.exists(d) and not os.path.isdir(d):
            raise TargetNotEmpty(f"The snapshot target {d} is a file, not a directory")
        from dbmigrate.writers.parquet import MANIFEST, MARKER
        entries = os.listdir(d) if os.path.isdir(d) else []
        if MANIFEST in entries:
            raise TargetNotEmpty(f"{d} already holds a complete snapshot ({os.path.join(d, MANIFEST)})",
                                 hint="choose a new directory (or remove that one)")
        if entries and MARKER not in entries:
            raise TargetNotEmpty(f"{d} is not empty and is not a dbmigrate snapshot "
                                 f"(found: {', '.join(sorted(entries)[:8])})", hint="choose an empty or new directory")
        self.incomplete = bool(entries)

    def prepare(self) -> None:
        self.snap.prepare(self.schema, self.revision)  # clears what an interrupted run left

    def check_resumable(self) -> None:
        pass

    def clear_target(self) -> None:
        pass

    def parts(self, source, state, workers: int, report: Report) -> list[Part]:
        if getattr(self, "incomplete", False):
            report.notes.append(f"{self.directory} held an incomplete snapshot (an interrupted run); it was "
                                "cleared and written again (a snapshot is never resumed part by part)")
        return [Part(t, t, t, None, self.counts[t], 0) for t in self.tables]

    def before_copy(self, state, resumed: bool, report: Report) -> None:
        pass

    def expected_rows(self) -> dict[str, int]:
        return dict(self.counts)

    def worker_job(self) -> dict:
        return {}

    # ------------------------------------------------------------------ the batch path
    def account(self, part: Part) -> str:
        return part.table

    def clear_part(self, part: Part) -> int:
        return 0

    def fast_copy(self, source, part: Part, on_rows):
        return None

    def batches(self, source, part: Part, res: PartResult):
        table = self.schema[part.table]
        columns = [c.name for c in table.columns]
        if isinstance(source, SqlSource):
            reads = source.stream(part.table, columns, self.cfg.batch_size)
        else:
            reads = source.rows(part.table, columns, self.cfg.batch_size)
        check = self.checks.setdefault(part.table, Checksum())
        order = sorted(range(len(columns)), key=lambda i: columns[i])
        for rows in reads:
            add_rows(check, rows, order)  # the checksum's canonical column order, a column at a time
            yield len(rows), Batch(rows, columns, list(table.pk))

    def write(self, part: Part, batch: Batch) -> None:
        self.writer.write(part.table, batch.columns, batch)

    def part_done(self, res: PartResult) -> None:
        pass

    def detail(self, res: PartResult) -> dict:
        return {"table": res.table, "rows": res.rows, "seconds": res.seconds, "batches": res.batches}

    def absorb(self, detail: dict, finished: float | None = None) -> None:
        p = self.per_table.setdefault(detail["table"], [0, 0.0, 0])
        p[0] += detail["rows"]
        p[1] += detail["seconds"]
        p[2] += detail["batches"]

    def rows_copied(self) -> int:
        return sum(p[0] for p in self.per_table.values())

    def recorded(self) -> str:
        return f"{self.rows_copied():,} rows of {len(self.per_table)} tables would be written to {self.directory}"

    def after_copy(self, source, state) -> None:
        pass

    def finalize_step(self) -> tuple:
        return ("write the manifest of %d tables", len(self.tables))

    def finalize(self, state, workers: int, progress, report: Report) -> None:
        if not self.cfg.dry_run:
            self.snap.finalize()  # files closed and synced, then manifest.json: the snapshot is complete

    def table_rows(self) -> list[TableRow]:
        out = []
        for t in self.tables:
            rows, seconds, batches = self.per_table.get(t, [0, 0.0, 0])
            out.append(TableRow(t, f"parquet:{t}", self.counts[t], rows, max(self.counts[t] - rows, 0), 0,
                                seconds, "", batches))
        return out

    def verify_step(self) -> tuple:
        return ("verify (%s): the snapshot's files read back against the rows the source gave", self.cfg.verify)

    def verify(self, source, progress, report: Report) -> Verification:
        """Read every file back (ParquetSnapshot.open proves each file's hash and, but for --verify
        counts, each table's rows against the manifest's checksum), then compare the manifest's
        counts and checksums with those of the rows the source gave during the copy."""
        import time
        from dbmigrate.errors import MigrationError
        from dbmigrate.readers.parquet import ParquetSnapshot
        from dbmigrate.verification.snapshot import check_against_manifest
        t0 = time.perf_counter()
        v = Verification(level=self.cfg.verify)
        progress.start_step(f"verify ({self.cfg.verify})", len(self.tables), "tables")
        try:
            snap = ParquetSnapshot(self.directory, verify="files" if self.cfg.verify == "counts" else "full").open()
        except MigrationError as exc:
            v.failures.append(f"the snapshot does not read back: {exc.describe()}")
            progress.end_step()
            return v
        for t in self.tables:
            progress.next(t)
            entry = snap.manifest["tables"].get(t)
            mine = self.checks.get(t, Checksum())
            if entry is None:
                v.failures.append(f"{t}: not in the snapshot's manifest")
                continue
            check_against_manifest(v, t, mine, entry, counts_only=self.cfg.verify == "counts")
        progress.end_step()
        v.seconds = time.perf_counter() - t0
        return v

    def complete(self, report: Report, steps) -> None:
        pass

    def close(self) -> None:
        self.snap.close()
