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
from dbmigrate.report import Check, Report, TableRow, Verification
from dbmigrate.uri import DatabaseURI

log = logging.getLogger("dbmigrate")

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


class IdMap:
    """Experiment ids the target cannot hold, and their new values."""

    def __init__(self, mapping: dict):
        self.mapping = {int(k) if str(k).lstrip("-").isdigit() else k: v for k, v in mapping.items()}
        self.by_str = {str(k): v for k, v in mapping.items()}

    def __bool__(self):
        return bool(self.mapping)

    def rows(self, table: str, columns: list[str]):
        """A function rewriting experiment ids in rows of `table`, or None when nothing changes."""
        if not self.mapping:
            return None
        if "experiment_id" in columns:
            i = columns.index("experiment_id")
            m = self.mapping

            def fix(rows):
                return [r if r[i] not in m else r[:i] + (m[r[i]],) + r[i + 1:] for r in rows]
            return fix
        if table == "entity_associations" and {"source_type", "source_id"} <= set(columns):
            st, si = columns.index("source_type"), columns.index("source_id")
            dt, di = columns.index("destination_type"), columns.index("destination_id")
            by = self.by_str

            def fix_assoc(rows):
                out = []
                for r in rows:
                    r = list(r)
                    if r[st] == "experiment" and r[si] in by:
                        r[si] = str(by[r[si]])
                    if r[dt] == "experiment" and r[di] in by:
                        r[di] = str(by[r[di]])
                    out.append(tuple(r))
                return out
            return fix_assoc
        return None


def sql_experiment_map(source: SqlSource, max_id: int) -> dict:
    rows = source.query(f"SELECT {source.q('experiment_id')}, {source.q('creation_time')} FROM "
                        f"{source.q('experiments')}")
    fits = [r[0] for r in rows if 0 <= r[0] <= max_id]
    nxt = max(fits, default=0) + 1
    out = {}
    for exp_id, _ in sorted((r for r in rows if not 0 <= r[0] <= max_id), key=lambda r: (r[1] or 0, r[0])):
        out[exp_id] = nxt
        nxt += 1
    return out


