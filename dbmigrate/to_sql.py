"""Migrate into a SQL target (PostgreSQL, MySQL/MariaDB, SQLite) from a SQL or MongoDB source.

The target gets MLflow's schema at the source's alembic revision (dbmigrate.sql_schema), then
every table in foreign-key order with its ids; then sequences / AUTO_INCREMENT move past the
copied ids. Experiment ids the target's INTEGER cannot hold (an 18-digit FileStore id from
SQLite, the mlflow-mongodb store's 39-digit ids) get the next free ids; the mapping is in the
report and applied to every experiment_id column. Verification compares per-table checksums of
what was read with what the target holds.
"""

from __future__ import annotations

import logging
import time
from operator import itemgetter

from dbmigrate.checksum import Checksum
from dbmigrate.errors import DataError
from dbmigrate.config import Config
from dbmigrate.mlflow_schema import load_rank, schema_version
from dbmigrate.readers.sql import SqlSource
from dbmigrate.report import Report, TableRow
from dbmigrate.uri import DatabaseURI
from dbmigrate.sql_rows import (INT32_MAX, INT64_MAX, ZERO_LOSSY, IdMap, NegativeZeros, source_rows,
                                 sql_experiment_map)
from dbmigrate.verification.sql import verify_tables

log = logging.getLogger("dbmigrate")

class SqlRunner:
    """Copies parts into a SQL target: in a worker process with its own connections (reading the
    exported PostgreSQL snapshot), or inline with the main process's."""

    def __init__(self, cfg: Config, source, writer, ids: IdMap, zero_lossy: bool):
        self.cfg, self.source, self.writer, self.ids = cfg, source, writer, ids
        self.zero_lossy = zero_lossy

    @classmethod
    def in_worker(cls, cfg_fields: dict, src_raw: str, snapshot: str | None, schema, dst_raw: str,
                  mapping: dict, zero_lossy: bool) -> "SqlRunner":
        from dbmigrate.uri import parse_uri
        from dbmigrate.writers.sql import SqlWriter
        cfg = Config(**cfg_fields)
        source = SqlSource(parse_uri(src_raw, role="source"), connect_timeout=cfg.connect_timeout)
        source.open(snapshot_id=snapshot)
        source.schema = schema
        source.orphans = cfg.orphans
        writer = SqlWriter(parse_uri(dst_raw, role="target"), connect_timeout=cfg.connect_timeout,
                           read_only=cfg.dry_run)
        return cls(cfg, source, writer, IdMap(mapping), zero_lossy)

    def run(self, part, progress):
        from dbmigrate.engine import PartResult
        t0 = time.perf_counter()
        table = part.table
        res = PartResult(part.id, part.target, table, account=table)
        target_cols = self.writer.table_columns(table) if _has_table(self.writer, table) else {}
        insertable = [c for c, info in target_cols.items() if not info["generated"]] or None
        zeros = NegativeZeros() if self.zero_lossy else None
        if self.cfg.resume and not self.cfg.dry_run:
            # A part the interrupted run had begun starts again from nothing. (In a new run the
            # target was checked empty, and a part that fails stops the run before any rerun.)
            self.writer.delete_part(table, part.part)
        direct = self.direct_columns(table, insertable)
        if direct:  # PostgreSQL -> PostgreSQL, same types, nothing to change: bytes straight through
            res.rows = res.written = self.writer.copy_from(
                table, direct, part.part, self.source._conn, self.source.copy_out_sql(table, direct, part.part),
                on_rows=lambda n: progress(table, n))
            res.batches = 1
            res.seconds = time.perf_counter() - t0
            log.debug("part %s: %d rows copied byte for byte in %.2f s", part.id, res.rows, res.seconds)
            res.notes = {"server_checksum": direct}
            return res
        columns, batches = source_rows(self.source, table, insertable, self.ids, self.cfg.batch_size, zeros,
                                       part=part.part)
        key = self.source.schema.tables[table].pk if isinstance(self.source, SqlSource) else columns[:1]
        check = Checksum()
        order = sorted(range(len(columns)), key=lambda i: columns[i])
        canonical = itemgetter(*order) if len(order) > 1 else (lambda r: (r[order[0]],))
        add = check.add
        for rows in batches:
            for r in rows:
                add(canonical(r))
            if not self.cfg.dry_run:
                self.writer.insert_rows(table, columns, rows, key_columns=key)
            res.rows += len(rows)
            res.batches += 1
            progress(table, len(rows))
        res.written = res.rows
        res.seconds = time.perf_counter() - t0
        res.checksum = (columns, check.count, check.total)
        res.notes = {"negative_zeros": zeros.count if zeros else {}}
        return res

    def direct_columns(self, table: str, insertable: list[str] | None) -> list[str] | None:
        """The columns to copy byte for byte (dbmigrate.pgpipe), or None when rows must go
        through Python: another engine on either side, a dry run, experiment ids remapped in
        this table, or a column whose type differs between source and target."""
        from dbmigrate import pgpipe
        if (self.cfg.dry_run or self.writer.dialect != "postgresql" or not isinstance(self.source, SqlSource)
                or self.source.dialect != "postgresql" or not insertable):
            return None
        t = self.source.schema.tables[table]
        columns = [c.name for c in t.columns if not c.generated and c.name in insertable]
        if not columns or self.ids.rows(table, columns) is not None:
            return None
        conn = self.writer.connect()
        same = pgpipe.same_types(self.source._conn, conn, table, columns)
        conn.commit()
        return columns if same else None


