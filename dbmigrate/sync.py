"""The `sync` command: bring a SQL target that an earlier migration filled back to the source's state,
copying only what changed (issue 14, item 4).

Every table is cut into key ranges: rows of a run-keyed table (runs, metrics, params, tags,
latest_metrics) by the last hex digits of `run_uuid`, of a trace-keyed table by those of its
request/trace id (a suffix of a random id spreads evenly and means the same on every engine, with
no collation in play), every other table as one range; the suffix is long enough for a range to
hold about ROWS_PER_RANGE rows (at most MAX_SUFFIX digits). Each side computes, per range, the row
count and an order-independent checksum, both sides at once (two connections): when both ends are
PostgreSQL, or both MySQL/MariaDB of the same kind, with the same column types, each server hashes
its own rows' text in one GROUP BY per table (PostgreSQL: hashtextextended of the row's text,
dbmigrate.pgpipe's text settings; MySQL/MariaDB: md5 of the values QUOTE()d and comma-joined, NULL
unquoted); otherwise dbmigrate.checksum over the rows read. Only ranges whose pairs differ are read
on both sides and compared by primary key: rows only the target holds are deleted, rows that differ
are updated (a run that ended keeps its children), rows only the source holds are inserted. All
writes go in one transaction (deletes children first, then updates and inserts parents first), so a
reader of the target never sees half a change; then id sequences move past the copied ids.
Experiment ids the first migration remapped are remapped the same way (sql_rows.sql_experiment_map
is deterministic).

A server checksum that differs where the rows are equal (another float text form, another byte
order) only costs a read of that range: the rows themselves are then compared in Python."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from dbmigrate.checksum import MASK
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
# A range holds at most 16x this, at least 1/16 of it (suffixes of 1-4 hex digits). Small ranges cost
# nothing in the checksums (one GROUP BY per table and side, whatever the number of groups) and
# bound what a change makes sync read: on 1M metric rows, ~1 % of the runs changed made 2,000-row
# ranges read 239k rows, 250-row ranges far fewer.
ROWS_PER_RANGE = 250
MAX_SUFFIX = 4


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


_BLAKE8 = __import__("hashlib").blake2b(digest_size=8)


def _row_hash(values, _base=_BLAKE8, _from=int.from_bytes) -> int:
    """64-bit blake2b of the row's repr: injective on canonical values (str, bytes, int, float,
    bool, None, ...: repr keeps 1, 1.0, True and '1' apart, -0.0 apart from 0.0, and prints every NaN
    alike), about 2.5x faster than dbmigrate.checksum.row_hash, which sync needs no compatibility
    with (it compares two checksums it made itself)."""
    x = _base.copy()
    x.update(repr(values).encode("utf-8", "surrogatepass"))
    return _from(x.digest(), "big")


def _picker(order: list[int]):
    if len(order) == 1:
        i = order[0]
        return lambda r: (r[i],)
    from operator import itemgetter
    return itemgetter(*order)


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
        """Per range: (rows, sum of row hashes mod 2^64) over the canonical rows, columns in name
        order; a row's hash is `_row_hash` (both sides are hashed by this process)."""
        order = sorted(range(len(cols)), key=lambda i: cols[i])
        pick = _picker(order)
        ki = cols.index(col) if col else None
        out: dict[str, list] = {}
        h = _row_hash
        for batch in self.rows(table, cols, col, k, None, batch_size):
            for r in batch:
                if ki is None:
                    b = ""
                else:
                    v = r[ki]
                    b = v[-k:] if k and type(v) is str else _bucket(v, k)
                c = out.get(b)
                if c is None:
                    c = out[b] = [0, 0]
                c[0] += 1
                c[1] += h(pick(r))
        return {b: (n, total & MASK) for b, (n, total) in out.items()}

    def server_checksums(self, table, cols, col, k, pg_hash: str = "hashtextextended") -> dict[str, tuple]:
        """PostgreSQL: per range, (rows, sum of the 64-bit hashes of the rows' text) computed by the
        server: `pg_hash` hashtextextended (PostgreSQL 11+) or md5 (its first 64 bits)."""
        from dbmigrate.pgpipe import TEXT_SETTINGS
        q = self.r.q
        cond, params = self.where_ranges(table, col, k, None)
        inner = (f"SELECT {', '.join(q(c) for c in sorted(cols))} FROM {q(table)}"
                 + (f" WHERE {cond}" if cond else ""))
        expr = suffix_sql("postgresql", f"dbm_r.{q(col)}", k) if col else "''"
        h = ("hashtextextended(dbm_r::text, 0)" if pg_hash == "hashtextextended"
             else "('x' || left(md5(dbm_r::text), 16))::bit(64)::bigint")
        cur = self.r.pg_connection.cursor()
        try:
            cur.execute("SAVEPOINT dbm_sync")
            for s in TEXT_SETTINGS:
                cur.execute(s)
            cur.execute(f"SELECT {expr}, count(*), sum({h}::numeric)::text FROM ({inner}) dbm_r GROUP BY 1",
                        params or None)
            out = {b or "": (int(n), s) for b, n, s in cur.fetchall()}
            cur.execute("ROLLBACK TO SAVEPOINT dbm_sync")
            cur.execute("RELEASE SAVEPOINT dbm_sync")
        finally:
            cur.close()
        return out

    def mysql_checksums(self, table, cols, col, k) -> dict[str, tuple]:
        """MySQL/MariaDB: per range, (rows, sum of the first 64 bits of md5 over the row's values,
        each QUOTE()d (NULL stays the bare word NULL, quotes and backslashes are escaped, so the
        comma-joined string names one row), in name order) computed by the server."""
        q = self.r.q
        cond, params = self.where_ranges(table, col, k, None)
        expr = suffix_sql("mysql", f"{q(table)}.{q(col)}", k) if col else "''"
        row = "CONCAT_WS(',', " + ", ".join(f"CAST(QUOTE({q(c)}) AS BINARY)" for c in sorted(cols)) + ")"
        sql = (f"SELECT {expr}, COUNT(*), CAST(SUM(CAST(CONV(LEFT(MD5({row}), 16), 16, 10) AS UNSIGNED)) AS CHAR) "
               f"FROM {q(table)}" + (f" WHERE {cond}" if cond else "") + " GROUP BY 1")
        return {b or "": (int(n), str(t)) for b, n, t in self.r.query(sql, params, table=table)}


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
        server = _server_hash(source, target, src_uri.kind, dst_uri.kind)
        if server:
            report.sync["server_hash"] = server
        plans, per = [], {}
        pool = ThreadPoolExecutor(1, thread_name_prefix="dbm-sync-target")  # the target's reads, beside the source's
        try:
            for t in tables:
                t1 = time.perf_counter()
                tgt_cols = writer.table_columns(t)
                cols = [c.name for c in schema.tables[t].columns if not c.generated and c.name in tgt_cols]
                col = RANGE_COLUMNS.get(t) if RANGE_COLUMNS.get(t) in cols else None
                k = suffix_len(source.count(t)) if col else 0
                id_fix = ids.rows(t, cols)
                src_side = _Side(source, [id_fix, zeros.rows(t, cols) if zeros else None])
                dst_side = _Side(target)
                # MySQL/MariaDB print -0.0 as 0, so its zeros fix changes no row's text there
                use_server = bool(server) and id_fix is None and (dst_uri.kind == "mysql" or not src_side.fixes) \
                    and _same_types(source, target, t, cols)
                if use_server and dst_uri.kind == "mysql":
                    both = (lambda side: side.mysql_checksums(t, cols, col, k))
                elif use_server:
                    both = (lambda side: side.server_checksums(t, cols, col, k, server))
                else:
                    both = (lambda side: side.python_checksums(t, cols, col, k, cfg.batch_size))
                fb = pool.submit(both, dst_side)
                a = both(src_side)
                b = fb.result()
                differ = sorted(x for x in set(a) | set(b) if a.get(x) != b.get(x))
                entry = per[t] = {"ranges": 16 ** k, "compared": len(set(a) | set(b)), "differing": len(differ),
                                  "checksum": "server" if use_server else "dbmigrate",
                                  "rows_read": 0, "deleted": 0, "updated": 0, "inserted": 0, "seconds": 0.0}
                if differ:
                    key = writer.key_columns(t)
                    if not key:
                        raise MigrationError(f"{t}: the target table has no primary key; sync cannot match its "
                                             "rows", table=t)
                    sel = None if not col else differ
                    ft = pool.submit(lambda: _by_key(dst_side.rows(t, cols, col, k, sel, cfg.batch_size), cols, key))
                    srows = _by_key(src_side.rows(t, cols, col, k, sel, cfg.batch_size), cols, key)
                    trows = ft.result()
                    entry["rows_read"] = len(srows) + len(trows)
                    dele = [kk for kk in trows if kk not in srows]
                    upd = [srows[kk] for kk in srows if kk in trows
                           and repr(srows[kk]) != repr(trows[kk])]  # repr: NaN equals NaN, -0.0 is not 0.0
                    ins = [srows[kk] for kk in srows if kk not in trows]
                    plans.append((t, cols, key, dele, upd, ins))
                    entry.update(deleted=len(dele), updated=len(upd), inserted=len(ins))
                entry["seconds"] = round(time.perf_counter() - t1, 3)
        finally:
            pool.shutdown(wait=True)
        target.close()
        target = None
        t2 = time.perf_counter()
        for t, spent in _apply(writer, plans).items():
            per[t]["seconds"] = round(per[t]["seconds"] + spent, 3)
        if plans:
            seq = writer.advance_sequences(tables)
            if seq:
                report.notes.append("id generators moved past the copied ids: " + "; ".join(seq))
        if zeros and zeros.count:
            report.notes.append("metric values of -0.0 written as 0.0: " +
                                ", ".join(f"{t}: {n}" for t, n in sorted(zeros.count.items())))
        report.sync = {**report.sync, "tables": per,
                       "ranges_compared": sum(e["compared"] for e in per.values()),
                       "ranges_differing": sum(e["differing"] for e in per.values()),
                       "rows_deleted": sum(e["deleted"] for e in per.values()),
                       "rows_updated": sum(e["updated"] for e in per.values()),
                       "rows_inserted": sum(e["inserted"] for e in per.values()),
                       "write_seconds": round(time.perf_counter() - t2, 3)}
        sy = report.sync
        how = f"the servers' {server}" if server else "dbmigrate's"
        report.notes.append(f"sync: {sy['ranges_differing']} of {sy['ranges_compared']} key ranges differed; rows "
                            f"deleted {sy['rows_deleted']}, updated {sy['rows_updated']}, inserted "
                            f"{sy['rows_inserted']} (one transaction; range checksums: {how})")
    finally:
        if target is not None:
            target.close()
        source.close()
        writer.close()


