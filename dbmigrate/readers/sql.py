"""Read an MLflow SQL database (PostgreSQL, MySQL/MariaDB, SQLite) in one consistent snapshot.

Rows come back as tuples of normalised Python values (bool for BOOLEAN whatever the dialect stores,
bytes for BLOB/BYTEA, JSON and DATE as their text), in batches, never a whole table at once.
Three access paths share one read-only snapshot transaction:
- `stream`: a whole table in batches (PostgreSQL: COPY; others: an unbuffered cursor);
- `pages`: keyset pagination in primary-key order, leaving the connection free between pages;
- `fetch_in`: the rows whose key column is in a set of values (children of a page of parents).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from dbmigrate.errors import ConnectionFailed, DataError, MigrationError, SchemaError
from dbmigrate.mlflow_schema import (GENERATED_COLUMNS, ORPHAN_PARENT, TABLE_REVISION, TABLE_SINCE,
                                     SchemaVersion, schema_version)
from dbmigrate.netbounds import STOPPED, bounded_engine
from dbmigrate.uri import DatabaseURI, mask_text

log = logging.getLogger(__name__)

IN_CHUNK = 500  # values per IN (...) list: well under every dialect's parameter limit


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # int | float | bool | str | bytes | json | date | datetime | decimal
    nullable: bool
    generated: bool = False
    length: int | None = None


@dataclass
class Table:
    name: str
    columns: list[Column]
    pk: list[str]
    indexes: list[dict] = field(default_factory=list)  # {name, columns, unique} besides the PK

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass
class SourceSchema:
    dialect: str
    revision: str
    version: SchemaVersion
    tables: dict[str, Table] = field(default_factory=dict)


def _type_tag(sa_type) -> tuple[str, int | None]:
    name = type(sa_type).__name__.upper()
    length = getattr(sa_type, "length", None)
    if isinstance(sa_type, sa.Boolean) or name in ("BOOLEAN", "BOOL"):
        return "bool", None
    if isinstance(sa_type, (sa.Integer,)) or name in ("INTEGER", "BIGINT", "SMALLINT", "TINYINT",
                                                       "MEDIUMINT", "INT"):
        if name == "TINYINT" and getattr(sa_type, "display_width", None) == 1:
            return "bool", None
        return "int", None
    if isinstance(sa_type, sa.JSON) or name in ("JSON", "JSONB"):
        return "json", None
    if isinstance(sa_type, sa.Float) or name in ("FLOAT", "DOUBLE", "DOUBLE_PRECISION", "REAL"):
        return "float", None
    if isinstance(sa_type, sa.Numeric):
        return "decimal", None
    if isinstance(sa_type, sa.LargeBinary) or name in ("BYTEA", "BLOB", "LONGBLOB", "BINARY",
                                                        "VARBINARY", "MEDIUMBLOB"):
        return "bytes", None
    if isinstance(sa_type, sa.DateTime):
        return "datetime", None
    if isinstance(sa_type, sa.Date):
        return "date", None
    return "str", length


class SqlSource:
    """A read-only view of one MLflow SQL database."""

    def __init__(self, uri: DatabaseURI, *, connect_timeout: int = 10, role: str = "source"):
        self.uri = uri
        self.role = role  # "source", or "target" when verification reads the target: named in errors
        self.dialect = uri.kind
        connect_args: dict = {}
        if self.dialect == "postgresql":
            connect_args["options"] = "-c default_transaction_read_only=on"
        elif self.dialect == "mysql":
            connect_args["charset"] = "utf8mb4"
        url = uri.sqlalchemy_url()
        if self.dialect == "sqlite":
            path = uri.sqlite_path
            if path != ":memory:":
                check_sqlite_file(path)
            url = f"sqlite:///file:{path}?mode=ro&uri=true"
        try:
            self.engine = bounded_engine(url, connect_timeout, connect_args=connect_args,
                                         poolclass=sa.pool.NullPool)
        except Exception as exc:  # noqa: BLE001 - driver import errors etc.
            raise ConnectionFailed(f"Cannot use source {uri.masked}: {mask_text(str(exc))}") from None
        self._conn = None
        self.orphans = "copy"  # "skip": rows whose parent row is missing are not read
        # dbmigrate.selection.Selection: every read yields only the selected rows (None: all rows)
        self.selection = None
        # dbmigrate.rewrite.Rewriter: values changed on the way (artifact URIs, renames), in every read
        self.rewriter = None
        self.snapshot_id: str | None = None
        self.schema: SourceSchema | None = None
        self._preparer = self.engine.dialect.identifier_preparer
        self._param = "?" if self.dialect == "sqlite" else "%s"

    # ------------------------------------------------------------------ connection / snapshot
    def open(self, snapshot_id: str | None = None) -> "SqlSource":
        """Connect and begin the read-only snapshot transaction every read runs in.

        `snapshot_id` (PostgreSQL) makes this connection read the snapshot another exported,
        which is how parallel workers all see the same database state."""
        try:
            raw = self.engine.raw_connection()
        except Exception as exc:  # noqa: BLE001
            raise ConnectionFailed(
                f"Cannot connect to source {self.uri.masked}: {_first_line(exc)}") from None
        dbapi = raw.driver_connection
        cur = dbapi.cursor()
        try:
            if self.dialect == "postgresql":
                import psycopg2.extras
                psycopg2.extras.register_default_json(dbapi, loads=lambda text: text)
                psycopg2.extras.register_default_jsonb(dbapi, loads=lambda text: text)
                dbapi.set_session(isolation_level="REPEATABLE READ", readonly=True)
                if snapshot_id:
                    cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_id,))
                    self.snapshot_id = snapshot_id
                else:
                    cur.execute("SELECT pg_export_snapshot()")
                    self.snapshot_id = cur.fetchone()[0]
            elif self.dialect == "mysql":
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                self.snapshot_id = "mysql consistent snapshot"
            else:
                dbapi.isolation_level = None
                cur.execute("BEGIN")
                cur.execute("SELECT count(*) FROM sqlite_master")  # takes the read snapshot now
                self.snapshot_id = "sqlite read transaction"
                self._sqlite_state = self._sqlite_shareable(cur)
                if snapshot_id and snapshot_id != self._sqlite_state:
                    raise MigrationError(
                        f"The SQLite source {self.uri.masked} is not in the state the migration's snapshot "
                        f"saw ({snapshot_id}; a worker found {self._sqlite_state or 'WAL mode'})",
                        hint="something changed the file during the migration; rerun with --resume")
        except Exception as exc:  # noqa: BLE001
            try:
                cur.close()  # before the connection: SQLite refuses to close a cursor after it
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            raw.close()
            self._close_header()
            if isinstance(exc, MigrationError):
                raise
            raise ConnectionFailed(
                f"Cannot start a read snapshot on {self.uri.masked}: {_first_line(exc)}") from None
        cur.close()
        self._raw = raw
        self._conn = dbapi
        return self

    def close(self) -> None:
        if getattr(self, "_sa_conn", None) is not None:
            try:
                self._sa_conn.close()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self._sa_conn = None
        if self._conn is not None:
            try:
                self._conn.rollback()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self._raw.close()
            self._conn = None
        self._close_header()
        self.engine.dispose()

    # A SQLite file in rollback-journal mode can be read by several connections as one snapshot:
    # the snapshot connection's read transaction holds a SHARED lock until it ends, and no writer
    # can commit while any SHARED lock is held (it needs EXCLUSIVE). So every connection opened
    # meanwhile sees the same state, which the file's change counter (header bytes 24-27, bumped
    # by every commit in this mode) proves: each worker compares it with the snapshot's. In WAL
    # mode writers commit beside readers, so that source stays with one connection.
    # The header is read through a descriptor kept open until close(): closing any descriptor of a
    # file drops the POSIX locks this process holds on it, SQLite's SHARED lock among them.
    _sqlite_state: str | None = None
    _header_fd: int | None = None

    def _sqlite_shareable(self, cur) -> str | None:
        mode = str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        files = [r[2] for r in cur.execute("PRAGMA database_list").fetchall() if r[1] == "main"]
        if mode == "wal" or not files or not files[0]:
            return None
        if self._header_fd is None:
            self._header_fd = os.open(files[0], os.O_RDONLY)
        counter = int.from_bytes(os.pread(self._header_fd, 4, 24), "big")
        return f"sqlite {mode} journal, file change counter {counter}"

    def _close_header(self) -> None:
        if self._header_fd is not None:  # after the connection's own descriptors let go of their locks
            os.close(self._header_fd)
            self._header_fd = None

    def __enter__(self):
        return self.open() if self._conn is None else self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ schema
    def inspect(self) -> SourceSchema:
        """Fingerprint (alembic_version) and reflect every table, in the snapshot's connection."""
        names = self._table_names()
        if "alembic_version" not in names:
            found = ", ".join(sorted(names)[:12]) or "no tables"
            if {"experiments", "runs"} <= set(names):
                raise SchemaError(
                    "The source has MLflow tables but no alembic_version table, so its schema "
                    "version is unknown", table="alembic_version",
                    hint="it was not created by MLflow's own initialisation; run `mlflow db upgrade` on it")
            raise SchemaError(f"The source {self.uri.masked} is not an MLflow database "
                              f"(found: {found}); expected alembic_version, experiments, runs, ...")
        rows = self.query("SELECT version_num FROM alembic_version")
        if len(rows) != 1:
            raise SchemaError(f"alembic_version holds {len(rows)} rows; an MLflow database has exactly one",
                              table="alembic_version")
        revision = rows[0][0]
        version = schema_version(revision)
        insp = sa.inspect(self._sa_connection())
        schema = SourceSchema(dialect=self.dialect, revision=revision, version=version)
        # Every table's columns, keys and indexes in one catalog query per kind, not per table.
        multi = {what: {key[1]: got for key, got in fetch(filter_names=names).items()} for what, fetch in (
            ("columns", insp.get_multi_columns), ("pk", insp.get_multi_pk_constraint),
            ("indexes", insp.get_multi_indexes), ("unique", insp.get_multi_unique_constraints))}
        for name in names:
            cols = []
            for c in multi["columns"][name]:
                tag, length = _type_tag(c["type"])
                generated = bool(c.get("computed")) or c["name"] in GENERATED_COLUMNS.get(name, ())
                cols.append(Column(c["name"], tag, bool(c.get("nullable", True)), generated, length))
            pk = (multi["pk"].get(name) or {}).get("constrained_columns") or []
            indexes = [{"name": ix["name"], "columns": list(ix["column_names"]), "unique": bool(ix["unique"])}
                       for ix in multi["indexes"].get(name, []) if all(ix["column_names"])]
            indexes += [{"name": uc["name"], "columns": list(uc["column_names"]), "unique": True}
                        for uc in multi["unique"].get(name, [])]
            schema.tables[name] = Table(name, cols, list(pk), indexes)
        missing = version.expected_tables - set(names)
        if missing:
            raise SchemaError(
                f"The source claims {version.describe()} but lacks tables {sorted(missing)}",
                hint="the schema was edited by hand or the upgrade was interrupted")
        newer = sorted(t for t in set(names) & set(TABLE_SINCE) if not version.has_table(t))
        if newer:
            raise SchemaError(
                f"The source claims {version.describe()} but has tables of later MLflow releases: "
                f"{', '.join(f'{t} ({TABLE_SINCE[t]})' for t in newer)}",
                hint="alembic_version does not match the schema; it was edited by hand")
        exp_cols = schema.tables["experiments"].column_names
        if ("workspace" in exp_cols) != version.has_column("experiments", "workspace"):
            raise SchemaError(
                f"The source claims {version.describe()} but experiments "
                f"{'has' if 'workspace' in exp_cols else 'lacks'} the workspace column (revision "
                f"{TABLE_REVISION['workspaces']}, MLflow {TABLE_SINCE['workspaces']})",
                table="experiments", column="workspace",
                hint="alembic_version does not match the schema; it was edited by hand")
        self.schema = schema
        return schema

    def _sa_connection(self):
        # Reflection runs on a second connection: it reads the catalog, which a migration does not
        # change; every row is read on the snapshot connection.
        if getattr(self, "_sa_conn", None) is None:
            self._sa_conn = self.engine.connect()
        return self._sa_conn

    def _table_names(self) -> list[str]:
        if self.dialect == "postgresql":
            rows = self.query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        elif self.dialect == "mysql":
            rows = self.query("SELECT table_name FROM information_schema.tables "
                              "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'")
        else:
            rows = self.query("SELECT name FROM sqlite_master WHERE type='table' "
                              "AND name NOT LIKE 'sqlite_%'")
        return sorted(r[0] for r in rows)

    # ------------------------------------------------------------------ reads
    def q(self, name: str) -> str:
        return self._preparer.quote(name)

    def query(self, sql: str, params: Sequence = (), *, table: str | None = None) -> list[tuple]:
        cur = self._conn.cursor()
        try:
            cur.execute(sql, tuple(params)) if params else cur.execute(sql)
            return cur.fetchall()
        except Exception as exc:  # noqa: BLE001
            err = _read_error(exc, sql, table, self.role)
            if table and isinstance(err, DataError) and self.dialect == "sqlite":
                err = self._locate_bad_text(table, ()) or err
            raise err from None
        finally:
            cur.close()

    def count(self, table: str, part: tuple | None = None, *, raw: bool = False,
              with_parent: bool = False) -> int:
        """Rows of `table` (of one key range): those that will be read (orphans left out when
        they are skipped), all of them (`raw`), or only those whose parent exists (`with_parent`)."""
        if with_parent:
            cond, params = self.orphan_condition(table, force=True), ()
        else:
            cond, params = self.part_condition(part, None if raw else table)
        total = 0
        chunks = self.selection_chunks(table)
        for scond, sparams in [("", ())] if chunks is None else chunks:
            where = " AND ".join(c for c in (cond, scond) if c)
            where = f" WHERE {where}" if where else ""
            total += int(self.query(f"SELECT COUNT(*) FROM {self.q(table)}{where}", params + sparams)[0][0])
        return total

    def count_where(self, table: str, cond: str, params: tuple = (), *, alias: str = "") -> int:
        """COUNT(*) of `table` [AS alias] rows matching `cond`, of the selection when there is one."""
        chunks = self.selection_chunks(table)
        total = 0
        for scond, sparams in [("", ())] if chunks is None else chunks:
            where = " AND ".join(c for c in (cond, scond) if c)
            total += int(self.query(f"SELECT COUNT(*) FROM {self.q(table)}{' ' + alias if alias else ''}"
                                    f"{' WHERE ' + where if where else ''}", tuple(params) + sparams)[0][0])
        return total

    def selection_chunks(self, table: str) -> list[tuple[str, tuple]] | None:
        """With a selection (dbmigrate.selection): the conditions that read `table`'s selected rows,
        one per batch of at most IN_CHUNK keys (each an indexed IN list, never one giant list);
        [] when nothing of the table is selected; None without a selection."""
        if self.selection is None:
            return None
        cols, keys = self.selection.filters(table)
        if cols is None:  # a table every selection copies whole (dbmigrate.selection.WHOLE)
            return None
        if not cols or not keys:
            return []
        p = self._param
        out = []
        for i in range(0, len(keys), IN_CHUNK):
            chunk = keys[i:i + IN_CHUNK]
            if len(cols) == 1:
                cond = f"{self.q(cols[0])} IN ({', '.join([p] * len(chunk))})"
            else:
                one = "(" + ", ".join([p] * len(cols)) + ")"
                cond = f"({', '.join(self.q(c) for c in cols)}) IN ({', '.join([one] * len(chunk))})"
            out.append((cond, tuple(v for k in chunk for v in k)))
        return out

    def orphan_condition(self, table: str, force: bool = False) -> str:
        """With orphans skipped: rows whose parent row exists (or whose reference is NULL)."""
        if (self.orphans != "skip" and not force) or table not in ORPHAN_PARENT:
            return ""
        ccol, parent, pcol = ORPHAN_PARENT[table]
        if self.schema is None or parent not in self.schema.tables:
            return ""
        q = self.q
        return (f"({q(table)}.{q(ccol)} IS NULL OR EXISTS (SELECT 1 FROM {q(parent)} dbm_p "
                f"WHERE dbm_p.{q(pcol)} = {q(table)}.{q(ccol)}))")

    def part_condition(self, part: tuple | None, table: str | None = None) -> tuple[str, tuple]:
        """SQL for one key range (column, lo, hi): lo <= column < hi, either end open (None),
        and (with orphans skipped) for rows whose parent exists."""
        from dbmigrate.engine import range_condition
        orphan = self.orphan_condition(table) if table else ""
        cond, params = range_condition(part, self.q, self._param)
        return " AND ".join(c for c in (orphan, cond) if c), tuple(params)

    def boundaries(self, table: str, column: str, parts: int) -> list:
        """`parts - 1` values of `column` that cut `table` into ranges of about equal row counts,
        taken from the table itself (so the database's own ordering decides)."""
        n = self.count(table)
        if parts < 2 or n < parts:
            return []
        q = self.q
        out = []
        for k in range(1, parts):
            rows = self.query(f"SELECT {q(column)} FROM {q(table)} ORDER BY {q(column)} "
                              f"LIMIT 1 OFFSET {int(n * k / parts)}")
            if rows and (not out or rows[0][0] > out[-1]):
                out.append(rows[0][0])
        return out

    def _select(self, table: str, columns: Sequence[str]) -> str:
        return f"SELECT {', '.join(self.q(c) for c in columns)} FROM {self.q(table)}"

    def select_sql(self, table: str, columns: Sequence[str], part: tuple | None = None) -> tuple[str, tuple]:
        """The SELECT (and its parameters) that reads `table`'s rows of one part: the key range,
        and with orphans skipped only rows whose parent exists. One statement: not for a table a
        selection limits to more than one batch of keys (see select_sqls)."""
        sqls = self.select_sqls(table, columns, part)
        if len(sqls) != 1:
            raise MigrationError(f"{table}: a selection reads this table in {len(sqls)} statements, not one",
                                 table=table)
        return sqls[0]

    def select_sqls(self, table: str, columns: Sequence[str], part: tuple | None = None) -> list[tuple[str, tuple]]:
        """The SELECTs that read `table`'s rows of one part: one, or with a selection one per
        batch of selected keys (none when nothing of the table is selected)."""
        cond, params = self.part_condition(part, table)
        chunks = self.selection_chunks(table)
        out = []
        for scond, sparams in [("", ())] if chunks is None else chunks:
            where = " AND ".join(c for c in (cond, scond) if c)
            out.append((self._select(table, columns) + (f" WHERE {where}" if where else ""), params + sparams))
        return out

    def copy_out_sql(self, table: str, columns: Sequence[str], part: tuple | None = None) -> str:
        """PostgreSQL: `COPY (select_sql) TO STDOUT (FORMAT binary)`, the parameters inlined
        (COPY takes none) by the driver's own quoting."""
        sql, params = self.select_sql(table, columns, part)
        cur = self._conn.cursor()
        try:
            inner = cur.mogrify(sql, params).decode() if params else sql
        finally:
            cur.close()
        return f"COPY ({inner}) TO STDOUT (FORMAT binary)"

    def _normalizer(self, table: str, columns: Sequence[str]):
        """A function that turns a raw driver row into normalised values, or None if none needed."""
        t = self.schema.tables[table]
        fixes = []
        for i, name in enumerate(columns):
            col = t.column(name)
            kind = col.type if col else "str"
            if kind == "bool" and self.dialect != "postgresql":
                fixes.append((i, _to_bool))
            elif kind == "bytes":
                fixes.append((i, _to_bytes))
            elif kind in ("date", "datetime"):
                fixes.append((i, _to_iso))
            elif kind == "decimal":
                fixes.append((i, _to_float))
            elif kind == "float" and self.dialect == "sqlite":
                fixes.append((i, _sqlite_float))
        rewrite = self.rewriter.rows(table, list(columns)) if self.rewriter is not None else None
        if not fixes:
            return rewrite

        def normalize(rows):
            # A column at a time: C-level maps where the column allows, one pass per fixed column
            # instead of a list and a tuple per row.
            if not rows:
                return rows
            cols = list(zip(*rows))
            for i, fn in fixes:
                cols[i] = _fix_column(fn, cols[i])
            if rewrite:
                return rewrite(list(zip(*cols)))
            return Columnar(zip(*cols), cols)
        return normalize

    def stream(self, table: str, columns: Sequence[str], batch_size: int,
               part: tuple | None = None) -> Iterator[list[tuple]]:
        """Every row of `table` (of one key range, `part`), in batches, in no particular order."""
        normalize = self._normalizer(table, columns)
        with quiet_gc():
            for sql, params in self.select_sqls(table, columns, part):
                yield from self._stream_one(table, columns, sql, params, batch_size, normalize)

    def _stream_one(self, table, columns, sql, params, batch_size, normalize):
        if self.dialect == "postgresql":
            cur = self._conn.cursor(name=f"dbm_stream_{table}")  # server-side cursor
            cur.itersize = batch_size
        elif self.dialect == "mysql":
            import pymysql.cursors
            cur = self._conn.cursor(pymysql.cursors.SSCursor)
        else:
            cur = self._conn.cursor()
        try:
            cur.execute(sql, params) if params else cur.execute(sql)
            while True:
                rows = cur.fetchmany(batch_size)
                if not rows:
                    break
                yield normalize(rows) if normalize else rows
        except MigrationError:
            raise
        except Exception as exc:  # noqa: BLE001
            err = _read_error(exc, sql, table, self.role)
            if isinstance(err, DataError) and self.dialect == "sqlite":
                err = self._locate_bad_text(table, columns) or err
            raise err from None
        finally:
            try:
                cur.close()
            except Exception:  # noqa: BLE001 - the connection may already be closed (an error upstream)
                pass

    def _locate_bad_text(self, table: str, columns: Sequence[str]) -> DataError | None:
        """The first row and column holding bytes that are not UTF-8 (SQLite stores any bytes as
        TEXT), read as raw bytes, for an error that names them."""
        t = self.schema.tables[table]
        key = t.pk or list(columns)
        text_cols = [c.name for c in t.columns if c.type in ("str", "json") and not c.generated]
        old = self._conn.text_factory
        self._conn.text_factory = bytes
        try:
            cur = self._conn.execute(f"SELECT {', '.join(self.q(c) for c in key + text_cols)} FROM {self.q(table)}")
            for row in cur:
                for name, v in zip(key + text_cols, row):
                    if isinstance(v, bytes):
                        try:
                            v.decode("utf-8")
                        except UnicodeDecodeError as exc:
                            k = tuple(x.decode("utf-8", "replace") if isinstance(x, bytes) else x
                                      for x in row[:len(key)])
                            return DataError(f"Source text is not valid UTF-8 ({exc.reason} at byte "
                                             f"{exc.start}: {v[max(0, exc.start - 8):exc.start + 8]!r})",
                                             table=table, key=k[0] if len(k) == 1 else k, column=name,
                                             hint="fix the value in the source (SQLite accepts any bytes as TEXT)")
        finally:
            self._conn.text_factory = old
        return None

    def pages(self, table: str, columns: Sequence[str], key: Sequence[str],
              batch_size: int, *, after: tuple | None = None,
              part: tuple | None = None) -> Iterator[list[tuple]]:
        """Rows in key order, one page at a time (keyset pagination); `key` must be unique.
        `part` limits them to one key range."""
        key = list(key)
        chunks = self.selection_chunks(table)
        with quiet_gc():
            for scond, sparams in [("", ())] if chunks is None else chunks:
                # with a selection: the pages of each batch of selected keys in turn
                yield from self._pages(table, columns, key, batch_size, after, part, scond, sparams)

    def _pages(self, table, columns, key, batch_size, after, part, scond, sparams):
        pcond, pparams = self.part_condition(part, table)
        if scond:
            pcond, pparams = " AND ".join(c for c in (pcond, scond) if c), pparams + sparams
        cols = list(columns) + [k for k in key if k not in columns]
        key_idx = [cols.index(k) for k in key]
        base = self._select(table, cols)
        order = ", ".join(self.q(k) for k in key)
        normalize = self._normalizer(table, cols)
        last = after
        while True:
            conds, params = ([pcond], pparams) if pcond else ([], ())
            if last is not None:
                cond, after_params = self._after(key, last)
                conds.append(cond)
                params = params + after_params
            where = f" WHERE {' AND '.join(conds)}" if conds else ""
            sql = f"{base}{where} ORDER BY {order} LIMIT {int(batch_size)}"
            rows = self.query(sql, params, table=table)
            if not rows:
                return
            last = tuple(rows[-1][i] for i in key_idx)
            if normalize:
                rows = normalize(rows)
            if len(cols) != len(columns):
                rows = [r[:len(columns)] for r in rows]
            yield rows
            if len(rows) < batch_size:
                return

    def _after(self, key: list[str], last: tuple) -> tuple[str, tuple]:
        """WHERE clause for rows after `last` in key order (expanded, works on every dialect)."""
        p = self._param
        ors, params = [], []
        for i in range(len(key)):
            ands = [f"{self.q(key[j])} = {p}" for j in range(i)] + [f"{self.q(key[i])} > {p}"]
            params.extend(last[:i + 1])
            ors.append("(" + " AND ".join(ands) + ")")
        return "(" + " OR ".join(ors) + ")", tuple(params)

    def fetch_in(self, table: str, columns: Sequence[str], key_column: str,
                 values: Sequence, *, where: dict | None = None) -> list[tuple]:
        """Rows of `table` whose `key_column` is one of `values` (and that match `where`)."""
        if not values:
            return []
        if self.rewriter is not None:  # values of a renamed key column are the new names: ask for the old
            values = self.rewriter.original_values(table, key_column, values)
        sel_cols = []
        if self.selection is not None:  # the selection filters in Python here: the IN list is the parents'
            cols, keys = self.selection.filters(table)
            if cols is None:
                cols, keys = (), [()]
            elif not cols or not keys:
                return []
            sel_cols = [c for c in cols if c not in columns]
            sel_idx = [(list(columns) + sel_cols).index(c) for c in cols]
            wanted_keys = set(keys)
            columns = list(columns) + sel_cols
        normalize = self._normalizer(table, columns)
        base = self._select(table, columns)
        extra, extra_params = "", []
        for col, val in (where or {}).items():
            if isinstance(val, (list, tuple)):
                extra += f" AND {self.q(col)} IN ({', '.join([self._param] * len(val))})"
                extra_params.extend(val)
            else:
                extra += f" AND {self.q(col)} = {self._param}"
                extra_params.append(val)
        out: list[tuple] = []
        uniq = list(dict.fromkeys(values))
        for i in range(0, len(uniq), IN_CHUNK):
            chunk = uniq[i:i + IN_CHUNK]
            marks = ", ".join([self._param] * len(chunk))
            sql = f"{base} WHERE {self.q(key_column)} IN ({marks}){extra}"
            out.extend(self.query(sql, tuple(chunk) + tuple(extra_params), table=table))
        if self.selection is not None:
            out = [r for r in out if tuple(r[i] for i in sel_idx) in wanted_keys]
            if sel_cols:
                out = [r[:len(columns) - len(sel_cols)] for r in out]
                columns = columns[:len(columns) - len(sel_cols)]
                normalize = self._normalizer(table, columns)
        return normalize(out) if normalize else out

    # ------------------------------------------------------------------ the Reader protocol
    # (dbmigrate.model.Reader). open() and count() above already are the protocol's; the schema
    # is reflected at the first call that needs it (orchestrators call inspect() themselves, and
    # worker processes are given the parent's), in the snapshot's transaction.
    @property
    def revision(self) -> str | None:
        """MLflow's alembic revision of the source (None before open())."""
        if self.schema is None and self._conn is None:
            return None
        return self._reflected().revision

    @property
    def shared_snapshot(self) -> str | None:
        """The id other connections can open this connection's snapshot by (PostgreSQL's
        exported snapshot; a SQLite file in rollback-journal mode, whose state cannot change while
        this connection reads it: see _sqlite_shareable), or None: a MySQL/MariaDB snapshot, or a
        SQLite one in WAL mode, belongs to its own connection, so its source is read by one worker."""
        if self.dialect == "sqlite":
            return self._sqlite_state
        return self.snapshot_id if self.dialect == "postgresql" else None

    @property
    def pg_connection(self):
        """The snapshot's own connection, for the shortcuts this reader declares in `fast_paths`
        and the servers' own checksums (dbmigrate.pgpipe): PostgreSQL only; its transaction is the
        snapshot, so a caller only runs reads on it (COPY ... TO, SELECT) and never commits."""
        if self.dialect != "postgresql":
            raise TypeError(f"a {self.dialect} source has no PostgreSQL connection to share")
        return self._conn

    @property
    def fast_paths(self) -> frozenset[str]:
        """Shortcuts this reader offers a writer that declares the same name
        (dbmigrate.model.Capabilities.fast_paths): PostgreSQL's binary COPY (copy_out_sql)."""
        return frozenset({"postgresql-binary-copy"}) if self.dialect == "postgresql" else frozenset()

    def _reflected(self) -> SourceSchema:
        if self.schema is None:
            if self._conn is None:
                raise MigrationError(f"The {self.role} {self.uri.masked} is not open: call open() first")
            self.inspect()
        return self.schema

    def tables(self) -> list[str]:
        """The source's tables, parents before children (dbmigrate.mlflow_schema.load_rank)."""
        from dbmigrate.mlflow_schema import load_rank
        return sorted(self._reflected().tables, key=load_rank)

    def table(self, name: str) -> Table:
        tables = self._reflected().tables
        if name not in tables:
            raise SchemaError(f"The {self.role} has no table {name!r}", table=name)
        return tables[name]

    def rows(self, table: str, columns: Sequence[str], batch_size: int,
             part: tuple | None = None) -> Iterator[list[tuple]]:
        """`stream`: the rows of one part in batches of canonical values (dbmigrate.model)."""
        t = self.table(table)
        unknown = [c for c in columns if t.column(c) is None]
        if unknown:
            raise SchemaError(f"The {self.role} table has no column {unknown[0]!r}", table=table,
                              column=unknown[0])
        return self.stream(table, columns, batch_size, part=part)


