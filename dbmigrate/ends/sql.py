"""The SQL end (PostgreSQL, MySQL/MariaDB, SQLite): the target gets MLflow's schema at the source's
alembic revision (dbmigrate.sql_schema), then every table in foreign-key order with its ids; then
sequences / AUTO_INCREMENT move past the copied ids. Experiment ids the target's INTEGER cannot
hold get the next free ids (dbmigrate.sql_rows). Verification compares per-table checksums of what
was read with what the target holds (dbmigrate.verification.sql). Any source: a SQL database (read
in parts, in parallel from PostgreSQL), or a Reader that produces MLflow's tables (MongoDB, a
Parquet snapshot)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from dbmigrate.batch_checksum import add_columns, batch_columns
from dbmigrate.checksum import Checksum
from dbmigrate.config import Config
from dbmigrate.engine import Part, PartResult, make_parts
from dbmigrate.errors import DataError
from dbmigrate.mlflow_schema import load_rank, schema_version
from dbmigrate.readers.sql import SqlSource
from dbmigrate.report import Report, TableRow
from dbmigrate.sql_rows import (INT32_MAX, INT64_MAX, ZERO_LOSSY, IdMap, NegativeZeros, source_rows,
                                sql_experiment_map)
from dbmigrate.uri import DatabaseURI

log = logging.getLogger("dbmigrate")


class Batch(list):
    """Rows on their way to one table, with the columns they fill and the key that names a row;
    also the same values a column at a time (`cols`) and the set of Python types in each column
    (`types`), made once for the checksum and used again by the writer (PostgreSQL's binary COPY,
    the NOT NULL check)."""

    def __init__(self, rows, columns, key, cols=None, types=None):
        super().__init__(rows)
        self.columns, self.key = columns, key
        self.cols, self.types = cols, types
        self.encoded = None  # PostgreSQL: the batch as binary COPY data, b"" for text (SqlWriter.encode_copy)


class SqlEnd:
    units = "tables"
    overlap_writes = False

    def __init__(self, cfg: Config, uri: DatabaseURI):
        from dbmigrate.writers.recording import RecordingSqlWriter
        from dbmigrate.writers.sql import SqlWriter
        self.cfg, self.uri = cfg, uri
        self.sql = SqlWriter(uri, connect_timeout=cfg.connect_timeout, read_only=cfg.dry_run)
        self.writer = RecordingSqlWriter(self.sql) if cfg.dry_run else self.sql  # what the copy writes to
        self.steps_total = 7 if cfg.target_revision else 6
        self.zero_lossy = uri.kind in ZERO_LOSSY
        # PostgreSQL: a batch's COPY (the server parses and stores it, then the commit waits for
        # the WAL) runs in a thread while the next batch is read and converted; psycopg2 waits
        # on the server without holding the GIL. At most two batches are in memory.
        self.overlap_writes = uri.kind == "postgresql" and not cfg.dry_run
        # The writer's own record; this end also drops and rebuilds the keys of big PostgreSQL
        # tables around the load (defer_keys), and turns metric -0.0 into 0.0 where the engine
        # stores no negative zero (sql_rows.NegativeZeros), which the writer would refuse.
        self.capabilities = replace(self.sql.capabilities, defers_keys=uri.kind == "postgresql")
        self.parallel_limit_reason = ""
        self.is_sql = True
        self.schema = None
        self.revision = self.target_rev = None
        self.ids = IdMap({})
        self.tables: list[str] = []
        self.copy: list[str] = []
        self.src_tables: set[str] = set()
        self.counts: dict[str, int] = {}
        self.deferred: list[dict] = []
        self.source = None
        # what the parts copied (this run and, from the checkpoint catalog, an interrupted one)
        self.checks: dict[str, list] = {}
        self.server: dict[str, list] = {}  # tables copied byte for byte: checked by the servers' own checksums
        self.zero_counts: dict[str, int] = {}
        self.per_table: dict[str, list] = {}
        self.spans: dict[str, list] = {}
        self.merge_plan = None  # dbmigrate.merge.MergePlan of a --merge

    # ------------------------------------------------------------------ connect and plan
    def needs_sql_source(self, source) -> bool:
        """Whether `source` must first be staged in SQLite (dbmigrate.staging) for this end."""
        return False

    def connect(self, source, report: Report) -> None:
        cfg = self.cfg
        self.sql.ping()
        self.sql.check_charset()  # MySQL/MariaDB: utf8mb4 and a binary collation, before any write
        self.source = source
        self.is_sql = isinstance(source, SqlSource)
        if self.is_sql:
            self.schema = source.inspect()
            source.orphans = cfg.orphans
            revision = self.schema.revision
            report.snapshot = source.snapshot_id or ""
        else:
            revision = source.revision
            if revision is None:
                from dbmigrate.sql_schema import installed_head
                revision = installed_head()
                report.notes.append(f"the source was written by the mlflow-mongodb store and records no "
                                    f"MLflow schema revision; the target gets the installed MLflow's "
                                    f"newest schema ({schema_version(revision).describe()})")
            kind = self.cfg_source_kind(report)
            report.layout = {"mongodb": f"from MongoDB ({source.layout} layout)", "parquet": "from a Parquet snapshot",
                             "file": "from an MLflow FileStore"}.get(kind, f"from {source.layout}")
        self.revision = self.target_rev = revision
        self.version = schema_version(revision)
        report.mlflow, report.revision = self.version.describe(), revision
        if cfg.target_revision:  # checked before anything is written (sql_upgrade.resolve)
            from dbmigrate import sql_upgrade
            self.target_rev = sql_upgrade.resolve(cfg.target_revision, revision, self.sql.url)
            report.target_revision = self.target_rev

    @staticmethod
    def cfg_source_kind(report: Report) -> str:
        return report.source.split(":", 1)[0].split("+", 1)[0]

    def plan_step(self) -> tuple:
        return ("prepare the target schema at %s", self.version.describe())

    def plan(self, source, report: Report) -> dict:
        setup = {"source": report.source, "target": self.uri.masked, "layout": "sql", "revision": self.revision}
        if self.cfg.target_revision:
            setup["target_revision"] = self.target_rev
        cfg = self.cfg
        options = cfg.resume_options()
        if options:  # a resume must select, rewrite and merge the same way
            setup["options"] = options
        return setup

    def _target_reader(self) -> SqlSource:
        return SqlSource(self.uri, connect_timeout=self.cfg.connect_timeout, role="target").open()

    # ------------------------------------------------------------------ checkpoint hooks
    def require_empty(self) -> None:
        if self.cfg.merge:  # --merge: a target MLflow made at the source's revision, data or not
            from dbmigrate.merge import check_target
            with self._target_reader() as target:
                check_target(target, self.revision)
            return
        self.sql.prepare(self.revision, dry_run=True)

    def prepare(self) -> None:
        if self.cfg.merge:
            return  # the target's schema and rows stay as they are
        self.sql.prepare(self.revision)

    def check_resumable(self) -> None:
        from dbmigrate.errors import ConfigError
        from dbmigrate.sql_schema import inspect_target
        if inspect_target(self.sql.url).revision != self.revision:
            raise ConfigError("--resume: the target's schema is not the one the interrupted run made")

    def clear_target(self) -> None:
        self.sql.drop_mlflow_tables()

    # ------------------------------------------------------------------ parts
    def parts(self, source, state, workers: int, report: Report) -> list[Part]:
        cfg, is_sql = self.cfg, self.is_sql
        max_id = INT64_MAX if self.uri.kind == "sqlite" else INT32_MAX
        mapping = sql_experiment_map(source, max_id) if is_sql else source.plan_experiment_ids(max_id)
        self.ids = IdMap(mapping)
        if mapping:
            report.notes.append(f"{len(mapping)} experiment ids do not fit the target's INTEGER and were "
                                f"given new ids (old -> new): "
                                + ", ".join(f"{k} -> {v}" for k, v in sorted(mapping.items(), key=lambda kv: kv[1])))
            report.remapped = {str(k): v for k, v in mapping.items()}
        self.tables = tables = fk_order(self.sql, self.version.expected_tables, cfg.dry_run)
        if not is_sql and _has_table(self.sql, "trace_info"):  # (a dry run may find no schema yet: the
            # reader's default then holds, its own revision's, which is the schema prepare would make)
            source.target_has_analytics = "trace_name" in self.sql.table_columns("trace_info")
        self.src_tables = set(self.schema.tables) if is_sql else set(source.tables())
        self.copy = copy = [t for t in tables if t in self.src_tables]
        self.counts = counts = {t: ((source.count(t, raw=True) if is_sql else source.count(t)) or 0) for t in copy}
        from dbmigrate.analyze import estimate_sql_seconds
        report.estimate_seconds = estimate_sql_seconds(counts, self.uri.kind, cfg.verify,
                                                       is_sql and source.dialect == "postgresql")
        if is_sql and source.selection is None:  # a selection's closure brings every row's parents
            check_orphans_for_sql(source, self.schema, cfg, report)
        if cfg.merge:
            self.plan_merge(source, report, max_id, state)
        depth = fk_depths(self.sql, copy, cfg.dry_run)
        parts = []
        for t in copy:
            parts += make_parts(source, t, t, counts[t], workers, level=depth.get(t, 0), splittable=is_sql)
        resuming = bool(state.done_parts()) if state else False
        self.deferred = [] if cfg.merge else defer_keys(cfg, self.uri, self.sql, state, copy, counts, resuming, report)
        return parts

    def plan_merge(self, source, report: Report, max_id: int, state) -> None:
        """--merge: experiment ids matched or moved, every row compared with the target's; the
        conflicts listed (and, under --on-conflict fail, refused) before anything is written."""
        from dbmigrate import merge
        if not self.is_sql:
            from dbmigrate.errors import ConfigError
            raise ConfigError("--merge needs a SQL source (PostgreSQL, MySQL/MariaDB, SQLite)")
        plan = merge.MergePlan()
        with self._target_reader() as target:
            target.inspect()
            mapping = merge.experiment_ids(source, target, self.ids.mapping, max_id, plan)
            self.ids = IdMap(mapping)
            plan = merge.plan_merge(source, target, self.copy, self.ids, self._insertable, self.cfg.conflict_policy,
                                    self.cfg.batch_size, plan)
        self.merge_plan = plan
        self.target_selection = target.selection
        report.merge = plan.summary(self.cfg.conflict_policy)
        report.remapped = {**report.remapped, **{k: v for k, v in plan.remapped.items()}}
        if self.cfg.conflict_policy == "fail" and plan.conflicts:
            if state is not None and not state.done_parts():
                state.remove()  # refused before any write: no interrupted run to resume
            merge.refuse(plan, self.uri.masked)

    def before_copy(self, state, resumed: bool, report: Report) -> None:
        if state is not None and self.sql.journal_mode and not state.step_done(JOURNAL_STEP):
            state.mark_step(JOURNAL_STEP, self.sql.journal_mode)  # a resume gives the file back the same mode
        if self.merge_plan is not None and self.merge_plan.updates and not self.cfg.dry_run:
            from dbmigrate.merge import apply_updates
            n = apply_updates(self.sql, self.merge_plan, self.schema)
            report.notes.append(f"--on-conflict overwrite: {n} rows of the target updated to the source's values")

    def expected_rows(self) -> dict[str, int]:
        return dict(self.counts)

    def worker_job(self) -> dict:
        return {"schema": self.schema, "mapping": self.ids.mapping,
                "merge_skip": self.merge_plan.skip if self.merge_plan is not None else None}

    def attach_worker(self, source, job: dict) -> None:
        source.schema = self.schema = job["schema"]
        source.orphans = self.cfg.orphans
        self.source, self.is_sql = source, True
        self.ids = IdMap(job["mapping"])
        self.merge_skip = job.get("merge_skip")

    # ------------------------------------------------------------------ the batch path
    def account(self, part: Part) -> str:
        return part.table

    def clear_part(self, part: Part) -> int:
        # A part the interrupted run had begun starts again from nothing. (In a new run the
        # target was checked empty, and a part that fails stops the run before any rerun.)
        if not self.cfg.resume or self.cfg.merge:  # a merge target's rows are never deleted: the merge is
            return 0                                 # planned again and skips what the killed run wrote
        return self.writer.delete_part(part.table, part.part) or 0

    def _insertable(self, table: str) -> list[str] | None:
        target_cols = self.sql.table_columns(table) if _has_table(self.sql, table) else {}
        return [c for c, info in target_cols.items() if not info["generated"]] or None

    def fast_copy(self, source, part: Part, on_rows):
        """PostgreSQL -> PostgreSQL, same types, nothing to change: bytes straight through
        (dbmigrate.pgpipe), when the source declares the same shortcut."""
        table = part.table
        direct = self.direct_columns(source, table, self._insertable(table))
        if not direct:
            return None
        rows = self.sql.copy_from(table, direct, part.part, source.pg_connection,
                                  source.copy_out_sql(table, direct, part.part), on_rows=on_rows)
        log.debug("part %s: %d rows copied byte for byte", part.id, rows)
        return PartResult(part.id, part.target, table, rows=rows, notes={"server_checksum": direct})

    def direct_columns(self, source, table: str, insertable: list[str] | None) -> list[str] | None:
        """The columns to copy byte for byte, or None when rows must go through Python: another
        engine on either side, a dry run, experiment ids remapped in this table, or a column whose
        type differs between source and target."""
        from dbmigrate import pgpipe
        shortcut = self.capabilities.fast_paths & getattr(source, "fast_paths", frozenset())
        if self.cfg.dry_run or "postgresql-binary-copy" not in shortcut or not insertable:
            return None
        if source.selection is not None or source.rewriter is not None or self.cfg.merge:
            return None  # rows are chosen or changed on the way: they go through Python
        t = source.schema.tables[table]
        columns = [c.name for c in t.columns if not c.generated and c.name in insertable]
        if not columns or self.ids.rows(table, columns) is not None:
            return None
        conn = self.sql.connect()
        same = pgpipe.same_types(source.pg_connection, conn, table, columns)
        conn.commit()
        return columns if same else None

    def batches(self, source, part: Part, res: PartResult):
        """Read a batch, convert it for this target (only its columns, experiment ids remapped,
        metric -0.0 where it stores none), add it to the table's checksum, pass it on."""
        table = part.table
        zeros = NegativeZeros() if self.zero_lossy else None
        columns, reads = source_rows(source, table, self._insertable(table), self.ids, self.cfg.batch_size,
                                     zeros, part=part.part)
        key = source.schema.tables[table].pk if isinstance(source, SqlSource) else columns[:1]
        skip = (self.merge_plan.skip if self.merge_plan is not None else getattr(self, "merge_skip", None) or {}
                ).get(table)
        if skip:  # --merge: rows the target already holds (identical, merged into, or a conflict kept)
            kidx = [columns.index(k) for k in key]
            reads = ([r for r in rows if tuple(r[i] for i in kidx) not in skip] for rows in reads)
        check = Checksum()
        order = sorted(range(len(columns)), key=lambda i: columns[i])
        encode = self.overlap_writes
        # A snapshot whose rows open() proved to give its manifest's checksum, read whole and
        # unchanged: that checksum is the one of what is read here, so it is not computed again
        # (verification compares the target with it, end to end).
        known = None
        if part.part is None and not skip and not (zeros and zeros.rows(table, columns)) \
                and self.ids.rows(table, columns) is None and hasattr(source, "verified_checksum"):
            known = source.verified_checksum(table, columns)
        for rows in reads:
            cols = batch_columns(rows, len(columns))
            types = [set(map(type, c)) for c in cols]
            if known is None:
                add_columns(check, [cols[i] for i in order], [types[i] for i in order])
            else:
                check.count += len(rows)
            batch = Batch(rows, columns, key, cols, types)
            if encode:  # here, not in the thread that writes it (see overlap_writes)
                batch.encoded = self.sql.encode_copy(table, columns, batch) or b""
            yield len(rows), batch
        if known is not None:
            if check.count != known[0]:
                raise DataError(f"Read {check.count:,} rows of the snapshot's {table}, whose manifest says "
                                f"{known[0]:,}", table=table)
            check.total = known[1]
        res.checksum = (columns, check.count, check.total)
        res.notes = {"negative_zeros": zeros.count if zeros else {}}

    def write(self, part: Part, batch: Batch) -> None:
        self.writer.insert_rows(part.table, batch.columns, batch, key_columns=batch.key)

    def part_done(self, res: PartResult) -> None:
        pass

    # ------------------------------------------------------------------ bookkeeping
    def detail(self, res: PartResult) -> dict:
        return {"table": res.table, "rows": res.rows, "seconds": res.seconds, "batches": res.batches,
                "checksum": list(res.checksum) if res.checksum else None, "notes": res.notes}

    def absorb(self, detail: dict, finished: float | None = None) -> None:
        _add_result(self.checks, self.zero_counts, self.per_table, detail, self.server)
        if finished is not None:  # this run: the table's wall-clock span across its parts
            span = self.spans.setdefault(detail["table"], [finished - detail["seconds"], finished])
            span[0], span[1] = min(span[0], finished - detail["seconds"]), max(span[1], finished)

    def rows_copied(self) -> int:
        return sum(p[0] for p in self.per_table.values())

    def recorded(self) -> str:
        return f"{self.rows_copied():,} rows of {len(self.per_table)} tables would be written"

    # ------------------------------------------------------------------ after the copy
    def after_copy(self, source, state) -> None:
        pass

    def finalize_step(self) -> tuple:
        return ("keys and indexes: %s; id sequences", f"rebuild {len(self.deferred)} of " + ", ".join(
            sorted({d["table"] for d in self.deferred})) if self.deferred else "all built with the schema")

    def finalize(self, state, workers: int, progress, report: Report) -> None:
        deferred, cfg = self.deferred, self.cfg
        self.rebuild_seconds: dict[str, float] = {}
        if deferred:
            progress.start_step("keys and indexes", len(deferred), "rebuilt")
            for d in self.sql.rebuild_deferred(deferred, workers):
                self.rebuild_seconds[d["table"]] = self.rebuild_seconds.get(d["table"], 0.0) + d["seconds"]
            progress.step(len(deferred))
            progress.end_step()
            now = {(d["name"], d["sql"]) for d in self.sql.deferrable_ddl(sorted({d["table"] for d in deferred}))}
            lost = [f"{d['table']}.{d['name']} ({d['kind']})" for d in deferred if (d["name"], d["sql"]) not in now]
            if lost:  # cannot happen unless someone changed the target meanwhile; never pass silently
                raise DataError("After the load, these keys/indexes differ from the ones dropped before it: "
                                + ", ".join(lost), hint="rerun with --resume to rebuild them")
            state.mark_step("rebuilt")
        if self.zero_counts:
            report.notes.append(f"metric values of -0.0 were written as 0.0 ({self.uri.kind} stores no "
                                "negative zero; MLflow's SQL store writes 0 too): " +
                                ", ".join(f"{t}: {n}" for t, n in sorted(self.zero_counts.items())))
        for t in sorted(self.src_tables - set(self.tables) - {"alembic_version"}):
            report.skipped_tables.append({"table": t, "rows": self.source.count(t) or 0,
                                          "reason": "no such table in the target schema"})
        if getattr(self.source, "clamped", None):
            report.notes.append("infinite metric values were written as +-1.7976931348623157e308, as "
                                "MLflow's SQL store writes them: " +
                                ", ".join(f"{t}: {n}" for t, n in sorted(self.source.clamped.items())))
        report.notes += list(getattr(self.source, "notes", None) or [])  # what a file-based reader saw
        if not cfg.dry_run:
            seq = self.sql.advance_sequences(self.tables)
            if seq:
                report.notes.append("id generators moved past the copied ids: " + "; ".join(seq))
            # statistics of the tables this run filled (the copied rows are all there is)
            self.sql.analyze([t for t in self.tables if self.per_table.get(t, [0])[0]])
            note = self.sql.restore_journal((state.step_detail(JOURNAL_STEP) if state is not None else None)
                                            or self.sql.journal_mode)
            if note:
                report.notes.append(note)

    def table_rows(self) -> list[TableRow]:
        out = []
        for t in self.copy:
            rows, seconds, batches = self.per_table.get(t, [0, 0.0, 0])
            if t in self.spans:  # wall clock across the table's parts, which may run in parallel
                seconds = self.spans[t][1] - self.spans[t][0]
            seconds += getattr(self, "rebuild_seconds", {}).get(t, 0.0)  # its keys and indexes, rebuilt after the load
            out.append(TableRow(t, f"{self.uri.kind}:{t}", self.counts[t] if self.is_sql else rows, rows,
                                max(self.counts[t] - rows, 0) if self.is_sql else 0, 0, seconds,
                                "" if self.is_sql or _direct(self.source, t) else "rows rebuilt from embedded documents",
                                batches))
        return out

    def verify_step(self) -> tuple:
        return ("verify (%s): per-table checksums of what was read against the target", self.cfg.verify)

    def verify(self, source, progress, report: Report):
        from dbmigrate.verification.sql import verify_merge, verify_tables
        if self.merge_plan is not None:
            return verify_merge(self.uri, source, self.copy, self.ids, self.merge_plan, self._insertable,
                                self.cfg, progress)
        tchecks = {t: (c[0], Checksum(c[1], c[2])) for t, c in self.checks.items()}
        return verify_tables(self.uri, tchecks, self.cfg, report, source, self.ids, self.server, progress=progress)

    def complete(self, report: Report, steps) -> None:
        if self.cfg.target_revision:
            upgrade_target(self.cfg, self.sql.url, self.revision, self.target_rev, report, steps)

    def close(self) -> None:
        self.sql.close()


