"""The `sync` command: bring a SQL target that an earlier migration filled back to the source's state,
copying only what changed (issue 14, item 4).

Every table is cut into key ranges: rows of a run-keyed table (runs, metrics, params, tags,
latest_metrics) by the last hex digits of `run_uuid`, of a trace-keyed table by those of its
request/trace id (a suffix of a random id spreads evenly and means the same on every engine, with
no collation in play), every other table as one range. Each side computes, per range, the row count
and an order-independent checksum: PostgreSQL -> PostgreSQL, both servers hash their own rows (md5 of
the row's text, dbmigrate.pgpipe's form) in one GROUP BY per table; otherwise dbmigrate.checksum over
the rows read. Only ranges whose pairs differ are read on both sides and compared by primary key:
rows only the target holds are deleted, rows that differ are updated (a run that ended keeps its
children), rows only the source holds are inserted. All writes go in one transaction (deletes
children first, then updates and inserts parents first), so a reader of the target never sees half
a change; then id sequences move past the copied ids. Experiment ids the first migration remapped
are remapped the same way (sql_rows.sql_experiment_map is deterministic).
"""

from __future__ import annotations

import logging
import time

from dbmigrate.checksum import MASK, Checksum, row_hash
from dbmigrate.config import Config
from dbmigrate.errors import ConfigError, MigrationError
from dbmigrate.report import Report
from dbmigrate.uri import mask_uri

log = logging.getLogger("dbmigrate")

SQL_KINDS = ("postgresql", "mysql", "sqlite")
# The column whose suffix names a row's range; tables not listed are one range.
RANGE_COLUMNS = {"runs": "run_uuid", "metrics": "run_uuid", "latest_metrics": "run_uuid", "params": "run_uuid",
                 "tags": "run_uuid", "trace_info": "request_id", "trace_tags": "request_id",
                 "trace_request_metadata": "request_id", "spans": "trace_id", "assessments": "trace_id"}
ROWS_PER_RANGE = 2000  # a range is at most 16x this, at least 1/16 of it (suffixes of 1-3 hex digits)
MAX_SUFFIX = 3


def suffix_len(rows: int) -> int:
    k = 0
    while k < MAX_SUFFIX and rows / (16 ** k) > ROWS_PER_RANGE:
        k += 1
    return k


def suffix_sql(dialect: str, column_sql: str, k: int) -> str:
    if k == 0:
        return "''"
    if dialect == "sqlite":
        return f"substr({column_sql}, -{k})"
    return f"right({column_sql}, {k})" if dialect == "postgresql" else f"RIGHT({column_sql}, {k})"


def _bucket(value, k: int) -> str:
    return "" if k == 0 or value is None else str(value)[-k:]


class _Side:
    """One end's reads for the sync: a SqlSource (read-only, in its snapshot)."""

    def __init__(self, reader, fixes=()):
        self.r, self.fixes = reader, [f for f in fixes if f]

    def fixed(self, rows):
        for f in self.fixes:
            rows = f(rows)
        return rows

    def where_ranges(self, table: str, col: str | None, k: int, buckets: list[str] | None) -> tuple[str, tuple]:
        """The orphan condition (source) and, with `buckets`, only the rows of those ranges."""
        cond, params = self.r.part_condition(None, table)
        if buckets is not None and k:
            p = self.r._param
            expr = suffix_sql(self.r.dialect, f"{self.r.q(table)}.{self.r.q(col)}", k)
            cond = " AND ".join(c for c in (cond, f"{expr} IN ({', '.join([p] * len(buckets))})") if c)
            params = tuple(params) + tuple(buckets)
        return cond, tuple(params)

    def rows(self, table: str, cols: list[str], col: str | None, k: int, buckets: list[str] | None,
             batch_size: int):
        cond, params = self.where_ranges(table, col, k, buckets)
        sql = self.r._select(table, cols) + (f" WHERE {cond}" if cond else "")
        normalize = self.r._normalizer(table, cols)
        for batch in self.r._stream_one(table, cols, sql, params, batch_size, normalize):
            yield self.fixed(batch)

    def python_checksums(self, table, cols, col, k, batch_size) -> dict[str, tuple]:
        """Per range: (rows, sum of row hashes) over the canonical rows, columns in name order."""
        order = sorted(range(len(cols)), key=lambda i: cols[i])
        ki = cols.index(col) if col else None
        out: dict[str, Checksum] = {}
        for batch in self.rows(table, cols, col, k, None, batch_size):
            for r in batch:
                b = _bucket(r[ki], k) if ki is not None else ""
                c = out.get(b)
                if c is None:
                    c = out[b] = Checksum()
                c.count += 1
                c.total = (c.total + row_hash([r[i] for i in order])) & MASK
        return {b: (c.count, c.total) for b, c in out.items()}

    def server_checksums(self, table, cols, col, k) -> dict[str, tuple]:
        """PostgreSQL: per range, (rows, sum of md5 prefixes) computed by the server."""
        from dbmigrate.pgpipe import TEXT_SETTINGS
        q = self.r.q
        cond, params = self.where_ranges(table, col, k, None)
        inner = (f"SELECT {', '.join(q(c) for c in sorted(cols))} FROM {q(table)}"
                 + (f" WHERE {cond}" if cond else ""))
        expr = suffix_sql("postgresql", f"dbm_r.{q(col)}", k) if col else "''"
        cur = self.r.pg_connection.cursor()
        try:
            cur.execute("SAVEPOINT dbm_sync")
            for s in TEXT_SETTINGS:
                cur.execute(s)
            cur.execute(f"SELECT {expr}, count(*), sum(('x' || left(md5(dbm_r::text), 16))::bit(64)::bigint::numeric)"
                        f"::text FROM ({inner}) dbm_r GROUP BY 1", params or None)
            out = {b or "": (int(n), s) for b, n, s in cur.fetchall()}
            cur.execute("ROLLBACK TO SAVEPOINT dbm_sync")
            cur.execute("RELEASE SAVEPOINT dbm_sync")
        finally:
            cur.close()
        return out


