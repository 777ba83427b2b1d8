"""Write rows into an MLflow SQL database (PostgreSQL, MySQL/MariaDB, SQLite).

The target schema is MLflow's own at the source's alembic revision (dbmigrate.sql_schema). Rows
arrive per table in foreign-key order, with their ids, and go in with each engine's fast path:
PostgreSQL `COPY FROM STDIN`, MySQL `LOAD DATA LOCAL INFILE` from memory (multi-row INSERT where
the server does not allow it, and for any batch LOAD DATA would change), SQLite executemany.
Each batch is committed before `insert_rows` returns, so a checkpoint after it is safe.
Afterwards sequences / AUTO_INCREMENT move past the copied ids.

Values an engine cannot hold are refused by name, never changed: NaN, -0.0 and infinities on
MySQL/MariaDB, NaN and -0.0 on SQLite (it stores -0.0 as 0 and NaN as NULL). (Metric values of
-0.0 are turned into 0.0 before they get here, counted and reported: see sql_rows.NegativeZeros.)
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from dbmigrate.batch_checksum import batch_columns
from dbmigrate.errors import (ConnectionFailed, DataError, MigrationError, SchemaError, TargetNotEmpty,
                              TransientError)
from dbmigrate.model import Capabilities
from dbmigrate.readers.sql import Table
from dbmigrate.netbounds import bounded_engine
from dbmigrate.uri import DatabaseURI, mask_text

log = logging.getLogger(__name__)

@dataclass
class SqlWriteStats:
    inserted: int = 0
    batches: int = 0
    loaded: int = 0  # MySQL/MariaDB: batches that went by LOAD DATA LOCAL INFILE (the rest by INSERT)


@dataclass
class SqlWriter:
    uri: DatabaseURI
    connect_timeout: int = 10
    stats: dict = field(default_factory=dict)
    # A dry run: the target is only read. A SQLite file is opened read-only, and one that does not
    # exist yet is not created (an empty in-memory database stands for it).
    read_only: bool = False

    def __post_init__(self):
        self.dialect = self.uri.kind
        args: dict = {}
        self.url = self.uri.sqlalchemy_url()
        # MySQL/MariaDB: rows go in by LOAD DATA LOCAL INFILE when the server allows it (see
        # _mysql_load); PyMySQL then sends only dbmigrate's own buffer (netbounds.install_infile_hook).
        self._bulk = None  # decided at the first connection
        if self.dialect == "mysql":
            args.update(charset="utf8mb4")
            if sa.engine.make_url(self.url).get_driver_name() == "pymysql" and not self.read_only \
                    and os.environ.get("DBMIGRATE_MYSQL_LOAD_DATA", "").lower() not in ("off", "0", "no"):
                from dbmigrate.netbounds import install_infile_hook
                if install_infile_hook():
                    args.update(local_infile=True)
                    self._bulk = True
        path = self.uri.sqlite_path
        if self.read_only and self.dialect == "sqlite" and path not in (None, ":memory:"):
            if os.path.exists(path):
                # Read-only. A WAL-mode file whose WAL is gone (checkpointed, closed) is opened as
                # immutable: a read-only open would create its -wal and -shm files again.
                wal = os.path.exists(f"{path}-wal")
                self.url = f"sqlite:///file:{path}?mode=ro{'' if wal else '&immutable=1'}&uri=true"
            else:
                log.info("The target SQLite file %s does not exist yet; the dry run does not create it", path)
                self.url = "sqlite://"
        try:
            self.engine = bounded_engine(self.url, self.connect_timeout, connect_args=args,
                                         poolclass=sa.pool.NullPool)
        except Exception as exc:  # noqa: BLE001
            raise ConnectionFailed(f"Cannot use target {self.uri.masked}: {mask_text(str(exc))}") from None
        self._raw = None
        self._columns: dict[str, dict] = {}
        self._tables: set[str] | None = None

    # ------------------------------------------------------------------ connection
    def connect(self):
        if self._raw is None:
            try:
                self._raw = self.engine.raw_connection()
            except Exception as exc:  # noqa: BLE001
                text = str(exc).strip().splitlines()
                if self.stats:  # it answered before: the server is restarting or the network blinked
                    raise TransientError(f"Cannot reconnect to target {self.uri.masked}: "
                                         f"{mask_text(text[0] if text else type(exc).__name__)}") from None
                raise ConnectionFailed(f"Cannot connect to target {self.uri.masked}: "
                                       f"{mask_text(text[0] if text else type(exc).__name__)}") from None
            conn = self._raw.driver_connection
            if self.dialect == "postgresql":
                self._client_utf8 = conn.encoding in ("UTF8", "UNICODE")
            cur = conn.cursor()
            if self.dialect == "mysql":
                # Experiment 0 (MLflow's Default) must keep id 0, not get the next AUTO_INCREMENT value.
                cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
                if self._bulk:
                    cur.execute("SELECT @@local_infile")
                    self._bulk = bool(int(cur.fetchone()[0] or 0))
                    if not self._bulk:
                        log.info("The MySQL/MariaDB target has local_infile=OFF: rows go in by "
                                 "multi-row INSERT (SET GLOBAL local_infile = ON allows LOAD DATA "
                                 "LOCAL INFILE, several times faster)")
            elif self.dialect == "sqlite" and not self.read_only:
                # Per-connection settings only: the file's journal mode (WAL, kept in the file) is
                # set by prepare(), once the target passed its checks; a refused target is untouched.
                cur.execute("PRAGMA foreign_keys = ON")
                cur.execute("PRAGMA synchronous = NORMAL")
                # No checkpoints while loading: they would copy the WAL into the file at every
                # ~4 MB of commits (measured: a fifth of a PostgreSQL -> SQLite copy). analyze()
                # checkpoints once at the end; a killed run's WAL is recovered on the next open.
                cur.execute("PRAGMA wal_autocheckpoint = 0")
            cur.close()
            conn.commit()
        return self._raw.driver_connection

    def ping(self) -> dict:
        self.connect()
        return {"version": self.engine.dialect.name, "database": self.uri.database}

    def check_charset(self) -> None:
        """MySQL/MariaDB: refuse (SchemaError, before anything is written) a target whose text
        cannot hold MLflow's data as the source has it. MLflow's migrations set no character set or
        collation of their own: every column takes the database's default. So the database's
        default (or, when the MLflow tables exist, their columns) must be utf8mb4, the only MySQL
        character set holding all of Unicode (latin1 cannot store CJK names, utf8mb3 no emoji),
        with a binary collation: under a case- or accent-insensitive one, keys MLflow keeps apart
        (params `lr` and `LR`, experiments `Test` and `test`) collide in primary and unique keys,
        and MLflow's name lookups stop matching exactly."""
        if self.dialect != "mysql":
            return
        conn = self.connect()
        cur = conn.cursor()
        try:
            cur.execute("SELECT schema_name, default_character_set_name, default_collation_name "
                        "FROM information_schema.schemata WHERE schema_name = DATABASE()")
            db, charset, collation = cur.fetchone()
            cur.execute("SELECT table_name, column_name, character_set_name, collation_name "
                        "FROM information_schema.columns WHERE table_schema = DATABASE() "
                        "AND collation_name IS NOT NULL ORDER BY table_name, ordinal_position")
            columns = cur.fetchall()
            # The collation to recommend: binary and NO PAD where the server has one (utf8mb4_bin
            # pads: `lr` and `lr ` are equal keys under it, which MLflow on PostgreSQL or SQLite
            # can hold), else utf8mb4_bin.
            cur.execute("SELECT collation_name FROM information_schema.collations "
                        "WHERE collation_name IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')")
            nopad = sorted(r[0] for r in cur.fetchall())
            conn.commit()
        finally:
            cur.close()
        best = nopad[-1] if nopad else "utf8mb4_bin"
        fix_db = f"ALTER DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE {best}"
        if columns:
            bad = [f"{t}.{c} ({cs}, {co})" for t, c, cs, co in columns if not _mlflow_ready(cs, co)]
            if bad:
                raise SchemaError(
                    f"The target database `{db}` has text columns that cannot hold MLflow's data as "
                    f"is: {', '.join(bad[:8])}{', ...' if len(bad) > 8 else ''}; MLflow needs "
                    f"character set utf8mb4 with a binary collation ({_WHY_BIN})",
                    hint=f"Drop the database and create it again with `CREATE DATABASE `{db}` "
                         f"CHARACTER SET utf8mb4 COLLATE {best}` (or empty it and run `{fix_db}`)")
            return
        if not _mlflow_ready(charset, collation):
            raise SchemaError(
                f"The target database `{db}` has character set {charset} and collation {collation}; "
                f"MLflow's tables take the database's default, and need character set utf8mb4 (all "
                f"of Unicode) with a binary collation ({_WHY_BIN})",
                hint=f"Run `{fix_db}` (or create the database with `CREATE DATABASE `{db}` "
                     f"CHARACTER SET utf8mb4 COLLATE {best}`), then run dbmigrate again")

    def close(self) -> None:
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._raw is not None:
            try:
                self._raw.close()
            finally:
                self._raw = None
        self.engine.dispose()

    # ------------------------------------------------------------------ schema
    def prepare(self, revision: str, *, dry_run: bool = False):
        """Make (or check) the MLflow schema at `revision`. A target that MLflow initialised and
        nobody used holds only MLflow's seed rows (experiment 0 'Default', workspace 'default'):
        they are removed, so the target ends up with exactly the source's rows. A dry run makes
        the same checks and changes nothing."""
        from dbmigrate.sql_schema import clear_seed_rows, prepare_target
        self._columns.clear()
        self._tables = None
        state = prepare_target(self.url, revision, create=not dry_run)
        if state.default_experiment_only and not dry_run:
            state = clear_seed_rows(self.url)
        if self.dialect == "sqlite" and not dry_run:
            cur = self.connect().cursor()
            # the file's own mode (MLflow's files: rollback journal), given back by restore_journal
            self.journal_mode = str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            cur.execute("PRAGMA journal_mode = WAL")  # readers never block the loading writer
            cur.close()
        return state

    journal_mode: str | None = None

    def restore_journal(self, mode: str | None) -> str | None:
        """SQLite: after the final checkpoint, put the file back in the journal mode it had before
        the load (`mode`), so it is the file MLflow would have made; a file in rollback-journal mode
        can also be read by several of dbmigrate's workers at once. Returns a note when the
        mode stays WAL because another connection holds the file (nothing is lost: WAL is only
        slower to share)."""
        if self.dialect != "sqlite" or mode not in ("delete", "truncate", "persist"):
            return None  # WAL (kept), or a mode no file keeps (memory, off)
        cur = self.connect().cursor()
        try:
            now = str(cur.execute(f"PRAGMA journal_mode = {mode.upper()}").fetchone()[0]).lower()
        except Exception as exc:  # noqa: BLE001 - busy: another connection still has the file open
            now = f"wal ({mask_text((str(exc).splitlines() or [type(exc).__name__])[0])})"
        finally:
            cur.close()
        return None if now == mode else f"the SQLite target stays in WAL mode (switching back to {mode} gave: {now})"

    def table_names(self) -> set[str]:
        """The target's tables, reflected once (the schema does not change during the copy)."""
        if self._tables is None:
            with self.engine.connect() as conn:
                self._tables = set(sa.inspect(conn).get_table_names())
        return self._tables

    def table_columns(self, table: str) -> dict[str, dict]:
        """Column name -> {type, generated, nullable} of a target table. Every table's columns are
        reflected at the first call, on one connection: a connection and an inspector per table
        cost ~0.1 s each on MariaDB, most of the copy of a small database (issue 10, 9f)."""
        if table not in self._columns:
            with self.engine.connect() as conn:
                reflected = sa.inspect(conn).get_multi_columns()
            for (_schema, name), cols in reflected.items():
                self._columns[name] = {
                    c["name"]: {"type": type(c["type"]).__name__.upper(), "generated": bool(c.get("computed")),
                                "nullable": c.get("nullable", True)}
                    for c in cols}
        if table not in self._columns:
            raise sa.exc.NoSuchTableError(table)
        return self._columns[table]

    def q(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    # ------------------------------------------------------------------ rows
    def insert_rows(self, table: str, columns: list[str], rows: list[tuple], key_columns=()) -> None:
        """Insert one batch in one transaction. A lost connection is retried with backoff on a
        new one (the failed transaction was rolled back, so nothing doubles)."""
        if not rows:
            return
        self._check_values(table, columns, rows, key_columns)
        delay = 0.5
        for attempt in range(1, RETRIES + 1):
            try:
                return self._insert_once(table, columns, rows, key_columns)
            except TransientError as exc:
                if attempt == RETRIES:  # not passing: the target cannot be reached (exit 3)
                    raise ConnectionFailed(f"The target {self.uri.masked} failed {RETRIES} times in a row: "
                                           f"{exc.message}", table=table,
                                           hint="rerun with --resume once it answers again") from None
                log.warning("Transient target error writing %s (attempt %d/%d): %s; retrying in %.1f s",
                            table, attempt, RETRIES, exc.message, delay)
                self._reset()
                time.sleep(delay)
                delay = min(delay * 2, 30)

    def _reset(self) -> None:
        if self._raw is not None:
            try:
                self._raw.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass
            self._raw = None

    def _sqlite_write_lock(self):
        """An exclusive lock every dbmigrate process writing this SQLite file takes around a
        batch. SQLite has one writer at a time anyway; waiting on its busy handler sleeps up to
        100 ms per try, while a waiter on this lock wakes the moment the writer commits."""
        import fcntl
        import hashlib
        import os
        import tempfile

        if getattr(self, "_lock_fd", None) is None:
            path = os.path.realpath(self.uri.sqlite_path or "")
            name = "dbmigrate-sqlite-" + hashlib.sha1(path.encode()).hexdigest()[:16] + ".lock"
            self._lock_fd = os.open(os.path.join(tempfile.gettempdir(), name), os.O_RDWR | os.O_CREAT, 0o600)

        @contextlib.contextmanager
        def held():
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        return held()

    def _insert_once(self, table: str, columns: list[str], rows: list[tuple], key_columns=()) -> None:
        conn = self.connect()
        try:
            if self.dialect == "postgresql":
                self._copy_in(conn, table, columns, rows)
                conn.commit()
            elif self._bulk and self._mysql_load(conn, table, columns, rows, key_columns):
                conn.commit()
                self.stats.setdefault(table, SqlWriteStats()).loaded += 1
            else:
                marks = ", ".join(["%s" if self.dialect == "mysql" else "?"] * len(columns))
                sql = (f"INSERT INTO {self.q(table)} ({', '.join(self.q(c) for c in columns)}) "
                       f"VALUES ({marks})")
                shared_file = self.dialect == "sqlite" and self.uri.sqlite_path not in (None, ":memory:")
                with self._sqlite_write_lock() if shared_file else contextlib.nullcontext():
                    cur = conn.cursor()
                    cur.executemany(sql, rows)
                    cur.close()
                    conn.commit()
        except MigrationError:
            _rollback(conn)
            raise
        except Exception as exc:  # noqa: BLE001
            _rollback(conn)
            raise _write_error(exc, table) from None
        st = self.stats.setdefault(table, SqlWriteStats())
        st.inserted += len(rows)
        st.batches += 1

    def delete_part(self, table: str, part: tuple | None) -> int:
        """Remove the rows of one part (a key range, or the whole table) before it is copied, so
        that redoing a part after an interruption cannot duplicate anything."""
        conn = self.connect()
        cur = conn.cursor()
        from dbmigrate.engine import range_condition
        cond, params = range_condition(part, self.q, "%s" if self.dialect != "sqlite" else "?")
        sql = f"DELETE FROM {self.q(table)}" + (f" WHERE {cond}" if cond else "")
        try:
            cur.execute(sql, tuple(params)) if params else cur.execute(sql)
            n = cur.rowcount
            conn.commit()
        except Exception as exc:  # noqa: BLE001
            conn.rollback()
            raise _write_error(exc, table) from None
        finally:
            cur.close()
        return n

    def drop_mlflow_tables(self) -> None:
        """--restart: remove every table of the earlier run (the schema is made again)."""
        md = sa.MetaData()
        md.reflect(self.engine)
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        md.drop_all(self.engine)
        self._columns.clear()
        self._tables = None

    def copy_from(self, table: str, columns: list[str], part: tuple | None, src_conn, out_sql: str,
                  on_rows=None) -> int:
        """PostgreSQL -> PostgreSQL: the source's binary COPY of one part straight into the
        target's (dbmigrate.pgpipe), in one transaction; returns the rows written. A lost target
        connection is retried like a batch: the part's rows are deleted and copied again."""
        from dbmigrate import pgpipe
        sql = f"COPY {self.q(table)} ({', '.join(self.q(c) for c in columns)}) FROM STDIN (FORMAT binary)"
        delay = 0.5
        for attempt in range(1, RETRIES + 1):
            conn = self.connect()
            try:
                rows = pgpipe.pipe(src_conn, out_sql, conn, sql, on_rows)
                conn.commit()
                return rows
            except pgpipe.SourceFailed as exc:  # not retried here: the source's snapshot is its own
                _rollback(conn)
                from dbmigrate.readers.sql import _read_error
                raise _read_error(exc.original, out_sql, table) from None
            except Exception as exc:  # noqa: BLE001
                _rollback(conn)
                err = exc if isinstance(exc, MigrationError) else _write_error(exc, table)
                if not isinstance(err, TransientError) or attempt == RETRIES:
                    raise err from None
                log.warning("Transient target error copying %s (attempt %d/%d): %s; retrying in %.1f s",
                            table, attempt, RETRIES, err.message, delay)
                self._reset()
                time.sleep(delay)
                delay = min(delay * 2, 30)
                self.delete_part(table, part)
        raise AssertionError("unreachable")

    def _copy_in(self, conn, table, columns, rows):
        """One batch by COPY FROM STDIN: in the binary format when the columns' types and the
        values allow it (pgpipe.binary_rows: the values' own bits, no text formatting), else text."""
        data = getattr(rows, "encoded", None)
        if data is None:
            data = self.encode_copy(table, columns, rows)
        if data:
            cur = conn.cursor()
            try:
                cur.copy_expert(f"COPY {self.q(table)} ({', '.join(self.q(c) for c in columns)}) FROM STDIN "
                                "(FORMAT binary)", io.BytesIO(data), size=max(8192, min(len(data), 1 << 22)))
            finally:
                cur.close()
            return
        buf = io.StringIO()
        write = buf.write
        enc = _pg_text
        for row in rows:
            write("\t".join([enc(v) for v in row]))
            write("\n")
        buf.seek(0)
        cur = conn.cursor()
        try:
            cur.copy_expert(f"COPY {self.q(table)} ({', '.join(self.q(c) for c in columns)}) FROM STDIN", buf)
        finally:
            cur.close()

    def encode_copy(self, table: str, columns: list[str], rows) -> bytes | None:
        """PostgreSQL: the batch in COPY's binary format (pgpipe.binary_rows), or None when it
        goes as text. The SQL end calls it in the thread that reads, so that the thread running
        the COPY (SqlEnd.overlap_writes) mostly waits on the server, without the GIL."""
        from dbmigrate import pgpipe
        if self.dialect != "postgresql" or not rows:
            return None
        kinds_of = self.__dict__.setdefault("_copy_kinds", {})
        k = (table, tuple(columns))
        utf8 = getattr(self, "_client_utf8", None)  # binary text fields are in the client encoding
        if not utf8:  # not UTF-8, or not connected yet (no connection is made here: see insert_rows)
            return None
        if k not in kinds_of:
            info = self.table_columns(table)
            kinds_of[k] = pgpipe.copy_kinds([info.get(c, {}).get("type", "") for c in columns])
        kinds = kinds_of[k]
        if kinds is None:
            return None
        cols, types = _columns_of(rows, len(columns))
        return pgpipe.binary_rows(kinds, cols, types)

    def _mysql_load(self, conn, table: str, columns: list[str], rows: list[tuple], key_columns=()) -> bool:
        """MySQL/MariaDB: one batch by LOAD DATA LOCAL INFILE, from memory (_mysql_infile). True:
        loaded, every row, exactly (uncommitted). False: nothing was written (rolled back) and the
        batch must go by INSERT, which then stores it or raises the engine's own error: values
        this encoder does not handle, and any load the server reports a warning for or that did not
        store every row. (With LOCAL the server cannot stop the client mid-file, so it turns errors
        into warnings, IGNORE-style: a value too long is truncated, a duplicate key skipped. Those
        warnings are what send a batch to INSERT, where they are errors.)"""
        key = [columns.index(k) for k in key_columns if k in columns]
        if key:
            # In primary-key order: InnoDB stores rows in it, and inserts them about twice as fast
            # in order as scattered (measured on MLflow's metrics table). Row order means nothing.
            from operator import itemgetter
            try:  # the leading two key columns give the order; the rest is near enough
                rows = sorted(rows, key=itemgetter(*key[:2]))
            except TypeError:  # values that do not compare (a NULL in a key column): as they came
                pass
        encoded = _mysql_infile(rows, len(columns))
        if encoded is None:
            return False
        data, hex_columns = encoded
        name = "dbmigrate-batch"  # what the server asks for back; no file of that name is read
        targets = ", ".join(f"@h{i}" if i in hex_columns else self.q(c) for i, c in enumerate(columns))
        sets = ", ".join(f"{self.q(columns[i])} = UNHEX(@h{i})" for i in sorted(hex_columns))
        sql = (f"LOAD DATA LOCAL INFILE '{name}' INTO TABLE {self.q(table)} CHARACTER SET utf8mb4 "
               "FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' "
               "LINES TERMINATED BY '\\n' STARTING BY '' "
               f"({targets})" + (f" SET {sets}" if sets else ""))
        cur = conn.cursor()
        conn.dbmigrate_infile = (name, data)
        try:
            cur.execute(sql)
            loaded = cur.rowcount
            cur.execute("SELECT @@warning_count")
            warnings = int(cur.fetchone()[0])
        finally:
            conn.dbmigrate_infile = None
            cur.close()
        if loaded != len(rows) or warnings:
            _rollback(conn)
            log.debug("%s: LOAD DATA stored %d of %d rows with %d warning(s); the batch goes by INSERT",
                      table, loaded, len(rows), warnings)
            return False
        return True

    def _check_values(self, table, columns, rows, key_columns):
        """Refuse, by name, values this target cannot hold: NULL in a NOT NULL column (MLflow's
        schemas differ slightly between engines), floats this engine would silently change."""
        def key_of(row):
            key = tuple(row[columns.index(k)] for k in key_columns if k in columns)
            return key[0] if len(key) == 1 else (key or None)
        info = self.table_columns(table)
        types = getattr(rows, "types", None)  # the batch's columns' Python types, when known
        for i, name in enumerate(columns):
            if not info.get(name, {}).get("nullable", True):
                if types is not None and type(None) not in types[i]:
                    continue
                for row in rows:
                    if row[i] is None:
                        raise DataError("NULL in a column that is NOT NULL in the target's MLflow schema",
                                        table=table, key=key_of(row), column=name)
        if self.dialect == "postgresql":
            return
        for i, name in enumerate(columns):
            for row in rows:
                v = row[i]
                if type(v) is not float:
                    continue
                bad = None
                if math.isnan(v):
                    bad = "NaN"
                elif math.isinf(v) and self.dialect == "mysql":
                    bad = "an infinity"
                elif v == 0.0 and math.copysign(1.0, v) < 0:
                    bad = "-0.0"
                if bad:
                    engine = {"mysql": "MySQL/MariaDB", "sqlite": "SQLite"}[self.dialect]
                    raise DataError(f"{engine} cannot store {bad}; the value would change",
                                    table=table, key=key_of(row), column=name,
                                    hint="choose a PostgreSQL or MongoDB target for this data")

    # ------------------------------------------------------------------ deferred keys and indexes
    def deferrable_ddl(self, tables: list[str]) -> list[dict]:
        """PostgreSQL: the primary/unique keys, secondary indexes and foreign keys of `tables` (and
        the foreign keys of other tables that point at them), as the statements that rebuild them,
        in rebuild order: keys, then indexes, then foreign keys. Loading into a bare table and
        rebuilding is ~3x faster than COPY into a table whose indexes are live (benchmarks)."""
        if self.dialect != "postgresql" or not tables:
            return []
        conn = self.connect()
        cur = conn.cursor()
        try:
            cur.execute("""
                SELECT c.conname, c.contype, t.relname, pg_get_constraintdef(c.oid)
                FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
                JOIN pg_namespace n ON n.oid = t.relnamespace
                LEFT JOIN pg_class r ON r.oid = c.confrelid
                WHERE n.nspname = current_schema() AND c.contype IN ('p', 'u', 'f')
                  AND (t.relname = ANY(%s) OR (c.contype = 'f' AND r.relname = ANY(%s)))
                ORDER BY t.relname, c.conname""", (list(tables), list(tables)))
            cons = cur.fetchall()
            cur.execute("""
                SELECT i.indexname, i.tablename, i.indexdef FROM pg_indexes i
                WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s)
                  AND NOT EXISTS (SELECT 1 FROM pg_constraint c JOIN pg_class ic ON ic.oid = c.conindid
                                  WHERE ic.relname = i.indexname)
                ORDER BY i.tablename, i.indexname""", (list(tables),))
            idx = cur.fetchall()
            conn.commit()
        finally:
            cur.close()
        ddl = []
        for kind in ("p", "u"):
            ddl += [{"kind": "key", "name": n, "table": t,
                     "sql": f"ALTER TABLE {self.q(t)} ADD CONSTRAINT {self.q(n)} {d}"}
                    for n, k, t, d in cons if k == kind]
        ddl += [{"kind": "index", "name": n, "table": t, "sql": d} for n, t, d in idx]
        ddl += [{"kind": "foreign key", "name": n, "table": t,
                 "sql": f"ALTER TABLE {self.q(t)} ADD CONSTRAINT {self.q(n)} {d}"}
                for n, k, t, d in cons if k == "f"]
        return ddl

    def drop_deferred(self, ddl: list[dict]) -> None:
        """Drop what `ddl` rebuilds, in one transaction (foreign keys first)."""
        if not ddl:
            return
        conn = self.connect()
        cur = conn.cursor()
        try:
            for d in reversed(ddl):
                if d["kind"] == "index":
                    cur.execute(f"DROP INDEX IF EXISTS {self.q(d['name'])}")
                else:
                    cur.execute(f"ALTER TABLE {self.q(d['table'])} DROP CONSTRAINT IF EXISTS {self.q(d['name'])}")
            conn.commit()
        except Exception:
            _rollback(conn)
            raise
        finally:
            cur.close()

    def rebuild_deferred(self, ddl: list[dict], workers: int = 1) -> list[dict]:
        """Rebuild what drop_deferred dropped and is still missing (a resumed run may find some
        rebuilt): one table per connection at a time, up to `workers` tables in parallel; keys
        before indexes before foreign keys. A failure names the table and the constraint."""
        if not ddl:
            return []
        conn = self.connect()
        cur = conn.cursor()
        try:
            cur.execute("SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                        "WHERE n.nspname = current_schema()")
            present = {r[0] for r in cur.fetchall()}
            cur.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
            present |= {r[0] for r in cur.fetchall()}
            conn.commit()
        finally:
            cur.close()
        todo = [d for d in ddl if d["name"] not in present]
        stages = [[d for d in todo if d["kind"] != "foreign key"], [d for d in todo if d["kind"] == "foreign key"]]
        done: list[dict] = []

        def run_table(items):
            engine_conn = self.engine.raw_connection()
            try:
                c = engine_conn.driver_connection
                cur2 = c.cursor()
                for d in items:
                    t0 = time.perf_counter()
                    try:
                        cur2.execute(d["sql"])
                        c.commit()
                    except Exception as exc:  # noqa: BLE001
                        c.rollback()
                        text = str(getattr(exc, "pgerror", None) or exc).strip().splitlines()
                        raise DataError(f"Rebuilding {d['kind']} {d['name']} after the load failed: "
                                        f"{mask_text(text[0] if text else type(exc).__name__)}",
                                        table=d["table"],
                                        hint="fix the cause and rerun with --resume (the rebuild is retried)") from None
                    done.append({**d, "seconds": time.perf_counter() - t0})
                    log.debug("rebuilt %s %s of %s in %.2f s", d["kind"], d["name"], d["table"], done[-1]["seconds"])
                cur2.close()
            finally:
                engine_conn.close()

        from concurrent.futures import ThreadPoolExecutor
        for stage in stages:
            by_table: dict[str, list] = {}
            for d in stage:
                by_table.setdefault(d["table"], []).append(d)
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                for f in [pool.submit(run_table, items) for items in by_table.values()]:
                    f.result()
        return done

    # ------------------------------------------------------------------ finish
    def advance_sequences(self, tables: list[str]) -> list[str]:
        """Move id generators (PostgreSQL sequences / identities, MySQL AUTO_INCREMENT) past the
        copied ids; returns what was done, for the report. SQLite's rowids continue by themselves."""
        done = []
        conn = self.connect()
        cur = conn.cursor()
        if self.dialect == "postgresql":
            cur.execute("""SELECT c.table_name, c.column_name, pg_get_serial_sequence(c.table_name, c.column_name)
                           FROM information_schema.columns c
                           WHERE c.table_schema = current_schema()
                             AND pg_get_serial_sequence(c.table_name, c.column_name) IS NOT NULL""")
            generators = [(t, c, seq) for t, c, seq in cur.fetchall() if t in tables]
        elif self.dialect == "mysql":
            cur.execute("""SELECT table_name, column_name, NULL FROM information_schema.columns
                           WHERE table_schema = DATABASE() AND extra LIKE '%%auto_increment%%'""")
            generators = [(t, c, None) for t, c, _ in cur.fetchall() if t in tables]
        else:
            generators = []
        for table, col, seq in sorted(generators):
            cur.execute(f"SELECT MAX({self.q(col)}) FROM {self.q(table)}")
            top = cur.fetchone()[0]
            if top is None:
                continue
            if self.dialect == "postgresql":
                cur.execute("SELECT setval(%s, %s)", (seq, max(int(top), 1)))
                done.append(f"{seq} -> {int(top)}")
            else:
                cur.execute(f"ALTER TABLE {self.q(table)} AUTO_INCREMENT = {int(top) + 1}")
                done.append(f"{table}.{col} AUTO_INCREMENT -> {int(top) + 1}")
        conn.commit()
        cur.close()
        return done

    def analyze(self, tables: list[str] | None = None) -> None:
        """Refresh the planner's statistics. PostgreSQL: of `tables` only, when given (a bare
        ANALYZE also walks every system catalog: ~0.6 s of a ~300-row migration, against ~0.2 s
        for its 65 tables); none when `tables` is empty."""
        conn = self.connect()
        if self.dialect == "postgresql" and tables is not None:
            if not tables:
                return
            sql = "ANALYZE " + ", ".join(self.q(t) for t in tables)
        else:
            sql = "ANALYZE"
        cur = conn.cursor()
        try:
            cur.execute(sql)
            conn.commit()
        except Exception:  # noqa: BLE001 - statistics are an optimisation only
            conn.rollback()
        finally:
            cur.close()
        if self.dialect == "sqlite":
            cur = conn.cursor()
            try:
                cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the one checkpoint (see connect())
            finally:
                cur.close()

    # ------------------------------------------------------------------ the Writer protocol
    # (dbmigrate.model.Writer): begin -> write / delete_part -> finalize -> close. The methods
    # above are the orchestrators' and keep their signatures; these are built on them.
    @property
    def capabilities(self) -> Capabilities:
        """True statements about this target, each checked by tests/test_conformance.py."""
        return Capabilities(
            # SQLite: several processes may each have a writer; their transactions take turns on
            # a file lock (_sqlite_write_lock), while their reads and conversions overlap.
            parallel_writers=None,
            advances_sequences=True,   # finalize: sequences / AUTO_INCREMENT (SQLite's rowid by itself)
            durable_writes=True,       # each write is one committed transaction
            keeps_negative_zero=self.dialect == "postgresql",  # the others store 0.0: refused
            fast_paths=frozenset({"postgresql-binary-copy"}) if self.dialect == "postgresql" else frozenset())

    def begin(self, schema: Mapping[str, Table], revision: str | None) -> None:
        """With a revision, `prepare(revision)`: MLflow's own migrations make the schema (or
        check an existing one, refusing one with data). Tables are never made from `schema`
        (see dbmigrate.sql_schema); with revision None they must exist already and be empty.
        Then every table of `schema` must be in the target with each of its columns."""
        if revision is not None:
            self.prepare(revision)
        self._tables = None
        self._columns.clear()
        present = self.table_names()
        for name, table in schema.items():
            if name not in present:
                raise SchemaError("The target has no such table", table=name,
                                  hint="a SQL target's tables are made by MLflow's migrations")
            have = self.table_columns(name)
            missing = [c.name for c in table.columns if c.name not in have]
            if missing:
                raise SchemaError(f"The target table lacks columns {missing}", table=name, column=missing[0])
            if revision is None and self._has_rows(name):
                raise TargetNotEmpty("The target table already holds rows", table=name,
                                     hint="give empty tables, or delete_part(table, None) first")
        self._proto = {"schema": dict(schema), "types": {}, "written": set()}

    def _has_rows(self, table: str) -> bool:
        cur = self.connect().cursor()
        try:
            cur.execute(f"SELECT 1 FROM {self.q(table)} LIMIT 1")
            return cur.fetchone() is not None
        finally:
            cur.close()
            self.connect().commit()

    def _protocol(self) -> dict:
        if getattr(self, "_proto", None) is None:
            self._proto = {"schema": {}, "types": {}, "written": set()}
        return self._proto

    def key_columns(self, table: str) -> list[str]:
        """The table's primary key: as begin() was told, else the target's own."""
        known = self._protocol()["schema"].get(table)
        if known is not None and known.pk:
            return list(known.pk)
        with self.engine.connect() as conn:
            return list(sa.inspect(conn).get_pk_constraint(table).get("constrained_columns") or [])

    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        """insert_rows, after refusing (DataError naming table, column and key) every value the
        target column would not give back exactly: a type other than the column's canonical
        one, and each engine's silent changes (see _exact_checks)."""
        columns = list(columns)
        key = self.key_columns(table)
        self._check_exact(table, columns, rows, key)
        self.insert_rows(table, columns, rows, key)
        self._protocol()["written"].add(table)

    def finalize(self) -> dict:
        """Move id generators past the copied ids and refresh statistics; every write was
        already committed. Returns {table: {"rows": rows in the table, "inserted": n, ...}}."""
        written = sorted(self._protocol()["written"])
        done = self.advance_sequences(written)
        self.analyze(written)
        out = {}
        cur = self.connect().cursor()
        try:
            for t in written:
                cur.execute(f"SELECT COUNT(*) FROM {self.q(t)}")
                st = self.stats.get(t) or SqlWriteStats()
                out[t] = {"rows": int(cur.fetchone()[0]), "inserted": st.inserted, "batches": st.batches,
                          "sequences": [d for d in done if d.startswith(t) or f"{t}_" in d]}
        finally:
            cur.close()
            self.connect().commit()
        return out

    def _column_types(self, table: str) -> dict:
        """Column name -> (type tag, reflected SQLAlchemy type, SQLite declared type)."""
        cache = self._protocol()["types"]
        if table not in cache:
            from dbmigrate.readers.sql import _type_tag
            with self.engine.connect() as conn:
                cols = sa.inspect(conn).get_columns(table)
                declared = {}
                if self.dialect == "sqlite":
                    declared = {r[1]: (r[2] or "") for r in
                                conn.exec_driver_sql(f"PRAGMA table_info({self.q(table)})").fetchall()}
            cache[table] = {c["name"]: (_type_tag(c["type"])[0], c["type"], declared.get(c["name"], ""))
                            for c in cols}
        return cache[table]

    def _check_exact(self, table: str, columns: list[str], rows: list[tuple], key_columns) -> None:
        from dbmigrate.model import CANONICAL_TYPES
        types = self._column_types(table)
        kidx = [columns.index(k) for k in key_columns if k in columns]
        for i, name in enumerate(columns):
            if name not in types:
                raise SchemaError("The target table has no such column", table=table, column=name)
            tag, sa_type, declared = types[name]
            allowed = CANONICAL_TYPES[tag]
            check = _exact_check(self.dialect, tag, sa_type, declared)
            for row in rows:
                v = row[i]
                if v is None:
                    continue
                why = (None if type(v) in allowed else
                       f"{type(v).__name__} value {v!r:.60} in a column of type {tag}") or (check and check(v))
                if why:
                    k = tuple(row[j] for j in kidx)
                    raise DataError(f"The target cannot hold this value exactly: {why}", table=table,
                                    column=name, key=(k[0] if len(k) == 1 else k) or None,
                                    hint="nothing is converted silently; choose a target that holds it")


# ----------------------------------------------------------------------------- exactness rules
_NUMERIC_TEXT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
_INT_RANGE = {"SMALLINT": 2**15, "INTEGER": 2**31, "INT": 2**31, "MEDIUMINT": 2**23, "TINYINT": 2**7}
_MYSQL_TEXT_BYTES = {"TINYTEXT": 255, "TEXT": 65_535, "MEDIUMTEXT": 16_777_215,
                     "TINYBLOB": 255, "BLOB": 65_535, "MEDIUMBLOB": 16_777_215}


def _sqlite_affinity(declared: str) -> str:
    """SQLite's column affinity from the declared type (sqlite.org/datatype3.html, 3.1)."""
    d = declared.upper()
    if "INT" in d:
        return "INTEGER"
    if any(s in d for s in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in d or not d:
        return "BLOB"
    if any(s in d for s in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _exact_check(dialect: str, tag: str, sa_type, declared: str):
    """A function value -> why the column would not give it back exactly (None: it would), for
    what the engine changes without an error; None when there is nothing to check. (NaN, +-inf
    and -0.0 in float columns on MySQL/SQLite are refused by SqlWriter._check_values.)"""
    name = type(sa_type).__name__.upper()
    checks = []
    if tag in ("str", "json", "date", "datetime") and dialect == "sqlite" \
            and _sqlite_affinity(declared) in ("INTEGER", "REAL", "NUMERIC"):
        # A column of numeric affinity turns text that looks like a number into a number.
        checks.append(lambda v: _NUMERIC_TEXT.fullmatch(v) and
                      f"SQLite stores the text {v!r:.40} as a number in a column declared {declared}")
    if tag in ("str", "json") and dialect == "postgresql":
        checks.append(lambda v: "\x00" in v and "PostgreSQL text cannot hold the NUL character")
    if tag in ("str", "json", "bytes") and dialect in ("postgresql", "mysql"):
        length = getattr(sa_type, "length", None)
        if length and name not in _MYSQL_TEXT_BYTES:
            checks.append(lambda v: len(v) > length and f"{len(v)} characters in a column of {length}")
        limit = _MYSQL_TEXT_BYTES.get(name) if dialect == "mysql" else None
        if limit:
            checks.append(lambda v: len(v.encode() if isinstance(v, str) else v) > limit and
                          f"{name} holds at most {limit:,} bytes")
    if tag == "int" and dialect != "sqlite" and name in _INT_RANGE:
        top = _INT_RANGE[name]
        checks.append(lambda v: not -top <= v < top and f"{v} is out of range for {name}")
    if tag == "decimal":
        checks.append(_decimal_check(dialect, sa_type))
    if tag == "date":
        checks.append(lambda v: _iso_date(v) != v and f"{v!r} is not a canonical ISO date")
    if tag == "datetime":
        checks.append(_datetime_check(dialect, sa_type))
    checks = [c for c in checks if c is not None]
    if not checks:
        return None
    return lambda v: next((why for why in (c(v) for c in checks) if why), None)


def _iso_date(v: str):
    import datetime as dt
    try:
        return dt.date.fromisoformat(v).isoformat()
    except ValueError:
        return None


def _decimal_check(dialect: str, sa_type):
    from decimal import Decimal
    if dialect == "postgresql":
        return lambda v: v == 0.0 and math.copysign(1.0, v) < 0 and "NUMERIC has no -0"
    if dialect == "mysql":
        precision, scale = getattr(sa_type, "precision", None) or 10, getattr(sa_type, "scale", None) or 0

        def mysql(v):
            if not math.isfinite(v):
                return None  # refused by _check_values
            d = Decimal(repr(v))
            if d.as_tuple().exponent < -scale or abs(d) >= Decimal(10) ** (precision - scale):
                return f"{v!r} does not fit DECIMAL({precision},{scale}) exactly"
            return None
        return mysql
    return None


def _datetime_check(dialect: str, sa_type):
    """Canonical datetime text (datetime.isoformat()) that the column gives back as it is: an
    offset only where the column keeps one (PostgreSQL timestamptz), fractions of a second only
    as far as the column keeps them (MySQL DATETIME(fsp)). SQLite keeps the text."""
    import datetime as dt
    if dialect == "sqlite":
        return None
    aware_column = bool(getattr(sa_type, "timezone", False))
    fsp = getattr(sa_type, "fsp", None) if dialect == "mysql" else 6

    def check(v):
        try:
            d = dt.datetime.fromisoformat(v)
        except ValueError:
            return f"{v!r} is not ISO 8601 datetime text"
        if d.isoformat() != v:
            return f"{v!r} is not canonical (datetime.isoformat() gives {d.isoformat()!r})"
        if (d.tzinfo is not None) != aware_column:
            return (f"a {'zoned' if d.tzinfo else 'naive'} datetime in a column "
                    f"{'with' if aware_column else 'without'} time zone")
        if d.microsecond and d.microsecond % 10 ** (6 - (fsp or 0)):
            return f"fractions of a second beyond the column's {fsp or 0} digits"
        return None
    return check


RETRIES = 6

_WHY_BIN = ("a case- or accent-insensitive collation makes keys that MLflow keeps apart, such as "
            "params `lr` and `LR`, collide")


def _mlflow_ready(charset: str | None, collation: str | None) -> bool:
    """utf8mb4 with a binary collation (utf8mb4_bin, utf8mb4_nopad_bin, utf8mb4_0900_bin)."""
    return (charset or "").lower() == "utf8mb4" and (collation or "").lower().endswith("_bin")


def _rollback(conn) -> None:
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001 - a broken connection cannot roll back; the server did
        pass


def _columns_of(rows, width: int) -> tuple[list, list[set]]:
    """The batch's columns and the set of exact Python types in each: kept on the batch by the SQL
    end (ends.sql.Batch), which has them from its checksum, else computed here."""
    cols = batch_columns(rows, width)
    types = getattr(rows, "types", None)  # a reader's columnar batch has the columns only
    return cols, types if types is not None else [set(map(type, c)) for c in cols]


_PG_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _pg_text(v) -> str:
    """One value in PostgreSQL's COPY text format."""
    if v is None:
        return "\\N"
    t = type(v)
    if t is str:
        # translate() is slow; most values hold nothing to escape
        if "\\" in v or "\t" in v or "\n" in v or "\r" in v:
            return v.translate(_PG_ESCAPES)
        return v
    if t is float:
        r = repr(v)  # shortest round-trip form; -0.0 stays -0.0
        last = r[-1]
        if last == "n" or last == "f":  # nan, inf, -inf
            return "NaN" if r == "nan" else ("Infinity" if r == "inf" else "-Infinity")
        return r
    if t is bool:
        return "t" if v else "f"
    if t is int:
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "\\\\x" + bytes(v).hex()
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, int):
        return str(int(v))
    return str(v).translate(_PG_ESCAPES)


_MY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\\0"})


def _my_escape(v: str) -> str:
    if "\\" in v or "\t" in v or "\n" in v or "\r" in v or "\x00" in v:
        return v.translate(_MY_ESCAPES)
    return v


_MY_TEXT = {str: _my_escape, float: float.__repr__, int: int.__repr__, bool: lambda v: "1" if v else "0",
            type(None): lambda v: "\\N"}


def _mysql_infile_fast(rows: list[tuple]) -> bytes | None:
    """_mysql_infile for batches of text, numbers, booleans and NULLs only (one dictionary lookup
    per value; a third of the CPU of the general loop); None for anything else."""
    text = _MY_TEXT
    try:
        lines = ["\t".join([text[type(v)](v) for v in row]) for row in rows]
    except KeyError:  # bytes, Decimal, another type: the general loop decides
        return None
    lines.append("")
    try:
        return "\n".join(lines).encode("utf-8")
    except UnicodeEncodeError:
        return None


def _mysql_infile(rows: list[tuple], width: int) -> tuple[bytes, set[int]] | None:
    """A batch as the text LOAD DATA reads with FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\'
    LINES TERMINATED BY '\\n', and the columns sent as hex (bytes, loaded through UNHEX). None
    when a value is of a type this does not write exactly, or a column mixes bytes and text.

    NULL is the field \\N; every backslash, tab, newline, carriage return and NUL of a text is
    escaped (so the text "\\N" is the field \\\\N and stays text; "" is an empty field, not NULL);
    floats are repr() (the shortest text that reads back as the same double, as PyMySQL sends
    them), booleans 1/0, text is UTF-8 (all of utf8mb4)."""
    fast = _mysql_infile_fast(rows)
    if fast is not None:
        return fast, set()
    hex_columns = {i for row in rows for i, v in enumerate(row) if type(v) in (bytes, bytearray, memoryview)}
    lines = []
    add = lines.append
    escapes = _MY_ESCAPES
    from decimal import Decimal
    for row in rows:
        fields = []
        put = fields.append
        for i, v in enumerate(row):
            t = type(v)
            if v is None:
                put("\\N")
            elif i in hex_columns:
                if t not in (bytes, bytearray, memoryview):
                    return None
                put(bytes(v).hex())
            elif t is str:
                if "\\" in v or "\t" in v or "\n" in v or "\r" in v or "\x00" in v:
                    v = v.translate(escapes)
                put(v)
            elif t is float:
                put(repr(v))  # NaN, infinities and -0.0 were refused before (_check_values)
            elif t is bool:
                put("1" if v else "0")
            elif t is int or t is Decimal:
                put(str(v))
            else:
                return None
        add("\t".join(fields))
    add("")
    try:
        return "\n".join(lines).encode("utf-8"), hex_columns
    except UnicodeEncodeError:  # a lone surrogate: INSERT raises the error that names it
        return None


def _write_error(exc: Exception, table: str) -> MigrationError:
    text = str(exc).strip().splitlines()
    message = mask_text(text[0] if text else type(exc).__name__)
    lowered = message.lower()
    if any(s in lowered for s in ("server closed", "connection", "lost", "gone away", "broken pipe")):
        return TransientError(f"Target connection failed while writing: {message}", table=table)
    return DataError(f"The target rejected rows: {message}", table=table)