def upgrade_target(cfg: Config, url: str, revision: str, target_rev: str, report: Report, steps) -> None:
    """--target-revision: MLflow's own upgrade of the verified copy (see sql_upgrade)."""
    from dbmigrate import sql_upgrade
    what = f"{schema_version(revision).describe()} -> {schema_version(target_rev).describe()}"
    if target_rev == revision:
        steps("upgrade: none needed, the source is already at %s", target_rev)
    elif cfg.dry_run:
        steps("upgrade: skipped (dry run); would run MLflow's migrations %s", what)
        report.notes.append(f"dry run: the target would be upgraded {what}")
    elif report.verification is not None and not report.verification.passed:
        steps("upgrade: skipped, the copy failed verification at the source's revision")
        report.notes.append(f"the target was NOT upgraded ({what}): the copy failed verification")
    else:
        steps("upgrade the target with MLflow's migrations: %s", what)
        t0 = time.perf_counter()
        sql_upgrade.upgrade(url, revision, target_rev)
        report.notes.append(f"the target was upgraded {what} by MLflow's own migrations after the "
                            f"copy was verified at the source's revision ({time.perf_counter() - t0:.1f} s)")


def check_orphans_for_sql(source, schema, cfg: Config, report: Report) -> None:
    """Rows whose parent is missing cannot go into a SQL schema whose foreign keys refuse them:
    stop before writing (naming them), unless --orphans skip leaves them out (reported)."""
    from dbmigrate.analyze import orphan_count
    from dbmigrate.errors import DataError
    from dbmigrate.mlflow_schema import RELATIONS
    found = []
    for child, ccol, parent, pcol in RELATIONS:
        if child in schema.tables and parent in schema.tables:
            n = orphan_count(source, schema, child, ccol, parent, pcol)
            if n:
                found.append(f"{n} rows of {child} whose {parent}.{pcol} does not exist")
    if not found:
        return
    if cfg.orphans == "skip":
        report.notes.append("orphan rows left out (--orphans skip): " + "; ".join(found))
        return
    raise DataError("The source has orphan rows, which the target's foreign keys refuse: " + "; ".join(found),
                    hint="rerun with --orphans skip to leave them out (they are reported)")


