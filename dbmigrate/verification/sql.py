"""Verification of a SQL target: per-table counts and order-independent checksums of the rows
the source gave (as the target should hold them) against the target's rows read in their own
snapshot; the differing rows named when a checksum differs; PostgreSQL -> PostgreSQL tables copied
byte for byte checksummed by both servers."""

from __future__ import annotations

import logging
import time

from dbmigrate.batch_checksum import add_rows
from dbmigrate.checksum import Checksum
from dbmigrate.config import Config
from dbmigrate.mlflow_schema import load_rank, schema_version
from dbmigrate.readers.sql import SqlSource
from dbmigrate.report import Check, Report, Verification
from dbmigrate.sql_rows import INT32_MAX, INT64_MAX, ZERO_LOSSY, IdMap, NegativeZeros, source_rows, sql_experiment_map
from dbmigrate.uri import DatabaseURI

log = logging.getLogger("dbmigrate")


def verify_tables(dst_uri: DatabaseURI, checks: dict, cfg: Config, report: Report,
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
        with _ServerChecksums(source, target, bool(server)) as sums:
            for table, columns in (server or {}).items():
                progress.next(table)
                checks.pop(table, None)
                if not server_verify(source, target, table, columns, v, cfg, ids, sums):
                    # servers of different versions: add up the source's rows here instead
                    checks[table] = expected_checksum(source, table, columns, ids or IdMap({}), cfg.batch_size)
        for table, columns in sums.differing:  # named once the sessions' settings are over, as before
            _name_differences(source, target, table, columns, v, cfg, ids)
        for table, (columns, expected) in checks.items():
            progress.next(table)
            cols = sorted(columns)
            got = Checksum()
            order = list(range(len(cols)))
            for rows in target.stream(table, cols, cfg.batch_size):
                add_rows(got, rows, order)
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
                  ids: IdMap | None, sums: "_ServerChecksums | None" = None) -> bool:
    """Both PostgreSQL servers checksum the table's rows (dbmigrate.pgpipe.server_checksum), the
    source in the migration's snapshot, at once. False when they are of different major versions
    (their text forms of a value may differ), so the caller adds up the source's rows itself.
    `sums` (verify_tables): both sessions' text settings and the two threads set up once for all
    tables, one round trip per table and side instead of nine and two new threads (issue 15)."""
    from dbmigrate import pgpipe
    if pgpipe.server_major(source.pg_connection) != pgpipe.server_major(target.pg_connection):
        return False
    if sums is not None and sums.ready:
        (n_src, sum_src), (n_dst, sum_dst) = sums.both(table, columns)
    else:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=2) as pool:
            mine = pool.submit(pgpipe.server_checksum, source.pg_connection, *source.select_sql(table, columns))
            theirs = pool.submit(pgpipe.server_checksum, target.pg_connection, *target.select_sql(table, columns))
            (n_src, sum_src), (n_dst, sum_dst) = mine.result(), theirs.result()
    same = (n_src, sum_src) == (n_dst, sum_dst)
    v.counts.append(Check(table, n_src == n_dst, f"source {n_src:,}, target {n_dst:,}"))
    v.checksums.append({"name": table, "table": table, "source": f"{n_src}:{sum_src} (server md5)",
                        "target": f"{n_dst}:{sum_dst} (server md5)", "match": same, "rows": n_src})
    if not same:
        if cfg.verify in ("sample", "full"):
            if sums is not None and sums.ready:
                sums.differing.append((table, columns))
            else:
                _name_differences(source, target, table, columns, v, cfg, ids)
        else:
            v.failures.append(f"{table}: the servers' checksums differ (source {n_src:,} rows {sum_src}, "
                              f"target {n_dst:,} rows {sum_dst})")
    return True


def _name_differences(source, target, table: str, columns: list[str], v: Verification, cfg: Config,
                      ids: IdMap | None) -> None:
    v.failures += diff_rows(source, target, table, columns, target.schema.tables[table].pk,
                            ids or IdMap({}), cfg.batch_size)