def sync(cfg: Config) -> Report:
    """Copy what changed on the source since an earlier migration into the SQL target. Never raises
    for data problems: the report carries the error and a non-zero exit code."""
    from dbmigrate.pipeline import finish, open_endpoints
    t0 = time.perf_counter()
    report = Report(command="sync", source=mask_uri(cfg.source), target=mask_uri(cfg.target), layout="")
    try:
        src_uri, dst_uri = open_endpoints(cfg)
        if src_uri.kind not in SQL_KINDS or dst_uri.kind not in SQL_KINDS:
            raise ConfigError(f"sync works from a SQL source to a SQL target (PostgreSQL, MySQL/MariaDB, SQLite); "
                              f"here the source is {src_uri.kind} and the target {dst_uri.kind}",
                              hint="for other ends run `dbmigrate migrate` into a new target")
        report.layout = f"SQL ({dst_uri.kind})"
        _run(cfg, src_uri, dst_uri, report)
    except MigrationError as exc:
        report.error, report.exit_code = exc.describe(), exc.exit_code
        log.error("%s", report.error)
    return finish(report, t0)


def _run(cfg: Config, src_uri, dst_uri, report: Report) -> None:
    from dbmigrate.ends.sql import fk_order
    from dbmigrate.readers.sql import SqlSource
    from dbmigrate.sql_rows import INT32_MAX, INT64_MAX, ZERO_LOSSY, IdMap, NegativeZeros, sql_experiment_map
    from dbmigrate.sql_schema import inspect_target
    from dbmigrate.writers.sql import SqlWriter

    source = SqlSource(src_uri, connect_timeout=cfg.connect_timeout).open()
    writer = SqlWriter(dst_uri, connect_timeout=cfg.connect_timeout)
    target = None
    try:
        schema = source.inspect()
        source.orphans = cfg.orphans
        report.mlflow, report.revision, report.snapshot = schema.version.describe(), schema.revision, \
            source.snapshot_id or ""
        writer.ping()
        have = inspect_target(writer.url).revision
        if have != schema.revision:
            raise ConfigError(f"sync needs a target at the source's MLflow schema revision {schema.revision}; "
                              f"the target {dst_uri.masked} is at {have or 'no MLflow schema'}",
                              hint="make the target with `dbmigrate migrate` first")
        target = SqlSource(dst_uri, connect_timeout=cfg.connect_timeout, role="target").open()
        target.inspect()
        max_id = INT64_MAX if dst_uri.kind == "sqlite" else INT32_MAX
        ids = IdMap(sql_experiment_map(source, max_id))
        if ids:
            report.remapped = {str(k): v for k, v in ids.mapping.items()}
        zeros = NegativeZeros() if dst_uri.kind in ZERO_LOSSY else None
        tables = fk_order(writer, {t for t in schema.tables if t in target.schema.tables and t != "alembic_version"},
                          False)
        server = src_uri.kind == dst_uri.kind == "postgresql"
        plans, per = [], {}
        for t in tables:
            t1 = time.perf_counter()
            tgt_cols = writer.table_columns(t)
            cols = [c.name for c in schema.tables[t].columns if not c.generated and c.name in tgt_cols]
            col = RANGE_COLUMNS.get(t) if RANGE_COLUMNS.get(t) in cols else None
            k = suffix_len(source.count(t)) if col else 0
            src_side = _Side(source, [ids.rows(t, cols), zeros.rows(t, cols) if zeros else None])
            dst_side = _Side(target)
            use_server = server and not src_side.fixes and _same_types(source, target, t, cols)
            if use_server:
                a = src_side.server_checksums(t, cols, col, k)
                b = dst_side.server_checksums(t, cols, col, k)
            else:
                a = src_side.python_checksums(t, cols, col, k, cfg.batch_size)
                b = dst_side.python_checksums(t, cols, col, k, cfg.batch_size)
            differ = sorted(x for x in set(a) | set(b) if a.get(x) != b.get(x))
            entry = per[t] = {"ranges": 16 ** k, "compared": len(set(a) | set(b)), "differing": len(differ),
                              "checksum": "server md5" if use_server else "dbmigrate",
                              "rows_read": 0, "deleted": 0, "updated": 0, "inserted": 0, "seconds": 0.0}
            if differ:
                key = writer.key_columns(t)
                if not key:
                    raise MigrationError(f"{t}: the target table has no primary key; sync cannot match its rows",
                                         table=t)
                sel = None if not col else differ
                srows = _by_key(src_side.rows(t, cols, col, k, sel, cfg.batch_size), cols, key)
                trows = _by_key(dst_side.rows(t, cols, col, k, sel, cfg.batch_size), cols, key)
                entry["rows_read"] = len(srows) + len(trows)
                dele = [kk for kk in trows if kk not in srows]
                upd = [srows[kk] for kk in srows if kk in trows
                       and row_hash(srows[kk]) != row_hash(trows[kk])]
                ins = [srows[kk] for kk in srows if kk not in trows]
                plans.append((t, cols, key, dele, upd, ins))
                entry.update(deleted=len(dele), updated=len(upd), inserted=len(ins))
            entry["seconds"] = round(time.perf_counter() - t1, 3)
        target.close()
        target = None
        t2 = time.perf_counter()
        _apply(writer, plans)
        for t, *_ in plans:
            per[t]["seconds"] = round(per[t]["seconds"] + time.perf_counter() - t2, 3)
        if plans:
            seq = writer.advance_sequences(tables)
            if seq:
                report.notes.append("id generators moved past the copied ids: " + "; ".join(seq))
        if zeros and zeros.count:
            report.notes.append("metric values of -0.0 written as 0.0: " +
                                ", ".join(f"{t}: {n}" for t, n in sorted(zeros.count.items())))
        report.sync = {"tables": per,
                       "ranges_compared": sum(e["compared"] for e in per.values()),
                       "ranges_differing": sum(e["differing"] for e in per.values()),
                       "rows_deleted": sum(e["deleted"] for e in per.values()),
                       "rows_updated": sum(e["updated"] for e in per.values()),
                       "rows_inserted": sum(e["inserted"] for e in per.values()),
                       "write_seconds": round(time.perf_counter() - t2, 3)}
        sy = report.sync
        report.notes.append(f"sync: {sy['ranges_differing']} of {sy['ranges_compared']} key ranges differed; rows "
                            f"deleted {sy['rows_deleted']}, updated {sy['rows_updated']}, inserted "
                            f"{sy['rows_inserted']} (one transaction)")
    finally:
        if target is not None:
            target.close()
        source.close()
        writer.close()