def _add_result(checks, zero_counts, per_table, detail, server):
    from dbmigrate.checksum import MASK
    t = detail["table"]
    if (detail.get("notes") or {}).get("server_checksum"):
        server[t] = detail["notes"]["server_checksum"]
    if detail.get("checksum"):
        columns, count, total = detail["checksum"]
        c = checks.setdefault(t, [columns, 0, 0])
        c[1] += count
        c[2] = (c[2] + total) & MASK
    for table, n in (detail.get("notes") or {}).get("negative_zeros", {}).items():
        zero_counts[table] = zero_counts.get(table, 0) + n
    p = per_table.setdefault(t, [0, 0.0, 0])
    p[0] += detail.get("rows", 0)
    p[1] += detail.get("seconds", 0.0)
    p[2] += detail.get("batches", 0)


def _direct(source, table) -> bool:
    return source.count(table) is not None


def fk_depths(writer, tables: list[str], dry_run: bool) -> dict[str, int]:
    """Foreign-key depth of each table in the target schema (0: references no other table)."""
    import sqlalchemy as sa
    try:
        with writer.engine.connect() as conn:  # one connection, not one per table (issue 10, 9f)
            insp = sa.inspect(conn)
            refs = {t: {fk["referred_table"] for fk in insp.get_foreign_keys(t)} - {t} for t in tables}
    except Exception:  # noqa: BLE001 - a dry run against a target without the schema
        if dry_run:
            return {}
        raise
    depth: dict[str, int] = {}

    def d(t, seen=()):
        if t in depth:
            return depth[t]
        if t in seen:
            return 0
        depth[t] = 1 + max((d(r, seen + (t,)) for r in refs.get(t, ()) if r in refs), default=-1)
        return depth[t]
    for t in tables:
        d(t)
    return depth