class _ServerChecksums:
    """The server checksums of many tables on two PostgreSQL sessions (source in its snapshot,
    target): each session enters a savepoint and takes pgpipe.TEXT_SETTINGS once, every table is
    one SELECT with pgpipe.server_checksum's expression over the same text form, and the
    savepoint is rolled back at the end, which ends the settings as server_checksum's own does.
    `ready` is False (nothing set up) when there is nothing to checksum, either side is not a
    PostgreSQL connection or the servers' major versions differ: server_verify then does as before."""

    def __init__(self, source, target, wanted: bool):
        self.source, self.target, self.wanted = source, target, wanted
        self.ready = False
        self._pool = None
        self._curs: list = []
        self.differing: list[tuple[str, list[str]]] = []  # (table, columns) to name rows of afterwards

    def __enter__(self) -> "_ServerChecksums":
        if not self.wanted or self.source is None:
            return self
        from dbmigrate import pgpipe
        try:
            conns = [self.source.pg_connection, self.target.pg_connection]
        except Exception:  # noqa: BLE001 - not PostgreSQL on one side: the per-table path decides
            return self
        if None in conns or pgpipe.server_major(conns[0]) != pgpipe.server_major(conns[1]):
            return self
        from concurrent.futures import ThreadPoolExecutor
        for conn in conns:
            cur = conn.cursor()
            self._curs.append(cur)
            cur.execute("SAVEPOINT dbm_checksum")  # the settings end with it
            for s in pgpipe.TEXT_SETTINGS:
                cur.execute(s)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dbmigrate-verify")
        self.ready = True
        return self

    @staticmethod
    def _one(cur, select_sql: str, params) -> tuple[int, str]:
        # the expression of pgpipe.server_checksum, exactly
        cur.execute(f"SELECT count(*), coalesce(sum(('x' || left(md5(dbm_r::text), 16))::bit(64)::bigint::numeric), 0)"
                    f"::text FROM ({select_sql}) dbm_r", params or None)
        n, total = cur.fetchone()
        return int(n), total

    def both(self, table: str, columns: list[str]):
        mine = self._pool.submit(self._one, self._curs[0], *self.source.select_sql(table, columns))
        theirs = self._pool.submit(self._one, self._curs[1], *self.target.select_sql(table, columns))
        return mine.result(), theirs.result()

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        failed = None
        for cur in self._curs:
            try:
                cur.execute("ROLLBACK TO SAVEPOINT dbm_checksum")
                cur.execute("RELEASE SAVEPOINT dbm_checksum")
            except Exception as e:  # noqa: BLE001 - an aborted transaction: the caller's error counts
                failed = failed or e
            finally:
                cur.close()
        if failed is not None and exc_type is None:
            raise failed


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
    from dbmigrate.backends import open_source
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
            if same_pg and pgpipe.same_types(source.pg_connection, target.pg_connection, table, wanted):
                server[table] = wanted  # both servers checksum their own rows
                continue
            checks[table] = expected_checksum(source, table, wanted, ids, cfg.batch_size,
                                            NegativeZeros() if dst_uri.kind in ZERO_LOSSY else None)
        target.close()
        report.verification = verify_tables(dst_uri, checks, cfg, report, source, ids, server)
        steps("done")
    finally:
        if target is not None:
            target.close()
        source.close()


def expected_checksum(source, table: str, wanted: list[str], ids: IdMap, batch_size: int,
                    zeros: NegativeZeros | None = None) -> tuple[list[str], Checksum]:
    """(columns, Checksum) of the source's rows of `table` as the target should hold them."""
    columns, batches = source_rows(source, table, wanted, ids, batch_size, zeros)
    c = Checksum()
    order = sorted(range(len(columns)), key=lambda i: columns[i])
    for b in batches:
        add_rows(c, b, order)
    return columns, c


def verify_merge(dst_uri: DatabaseURI, source, tables: list[str], ids: IdMap, plan, insertable, cfg: Config,
                 progress=None) -> Verification:
    """After a --merge: every row the source's selection gives (converted as the copy converted
    it) is on the target, equal field by field, except the rows the merge kept as the target had
    them (experiments and registered models merged into, conflicts skipped), which must still be
    the target's. Rows of the target outside the copy are not this check's business (the tests
    compare the untouched tables before and after)."""
    from dbmigrate.compare import same_value, show
    from dbmigrate.progress import Progress
    progress = progress or Progress()
    progress.start_step(f"verify ({cfg.verify}, merge)", len(tables), "tables")
    t0 = time.perf_counter()
    v = Verification(level=cfg.verify)
    target = SqlSource(dst_uri, connect_timeout=cfg.connect_timeout, role="target").open()
    try:
        tschema = target.inspect()
        if source.selection is not None:
            target.selection = source.selection.translated(
                ids.mapping, model_names=source.rewriter.model_names if source.rewriter else None)
        for table in tables:
            progress.next(table)
            pk = tschema.tables[table].pk
            columns, batches = source_rows(source, table, insertable(table), ids, cfg.batch_size,
                                           NegativeZeros() if dst_uri.kind in ZERO_LOSSY else None)
            kidx = [columns.index(k) for k in pk]
            kept = plan.kept.get(table, {})
            expected = {}
            for b in batches:
                for r in b:
                    k = tuple(r[i] for i in kidx)
                    expected[k] = kept.get(k, r)
            found, bad = 0, []
            want, got = Checksum(), Checksum()
            for b in target.stream(table, columns, cfg.batch_size):
                for r in b:
                    k = tuple(r[i] for i in kidx)
                    if k not in expected:
                        continue
                    found += 1
                    got.add(r)
                    for c, x, y in zip(columns, expected[k], r):
                        if not same_value(x, y):
                            bad.append(f"{table} key {k!r} field {c}: expected {show(x)}, target {show(y)}")
                            break
            for r in expected.values():
                want.add(r)
            v.counts.append(Check(table, found == len(expected), f"source {len(expected):,}, on the target {found:,}"))
            v.checksums.append({"name": table, "table": table, "source": str(want), "target": str(got),
                                "match": not bad and found == len(expected), "rows": len(expected)})
            v.failures += bad[:MAX_DIFFS]
    finally:
        target.close()
        progress.end_step()
    v.seconds = time.perf_counter() - t0
    return v