def _server_hash(source, target, src_kind: str, dst_kind: str) -> str:
    """The servers' checksum both ends can compute alike, or "" (then dbmigrate hashes the rows read)."""
    if src_kind != dst_kind or src_kind not in ("postgresql", "mysql"):
        return ""
    if src_kind == "mysql":  # MySQL and MariaDB print some floats differently: same kind only
        flavours = {"mariadb" in str(side.query("SELECT VERSION()")[0][0]).lower() for side in (source, target)}
        return "md5 of the QUOTE()d values" if len(flavours) == 1 else ""
    versions = [int(side.query("SHOW server_version_num")[0][0]) for side in (source, target)]
    return "hashtextextended" if min(versions) >= 110000 else "md5"


def _same_types(source, target, table, cols) -> bool:
    """The columns have the same declared types on both ends (then the servers' text forms agree)."""
    if source.dialect == "postgresql":
        from dbmigrate.pgpipe import same_types
        return same_types(source.pg_connection, target.pg_connection, table, cols)
    sql = ("SELECT COLUMN_NAME, COLUMN_TYPE, COALESCE(CHARACTER_SET_NAME, ''), COALESCE(COLLATION_NAME, '') "
           "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s")
    mine, theirs = ({r[0]: tuple(r[1:]) for r in side.query(sql, (table,))} for side in (source, target))
    return all(c in mine for c in cols) and all(mine[c] == theirs.get(c) for c in cols)