SQLITE_HEADER = b"SQLite format 3\x00"


def check_sqlite_file(path: str) -> None:
    """Say what a SQLite path is when it is not a database: missing or a directory (ConfigError,
    exit 2: the URI names no database file), empty or not in SQLite's format (SchemaError, exit 4:
    not an MLflow database)."""
    import os
    from dbmigrate.errors import ConfigError
    if not os.path.exists(path):
        raise ConfigError(f"The SQLite database file {path} does not exist",
                          hint="Check the path (sqlite:////absolute/path.db has four slashes, "
                               "sqlite:///relative/path.db three)")
    if os.path.isdir(path):
        raise ConfigError(f"The SQLite path {path} is a directory, not a database file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise ConnectionFailed(f"Cannot read the SQLite file {path}: {exc.strerror}") from None
    if not head:
        raise SchemaError(f"The SQLite file {path} is empty (0 bytes): not an MLflow database")
    if head != SQLITE_HEADER:
        raise SchemaError(f"The file {path} is not an SQLite database (it does not start with "
                          f"SQLite's header; its first bytes are {head!r}), so not an MLflow database")


class Columnar(list):
    """A batch of row tuples that also has its values a column at a time (`cols`), as the
    normaliser made them: the SQL end's checksum and encoder take them instead of transposing the
    rows again."""

    def __init__(self, rows, cols):
        super().__init__(rows)
        self.cols = cols


_gc_holds = 0


@contextlib.contextmanager
def quiet_gc():
    """While rows stream: every object alive when the first stream began is moved out of the
    cyclic garbage collector's reach (gc.freeze), and put back when the last stream ends. A copy
    makes and keeps (for a batch) tens of thousands of tuples a batch; each time enough of them
    outlive a collection the collector walks the whole heap, which MLflow's and SQLAlchemy's
    modules make ~200k objects: measured, a third of the CPU of a SQLite -> PostgreSQL copy. Frozen,
    a full collection walks only the batches' objects. Nothing is leaked: gc.unfreeze() at the end
    hands the frozen objects back to the collector."""
    global _gc_holds
    if _gc_holds == 0:
        gc.freeze()
    _gc_holds += 1
    try:
        yield
    finally:
        _gc_holds -= 1
        if _gc_holds == 0:
            gc.unfreeze()


def _fix_column(fn, col):
    """`fn` applied to every non-NULL value of one column."""
    if fn is _sqlite_float:
        if int not in set(map(type, col)):
            return col  # REAL columns give floats; only whole numbers stored as INTEGER need it
    elif fn is _to_bool and None not in col:
        return list(map(bool, col))
    return [v if v is None else fn(v) for v in col]


def _to_bool(v):
    return bool(v)


def _to_bytes(v):
    return bytes(v)


def _to_iso(v):
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


def _to_float(v):
    return float(v)


def _sqlite_float(v):
    # SQLite stores whole-number REALs that came in as integers as INTEGER affinity values.
    return float(v) if isinstance(v, int) else v


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return mask_text(text[0] if text else type(exc).__name__)


def _read_error(exc: Exception, sql: str, table: str | None = None, role: str = "source") -> MigrationError:
    message = _first_line(exc)
    lowered = message.lower()
    if STOPPED in lowered:  # dbmigrate.netbounds: a silent peer, not a passing fault
        return ConnectionFailed(f"The {role} server stopped answering while reading: {message}",
                                table=table)
    if any(s in lowered for s in ("could not receive", "server closed", "connection", "lost", "gone away")):
        from dbmigrate.errors import TransientError
        return TransientError(f"{role.capitalize()} connection failed while reading: {message}", table=table)
    if "utf-8" in lowered or "decode" in lowered:
        return DataError(f"{role.capitalize()} holds text that is not valid UTF-8: {message}", table=table)
    return MigrationError(f"{role.capitalize()} read failed: {message}", table=table)


def is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