# Tables of at least this many rows are loaded into PostgreSQL without their keys, indexes and
# foreign keys, which are rebuilt after the load (benchmarks: 3x faster than COPY with them live).
DEFER_MIN_ROWS = 100_000
JOURNAL_STEP = "sqlite journal mode"  # the target file's mode before the load (SqlWriter.restore_journal)


def defer_keys(cfg: Config, dst_uri: DatabaseURI, writer, state, copy: list[str], counts: dict,
               resuming: bool, report: Report) -> list[dict]:
    """Drop the keys/indexes/foreign keys of the big tables of a PostgreSQL target before loading.
    What is dropped is first recorded (durably) in the checkpoint catalog, so a killed run's
    --resume rebuilds it; a resumed run uses what its first run recorded."""
    import json
    if state is None or cfg.dry_run or dst_uri.kind != "postgresql":
        return []
    recorded = state.step_detail("deferred")
    if recorded is not None:
        ddl = json.loads(recorded or "[]")
    elif resuming:
        return []
    else:
        big = [t for t in copy if (counts.get(t) or 0) >= DEFER_MIN_ROWS]
        ddl = writer.deferrable_ddl(big)
        state.mark_step("deferred", json.dumps(ddl))
        writer.drop_deferred(ddl)
    if ddl and not state.step_done("rebuilt"):
        report.notes.append("loaded without their keys and indexes, rebuilt after the load: "
                            + ", ".join(sorted({d["table"] for d in ddl})) + f" ({len(ddl)} keys, indexes "
                            "and foreign keys; their seconds include the rebuild)")
        return ddl
    return []


def fk_order(writer, tables: set[str], dry_run: bool) -> list[str]:
    """Parents before children, from the target schema's own foreign keys (MLflow's newer tables
    reference each other too: endpoint_bindings -> endpoints, ...)."""
    import sqlalchemy as sa
    known = sorted(tables, key=load_rank)
    try:
        with writer.engine.connect() as conn:
            order = [t for t, _ in sa.inspect(conn).get_sorted_table_and_fkc_names() if t]
    except Exception:  # noqa: BLE001 - a dry run against a target without the schema yet
        if dry_run:
            return known
        raise
    if not order:
        return known
    rank = {t: i for i, t in enumerate(order)}
    return sorted(tables, key=lambda t: (rank.get(t, len(rank)), load_rank(t)))


def _has_table(writer, table) -> bool:
    try:
        return table in writer.table_names()
    except Exception:  # noqa: BLE001
        return False