def _by_key(batches, cols: list[str], key: list[str]) -> dict:
    idx = [cols.index(c) for c in key]
    out = {}
    for batch in batches:
        for r in batch:
            out[tuple(r[i] for i in idx)] = tuple(r)
    return out


def _apply(writer, plans: list) -> dict[str, float]:
    """Every change in one transaction: deletes children first, then updates and inserts parents
    first (`plans` is in the target's foreign-key order). Returns the seconds spent per table.
    PostgreSQL gets its statements in pages (psycopg2's execute_batch: one round trip per page, not
    per row); MySQL's driver already sends an INSERT's rows together."""
    spent: dict[str, float] = {}
    if not plans:
        return spent
    from dbmigrate.writers.sql import _write_error
    q = writer.q
    p = "?" if writer.dialect == "sqlite" else "%s"
    conn = writer.connect()
    cur = conn.cursor()
    if writer.dialect == "postgresql":
        from psycopg2.extras import execute_batch

        def many(sql, rows):
            execute_batch(cur, sql, rows, page_size=500)
    else:
        many = cur.executemany
    table = None
    try:
        for table, cols, key, dele, _upd, _ins in reversed(plans):
            t0 = time.perf_counter()
            if dele:
                many(f"DELETE FROM {q(table)} WHERE " + " AND ".join(f"{q(c)} = {p}" for c in key), dele)
            spent[table] = spent.get(table, 0.0) + time.perf_counter() - t0
        for table, cols, key, _dele, upd, ins in plans:
            t0 = time.perf_counter()
            if upd:
                rest = [c for c in cols if c not in key]
                ri, ki = [cols.index(c) for c in rest], [cols.index(c) for c in key]
                if rest:
                    many(f"UPDATE {q(table)} SET " + ", ".join(f"{q(c)} = {p}" for c in rest)
                         + " WHERE " + " AND ".join(f"{q(c)} = {p}" for c in key),
                         [tuple(r[i] for i in ri) + tuple(r[i] for i in ki) for r in upd])
            if ins:
                many(f"INSERT INTO {q(table)} ({', '.join(q(c) for c in cols)}) "
                     f"VALUES ({', '.join([p] * len(cols))})", ins)
            spent[table] = spent.get(table, 0.0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.commit()
        spent[table] += time.perf_counter() - t0
    except MigrationError:
        conn.rollback()
        raise
    except Exception as exc:  # noqa: BLE001
        conn.rollback()
        raise _write_error(exc, table) from None
    finally:
        cur.close()
    return spent