def open_source(cfg: Config, uri: DatabaseURI):
    if uri.kind == "mongodb":
        from dbmigrate.readers.mongo import MongoSource
        return MongoSource(uri, connect_timeout=cfg.connect_timeout).open()
    return SqlSource(uri, connect_timeout=cfg.connect_timeout).open()


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
            report.verification = verify_sql_target(dst_uri, tchecks, cfg, report, source, ids, server,
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


# Metric value columns: a -0.0 there becomes 0.0 on SQLite and MySQL/MariaDB, which store no
# negative zero. MLflow's own SQL store never keeps -0.0 either (even PostgreSQL gets 0 from it);
# the change is counted and reported. A -0.0 in any other column is refused by the writer, by name.
ZERO_LOSSY = ("sqlite", "mysql")
METRIC_VALUE_COLUMNS = {"metrics": "value", "latest_metrics": "value", "logged_model_metrics": "metric_value"}


class NegativeZeros:
    def __init__(self):
        self.count: dict[str, int] = {}

    def rows(self, table: str, columns: list[str]):
        col = METRIC_VALUE_COLUMNS.get(table)
        if col not in columns:
            return None
        i = columns.index(col)

        def fix(rows):
            out = []
            for r in rows:
                v = r[i]
                if type(v) is float and v == 0.0 and str(v)[0] == "-":
                    r = r[:i] + (0.0,) + r[i + 1:]
                    self.count[table] = self.count.get(table, 0) + 1
                out.append(r)
            return out
        return fix


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


def source_rows(source, table: str, wanted: list[str] | None, ids: IdMap, batch_size: int,
                zeros: NegativeZeros | None = None, part: tuple | None = None):
    """(columns, batches) of `table` as the target should get them: only columns the target
    has (`wanted`, None = all), experiment ids remapped, metric -0.0 as 0.0 for SQLite."""
    if isinstance(source, SqlSource):
        t = source.schema.tables[table]
        produced = [c.name for c in t.columns if not c.generated]
        columns = [c for c in produced if wanted is None or c in wanted]
        batches = source.stream(table, columns, batch_size, part=part)
    else:
        produced, batches = source.produce(table, batch_size)
        if not produced:  # an empty collection names no fields: the table's rows have the target's columns
            return list(wanted or []), iter(())
        columns = [c for c in produced if wanted is None or c in wanted]
        if columns != produced:
            idx = [produced.index(c) for c in columns]
            batches = ([tuple(r[i] for i in idx) for r in b] for b in batches)
    for fix in (ids.rows(table, columns), zeros.rows(table, columns) if zeros else None):
        if fix:
            batches = map(fix, batches)
    return columns, batches


def _has_table(writer, table) -> bool:
    try:
        return table in writer.table_names()
    except Exception:  # noqa: BLE001
        return False


def verify_sql_target(dst_uri: DatabaseURI, checks: dict, cfg: Config, report: Report,
                      source=None, ids: IdMap | None = None, server: dict | None = None,
                      progress=None) -> Verification:
    """Count and checksum every table on the target (read in its own snapshot) against the rows
    read from the source; name the differing rows of a table whose checksum differs. Tables in
    `server` (copied byte for byte, PostgreSQL -> PostgreSQL) are checksummed by both servers."""
    from dbmigrate.progress import Progress
    progress = progress or Progress()
    progress.start_step(f"verify ({cfg.verify})", len(set(checks) | set(server or {})), "tables")
    t0 = time.perf_counter()
    v = Verification(level=cfg.verify)
    target = SqlSource(dst_uri, connect_timeout=cfg.connect_timeout, role="target").open()
    try:
        tschema = target.inspect()
        checks = dict(checks)
        for table, columns in (server or {}).items():
            progress.next(table)
            checks.pop(table, None)
            if not server_verify(source, target, table, columns, v, cfg, ids):
                # servers of different versions: add up the source's rows here instead
                checks[table] = source_checksum(source, table, columns, ids or IdMap({}), cfg.batch_size)
        for table, (columns, expected) in checks.items():
            progress.next(table)
            cols = sorted(columns)
            got = Checksum()
            for rows in target.stream(table, cols, cfg.batch_size):
                for r in rows:
                    got.add(r)
            same = (got.count, got.total) == (expected.count, expected.total)
            v.counts.append(Check(f"{table}", got.count == expected.count,
                                  f"source {expected.count:,}, target {got.count:,}"))
            v.checksums.append({"name": table, "table": table, "source": str(expected), "target": str(got),
                                "match": same, "rows": expected.count})
            if not same:
                if source is not None and cfg.verify in ("sample", "full"):
                    v.failures += diff_rows(source, target, table, columns, tschema.tables[table].pk,
                                            ids or IdMap({}), cfg.batch_size)
                else:
                    v.failures.append(f"{table}: checksum of the source rows ({expected}) differs from the "
                                      f"target's ({got})")
    finally:
        target.close()
        progress.end_step()
    v.seconds = time.perf_counter() - t0
    return v


def server_verify(source, target, table: str, columns: list[str], v: Verification, cfg: Config,
                  ids: IdMap | None) -> bool:
    """Both PostgreSQL servers checksum the table's rows (dbmigrate.pgpipe.server_checksum), the
    source in the migration's snapshot, at once. False when they are of different major versions
    (their text forms of a value may differ), so the caller adds up the source's rows itself."""
    from concurrent.futures import ThreadPoolExecutor
    from dbmigrate import pgpipe
    if pgpipe.server_major(source._conn) != pgpipe.server_major(target._conn):
        return False
    with ThreadPoolExecutor(max_workers=2) as pool:
        mine = pool.submit(pgpipe.server_checksum, source._conn, *source.select_sql(table, columns))
        theirs = pool.submit(pgpipe.server_checksum, target._conn, *target.select_sql(table, columns))
        (n_src, sum_src), (n_dst, sum_dst) = mine.result(), theirs.result()
    same = (n_src, sum_src) == (n_dst, sum_dst)
    v.counts.append(Check(table, n_src == n_dst, f"source {n_src:,}, target {n_dst:,}"))
    v.checksums.append({"name": table, "table": table, "source": f"{n_src}:{sum_src} (server md5)",
                        "target": f"{n_dst}:{sum_dst} (server md5)", "match": same, "rows": n_src})
    if not same:
        if cfg.verify in ("sample", "full"):
            v.failures += diff_rows(source, target, table, columns, target.schema.tables[table].pk,
                                    ids or IdMap({}), cfg.batch_size)
        else:
            v.failures.append(f"{table}: the servers' checksums differ (source {n_src:,} rows {sum_src}, "
                              f"target {n_dst:,} rows {sum_dst})")
    return True


MAX_DIFF_ROWS = 500_000
MAX_DIFFS = 50


def diff_rows(source, target, table, columns, pk, ids: IdMap, batch_size) -> list[str]:
    """Row-by-row differences of one table (both sides keyed by the primary key)."""
    from dbmigrate.compare import same_value, show
    if target.count(table) > MAX_DIFF_ROWS:
        return [f"{table}: checksums differ; the table is too large to list its differing rows "
                f"(more than {MAX_DIFF_ROWS:,})"]
    key = [c for c in pk if c in columns] or columns
    kidx = [columns.index(k) for k in key]

    def keyed(batches):
        out = {}
        for b in batches:
            for r in b:
                k = tuple(r[i] for i in kidx)
                out[k[0] if len(k) == 1 else k] = r
        return out
    _, sb = source_rows(source, table, columns, ids, batch_size,
                        NegativeZeros() if target.dialect in ZERO_LOSSY else None)
    left = keyed(sb)
    right = keyed(target.stream(table, columns, batch_size))
    out = []
    for k in sorted(set(left) | set(right), key=repr):
        a, b = left.get(k), right.get(k)
        if a is None:
            out.append(f"{table} key {k!r}: row on the target that the source does not have")
        elif b is None:
            out.append(f"{table} key {k!r}: row missing on the target")
        else:
            for c, x, y in zip(columns, a, b):
                if not same_value(x, y):
                    out.append(f"{table} key {k!r} field {c}: source {show(x)}, target {show(y)}")
        if len(out) >= MAX_DIFFS:
            out.append(f"{table}: ... (first {MAX_DIFFS} differences shown)")
            break
    return out


def verify_sql(cfg: Config, src_uri: DatabaseURI, dst_uri: DatabaseURI, report: Report, steps) -> None:
    """`dbmigrate verify` with a SQL target: every table's rows, read afresh on both sides."""
    from dbmigrate import pgpipe
    source = open_source(cfg, src_uri)
    target = None
    try:
        steps("read the source schema")
        if isinstance(source, SqlSource):
            revision = source.inspect().revision
            source.orphans = cfg.orphans
            report.snapshot = source.snapshot_id or ""
        else:
            revision = source.revision
        target = SqlSource(dst_uri, connect_timeout=cfg.connect_timeout, role="target").open()
        tschema = target.inspect()
        if revision is None:
            revision = tschema.revision
        report.mlflow, report.revision = schema_version(revision).describe(), revision
        if tschema.revision != revision:
            from dbmigrate.errors import SchemaError
            raise SchemaError(f"The target is at {schema_version(tschema.revision).describe()}, the source at "
                              f"{schema_version(revision).describe()}: they cannot hold the same rows")
        max_id = INT64_MAX if dst_uri.kind == "sqlite" else INT32_MAX
        ids = IdMap(sql_experiment_map(source, max_id) if isinstance(source, SqlSource)
                    else source.plan_experiment_ids(max_id))
        if not isinstance(source, SqlSource):
            source.target_has_analytics = "trace_name" in tschema.tables["trace_info"].column_names \
                if "trace_info" in tschema.tables else True
        steps("verify (%s): per-table checksums, source against target", cfg.verify)
        have = set(source.schema.tables) if isinstance(source, SqlSource) else set(source.tables())
        checks, server = {}, {}
        same_pg = (isinstance(source, SqlSource) and source.dialect == "postgresql"
                   and dst_uri.kind == "postgresql" and not ids)
        for table in sorted(schema_version(revision).expected_tables, key=load_rank):
            if table not in have:
                continue
            wanted = [c.name for c in tschema.tables[table].columns if not c.generated]
            if same_pg and pgpipe.same_types(source._conn, target._conn, table, wanted):
                server[table] = wanted  # both servers checksum their own rows
                continue
            checks[table] = source_checksum(source, table, wanted, ids, cfg.batch_size,
                                            NegativeZeros() if dst_uri.kind in ZERO_LOSSY else None)
        target.close()
        report.verification = verify_sql_target(dst_uri, checks, cfg, report, source, ids, server)
        steps("done")
    finally:
        if target is not None:
            target.close()
        source.close()


def source_checksum(source, table: str, wanted: list[str], ids: IdMap, batch_size: int,
                    zeros: NegativeZeros | None = None) -> tuple[list[str], Checksum]:
    """(columns, Checksum) of the source's rows of `table` as the target should hold them."""
    columns, batches = source_rows(source, table, wanted, ids, batch_size, zeros)
    c = Checksum()
    order = sorted(range(len(columns)), key=lambda i: columns[i])
    for b in batches:
        for r in b:
            c.add(tuple(r[i] for i in order))
    return columns, c