def migrate_to_sql(cfg: Config, src_uri: DatabaseURI, dst_uri: DatabaseURI, report: Report, steps) -> None:
    from dbmigrate.engine import levels, make_parts, run_parts
    from dbmigrate.progress import open_progress
    from dbmigrate.writers.sql import SqlWriter
    source = writer = state = None
    progress = open_progress(cfg.progress)
    try:
        steps("connect: source %s, target %s", src_uri.masked, dst_uri.masked)
        from dbmigrate.backends import open_source
        source = open_source(cfg, src_uri)
        writer = SqlWriter(dst_uri, connect_timeout=cfg.connect_timeout, read_only=cfg.dry_run)
        writer.ping()
        writer.check_charset()  # MySQL/MariaDB: utf8mb4 and a binary collation, before any write
        is_sql = isinstance(source, SqlSource)
        if is_sql:
            schema = source.inspect()
            source.orphans = cfg.orphans
            revision = schema.revision
            report.snapshot = source.snapshot_id or ""
        else:
            schema = None
            revision = source.revision
            if revision is None:
                from dbmigrate.sql_schema import installed_head
                revision = installed_head()
                report.notes.append(f"the source was written by the mlflow-mongodb store and records no "
                                    f"MLflow schema revision; the target gets the installed MLflow's "
                                    f"newest schema ({schema_version(revision).describe()})")
            report.layout = f"from MongoDB ({source.layout} layout)"
        version = schema_version(revision)
        report.mlflow, report.revision = version.describe(), revision
        setup = {"source": src_uri.masked, "target": dst_uri.masked, "layout": "sql", "revision": revision}
        target_rev = revision
        if cfg.target_revision:  # checked before anything is written (sql_upgrade.resolve)
            from dbmigrate import sql_upgrade
            target_rev = sql_upgrade.resolve(cfg.target_revision, revision, writer.url)
            report.target_revision = target_rev
            setup["target_revision"] = target_rev

        steps("prepare the target schema at %s", version.describe())
        state = open_sql_state(cfg, dst_uri, setup, writer, revision)  # a dry run: the same checks, no writes

        max_id = INT64_MAX if dst_uri.kind == "sqlite" else INT32_MAX
        mapping = sql_experiment_map(source, max_id) if is_sql else source.plan_experiment_ids(max_id)
        ids = IdMap(mapping)
        if mapping:
            report.notes.append(f"{len(mapping)} experiment ids do not fit the target's INTEGER and were "
                                f"given new ids (old -> new): "
                                + ", ".join(f"{k} -> {v}" for k, v in sorted(mapping.items(), key=lambda kv: kv[1])))
            report.remapped = {str(k): v for k, v in mapping.items()}

        tables = fk_order(writer, version.expected_tables, cfg.dry_run)
        if not is_sql:
            source.target_has_analytics = "trace_name" in (writer.table_columns("trace_info") if
                                                            "trace_info" in tables else {})
        src_tables = set(schema.tables) if is_sql else set(source.tables())
        copy = [t for t in tables if t in src_tables]
        counts = {t: ((source.count(t, raw=True) if is_sql else source.count(t)) or 0) for t in copy}
        from dbmigrate.analyze import estimate_sql_seconds
        report.estimate_seconds = estimate_sql_seconds(counts, dst_uri.kind, cfg.verify,
                                                       is_sql and source.dialect == "postgresql")
        if is_sql:
            check_orphans_for_sql(source, schema, cfg, report)
        workers = cfg.effective_workers if is_sql and source.dialect == "postgresql" else 1
        depth = fk_depths(writer, copy, cfg.dry_run)
        parts = []
        for t in copy:
            parts += make_parts(source, t, t, counts[t], workers, level=depth.get(t, 0), splittable=is_sql)
        done = state.done_parts() if state else set()
        if state:
            state.register(parts)
        pending = [p for p in parts if p.id not in done]
        deferred = defer_keys(cfg, dst_uri, writer, state, copy, counts, bool(done), report)
        steps("copy %d tables in %d parts (%d to do, %d worker%s)", len(copy), len(parts), len(pending),
              workers, "s" if workers != 1 else "")
        checks: dict[str, list] = {}
        server: dict[str, list] = {}  # tables copied byte for byte: checked by the servers' own checksums
        zero_counts: dict[str, int] = {}
        per_table: dict[str, list] = {}
        if state:
            for detail in state.details():
                _add_result(checks, zero_counts, per_table, detail, server)
        progress.start_copy(parts, counts, state.part_rows() if state else {})
        spans: dict[str, list] = {}

        def on_done(part, res):
            detail = {"table": part.table, "rows": res.rows, "seconds": res.seconds, "batches": res.batches,
                      "checksum": list(res.checksum) if res.checksum else None, "notes": res.notes}
            _add_result(checks, zero_counts, per_table, detail, server)
            progress.part_done(part.id, res.rows)
            end = time.perf_counter()
            span = spans.setdefault(part.table, [end - res.seconds, end])
            span[0], span[1] = min(span[0], end - res.seconds), max(span[1], end)
            if state:
                state.mark_done(part.id, res.rows, res.seconds, detail)

        inline = SqlRunner(cfg, source, writer, ids, dst_uri.kind in ZERO_LOSSY)
        args = (cfg.as_dict(), src_uri.raw, source.snapshot_id if is_sql and source.dialect == "postgresql"
                else None, schema, dst_uri.raw, mapping, dst_uri.kind in ZERO_LOSSY)
        try:
            for level in levels(pending):
                run_parts(level, SqlRunner.in_worker, args, workers, on_done, progress.advance, inline_runner=inline)
        finally:
            progress.end_copy()
        report.copy_rows = progress.this_run
        rebuild_seconds: dict[str, float] = {}
        steps("keys and indexes: %s; id sequences", f"rebuild {len(deferred)} of " + ", ".join(
            sorted({d["table"] for d in deferred})) if deferred else "all built with the schema")
        if deferred:
            progress.start_step("keys and indexes", len(deferred), "rebuilt")
            for d in writer.rebuild_deferred(deferred, workers):
                rebuild_seconds[d["table"]] = rebuild_seconds.get(d["table"], 0.0) + d["seconds"]
            progress.step(len(deferred))
            progress.end_step()
            now = {(d["name"], d["sql"]) for d in writer.deferrable_ddl(sorted({d["table"] for d in deferred}))}
            lost = [f"{d['table']}.{d['name']} ({d['kind']})" for d in deferred if (d["name"], d["sql"]) not in now]
            if lost:  # cannot happen unless someone changed the target meanwhile; never pass silently
                raise DataError("After the load, these keys/indexes differ from the ones dropped before it: "
                                + ", ".join(lost), hint="rerun with --resume to rebuild them")
            state.mark_step("rebuilt")
        for t in copy:
            rows, seconds, batches = per_table.get(t, [0, 0.0, 0])
            if t in spans:  # wall clock across the table's parts, which may run in parallel
                seconds = spans[t][1] - spans[t][0]
            seconds += rebuild_seconds.get(t, 0.0)  # its keys and indexes, rebuilt after the load
            report.tables.append(TableRow(t, f"{dst_uri.kind}:{t}", counts[t] if is_sql else rows, rows,
                                          max(counts[t] - rows, 0) if is_sql else 0, 0, seconds,
                                          "" if is_sql or _direct(source, t) else "rows rebuilt from embedded documents",
                                          batches))
        if zero_counts:
            report.notes.append(f"metric values of -0.0 were written as 0.0 ({dst_uri.kind} stores no "
                                "negative zero; MLflow's SQL store writes 0 too): " +
                                ", ".join(f"{t}: {n}" for t, n in sorted(zero_counts.items())))
        for t in sorted(src_tables - set(tables) - {"alembic_version"}):
            report.skipped_tables.append({"table": t, "rows": source.count(t) or 0,
                                          "reason": "no such table in the target schema"})
        if getattr(source, "clamped", None):
            report.notes.append("infinite metric values were written as +-1.7976931348623157e308, as "
                                "MLflow's SQL store writes them: " +
                                ", ".join(f"{t}: {n}" for t, n in sorted(source.clamped.items())))
        if done:
            report.notes.append(f"resumed: {len(done)} of {len(parts)} parts were copied by the interrupted "
                                "run (at its snapshot) and kept; the others were copied now")
        if not cfg.dry_run:
            seq = writer.advance_sequences(tables)
            if seq:
                report.notes.append("id generators moved past the copied ids: " + "; ".join(seq))
            writer.analyze()

        if cfg.dry_run or cfg.verify == "none":
            steps("verify: skipped (%s)", "dry run" if cfg.dry_run else "--verify none")
        else:
            steps("verify (%s): per-table checksums of what was read against the target", cfg.verify)
            tchecks = {t: (c[0], Checksum(c[1], c[2])) for t, c in checks.items()}
            report.verification = verify_tables(dst_uri, tchecks, cfg, report, source, ids, server,
                                                    progress=progress)
        if cfg.target_revision:
            upgrade_target(cfg, writer.url, revision, target_rev, report, steps)
        if state:
            state.mark_step("complete")
        steps("done")
    finally:
        progress.close()
        if report.copy_rows is None:  # interrupted or stopped: the rows of the parts it finished
            report.copy_rows = progress.this_run
        if state is not None:
            state.close()
        if source is not None:
            source.close()
        if writer is not None:
            writer.close()


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


def open_sql_state(cfg: Config, dst_uri: DatabaseURI, setup: dict, writer, revision: str):
    """The checkpoint catalog for a SQL target: new (schema made or checked), resumed, restarted."""
    from dbmigrate.errors import ConfigError
    from dbmigrate.sql_schema import inspect_target
    from dbmigrate.state import open_checkpoint

    def check_resumable():
        if inspect_target(writer.url).revision != revision:
            raise ConfigError("--resume: the target's schema is not the one the interrupted run made")

    return open_checkpoint(cfg, dst_uri.masked, setup, check_resumable=check_resumable,
                           clear_target=writer.drop_mlflow_tables,
                           require_empty=lambda: writer.prepare(revision, dry_run=True),
                           prepare=lambda: writer.prepare(revision))


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