def _same_types(source, target, table, cols) -> bool:
    from dbmigrate.pgpipe import same_types
    return same_types(source.pg_connection, target.pg_connection, table, cols)


def _by_key(batches, cols: list[str], key: list[str]) -> dict:
    idx = [cols.index(c) for c in key]
    out = {}
    for batch in batches:
        for r in batch:
            out[tuple(r[i] for i in idx)] = tuple(r)
    return out


def _apply(writer, plans: list) -> None:
    """Every change in one transaction: deletes children first, then updates and inserts parents
    first (`plans` is in the target's foreign-key order)."""
    if not plans:
        return
    from dbmigrate.writers.sql import _write_error
    q = writer.q
    p = "?" if writer.dialect == "sqlite" else "%s"
    conn = writer.connect()
    cur = conn.cursor()
    table = None
    try:
        for table, cols, key, dele, _upd, _ins in reversed(plans):
            if dele:
                cur.executemany(f"DELETE FROM {q(table)} WHERE " + " AND ".join(f"{q(c)} = {p}" for c in key),
                                dele)
        for table, cols, key, _dele, upd, ins in plans:
            if upd:
                rest = [c for c in cols if c not in key]
                ri, ki = [cols.index(c) for c in rest], [cols.index(c) for c in key]
                if rest:
                    cur.executemany(f"UPDATE {q(table)} SET " + ", ".join(f"{q(c)} = {p}" for c in rest)
                                    + " WHERE " + " AND ".join(f"{q(c)} = {p}" for c in key),
                                    [tuple(r[i] for i in ri) + tuple(r[i] for i in ki) for r in upd])
            if ins:
                cur.executemany(f"INSERT INTO {q(table)} ({', '.join(q(c) for c in cols)}) "
                                f"VALUES ({', '.join([p] * len(cols))})", ins)
        conn.commit()
    except MigrationError:
        conn.rollback()
        raise
    except Exception as exc:  # noqa: BLE001
        conn.rollback()
        raise _write_error(exc, table) from None
    finally:
        cur.close()
