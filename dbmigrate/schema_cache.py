"""A cache of MLflow target schemas: what MLflow's migrations did once, replayed in a fraction of
a second, and checked against what they made.

Building a SQL target's schema with MLflow's own migrations (dbmigrate.sql_schema.create_schema)
costs seconds: a child process imports MLflow and alembic, and alembic walks some 60 revisions,
reflecting the database between steps. For a small database that is most of the migration.

So when MLflow's migrations build a schema, dbmigrate keeps what makes it again, and a
*fingerprint* of what they made: the engine's own description of the schema (SQLite:
``sqlite_master``; MySQL/MariaDB: ``SHOW CREATE TABLE`` of every table and the catalog's columns,
indexes, constraints, foreign-key rules and table options; PostgreSQL: columns with types,
nullability, defaults, identity and generation from ``pg_attribute``, every constraint by
``pg_get_constraintdef``, every index by ``pg_get_indexdef``, sequences, types, triggers, views,
functions) and the rows of ``alembic_version``. What makes it again, measured per engine:

* PostgreSQL: the statements the migrations sent (SQLAlchemy's ``before_cursor_execute`` on
  MLflow's own engine), without the reads (SELECT, reflection between steps), replayed in order,
  through the same driver, in one transaction and one round trip (~0.2-0.4 s on a quiet machine;
  replaying a pg_dump of the made schema measured no faster, and needs the binary).
* SQLite: the CREATE statements sqlite_master holds, as the migrations left them (~30 ms in one
  transaction; replaying the 500 statements costs ~0.5 s: SQLite commits each DDL by itself).
* MySQL/MariaDB: SHOW CREATE TABLE of every table, with foreign-key checks off while they are
  created (~0.5 s; replaying the migrations' 430 statements costs ~12 s, because InnoDB rebuilds
  a table for each ALTER).

A replay runs on an empty database; its fingerprint is then taken and must equal the recorded
one, or the replay is undone (PostgreSQL and SQLite: rolled back; MySQL: the tables it made are
dropped), the entry deleted, and MLflow's migrations run instead, as on a miss.

An entry is keyed by everything that could change the statements or their effect: the MLflow
version and a hash of its migration scripts (``db_migrations``, ``initial_models.py``), the
alembic and SQLAlchemy versions, the revision, the dialect and driver, and the server (PostgreSQL
major version; MySQL/MariaDB flavour, major.minor, sql_mode, lower_case_table_names, storage engine
and the database's default character set and collation; SQLite library version). It is found
without importing MLflow. Entries live in ``$XDG_CACHE_HOME/dbmigrate/schemas`` (default
``~/.cache/dbmigrate/schemas``), one JSON file each, written atomically, with a checksum of their
content. ``DBMIGRATE_SCHEMA_CACHE=off`` turns the cache off (every schema is built by MLflow's
migrations, nothing is recorded); ``DBMIGRATE_SCHEMA_CACHE=/some/dir`` puts it elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT = 2  # 1: every dialect replayed the recorded statements
ALEMBIC_TABLE = "alembic_version"


# ----------------------------------------------------------------------------- where, and the key
def cache_dir() -> Path | None:
    """The cache's directory, or None when DBMIGRATE_SCHEMA_CACHE=off."""
    setting = os.environ.get("DBMIGRATE_SCHEMA_CACHE", "").strip()
    if setting.lower() in ("off", "0", "no", "false", "none"):
        return None
    if setting and setting.lower() not in ("on", "1", "yes", "true"):
        return Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dbmigrate" / "schemas"


def _package_dir(name: str) -> Path | None:
    """A package's directory, found without importing it."""
    import importlib.util
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


_TOOLS: dict | None = None


def tools_key() -> dict | None:
    """MLflow's version and a hash of its migration scripts, alembic's and SQLAlchemy's versions:
    None when MLflow or alembic cannot be found (then nothing is cached or replayed)."""
    global _TOOLS
    if _TOOLS is not None:
        return _TOOLS or None
    import sqlalchemy as sa
    mlflow, alembic = _package_dir("mlflow"), _package_dir("alembic")
    try:
        version = re.search(r"""VERSION\s*=\s*["']([^"']+)""",
                            (mlflow / "version.py").read_text()).group(1)
        alembic_version = re.search(r"""__version__\s*=\s*["']([^"']+)""",
                                    (alembic / "__init__.py").read_text()).group(1)
        digest = hashlib.sha256()
        migrations = mlflow / "store" / "db_migrations"
        files = sorted((migrations / "versions").glob("*.py")) + [
            migrations / "env.py", mlflow / "store" / "tracking" / "dbmodels" / "initial_models.py"]
        for f in files:
            digest.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    except (OSError, AttributeError, TypeError):
        _TOOLS = {}
        return None
    _TOOLS = {"mlflow": version, "migrations": digest.hexdigest()[:20], "alembic": alembic_version,
              "sqlalchemy": sa.__version__}
    return _TOOLS


def server_key(dbapi_conn, dialect: str) -> str:
    """What of the server could change the effect of the same statements."""
    if dialect == "sqlite":
        import sqlite3
        return f"sqlite-{sqlite3.sqlite_version}"
    cur = dbapi_conn.cursor()
    try:
        if dialect == "postgresql":
            cur.execute("SHOW server_version_num")
            major = int(cur.fetchone()[0]) // 10000
            cur.execute("SELECT current_setting('server_encoding')")
            return f"postgresql-{major}-{cur.fetchone()[0]}"
        cur.execute("SELECT VERSION(), @@sql_mode, @@lower_case_table_names, @@default_storage_engine, "
                    "@@character_set_database, @@collation_database")
        version, mode, lower, engine, charset, collation = cur.fetchone()
        flavour = "mariadb" if "mariadb" in str(version).lower() else "mysql"
        major_minor = ".".join(str(version).split("-")[0].split(".")[:2])
        return f"{flavour}-{major_minor}|{mode}|{lower}|{engine}|{charset}|{collation}"
    finally:
        cur.close()
        if dialect == "postgresql":
            dbapi_conn.rollback()
        else:
            dbapi_conn.commit()


def entry_key(revision: str, dialect: str, driver: str, server: str) -> dict | None:
    tools = tools_key()
    if tools is None:
        return None
    return {"format": FORMAT, **tools, "revision": revision, "dialect": dialect, "driver": driver,
            "server": server}


def _path(key: dict) -> Path | None:
    base = cache_dir()
    if base is None:
        return None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return base / f"{key['revision']}-{key['dialect']}-{digest}.json"


# ----------------------------------------------------------------------------- fingerprint
def fingerprint(dbapi_conn, dialect: str) -> list:
    """The engine's own description of the schema in the connection's database, and the rows of
    alembic_version: equal fingerprints, equal schemas (see the module docstring)."""
    cur = dbapi_conn.cursor()
    try:
        def rows(sql):
            cur.execute(sql)
            return [list(r) for r in cur.fetchall()]
        if dialect == "sqlite":
            out = {"master": rows("SELECT type, name, tbl_name, sql FROM sqlite_master "
                                  "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"),
                   "autoindexes": rows("SELECT name, tbl_name FROM sqlite_master "
                                       "WHERE name LIKE 'sqlite_autoindex_%' ORDER BY 1")}
            if any(r[1] == "sqlite_sequence" for r in rows("SELECT type, name FROM sqlite_master")):
                out["sqlite_sequence"] = rows("SELECT name, seq FROM sqlite_sequence ORDER BY 1")
        elif dialect == "postgresql":
            ns = "n.nspname = current_schema()"
            out = {
                "columns": rows(
                    "SELECT c.relname, c.relkind, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), "
                    "a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, "
                    "(SELECT collname FROM pg_collation WHERE oid = a.attcollation), col_description(c.oid, a.attnum) "
                    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                    f"WHERE {ns} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 "
                    "AND NOT a.attisdropped ORDER BY 1, 3"),
                "constraints": rows(
                    "SELECT t.relname, c.conname, c.contype, pg_get_constraintdef(c.oid, true) "
                    "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
                    f"JOIN pg_namespace n ON n.oid = t.relnamespace WHERE {ns} ORDER BY 1, 2, 4"),
                "indexes": rows("SELECT tablename, indexname, indexdef FROM pg_indexes "
                                "WHERE schemaname = current_schema() ORDER BY 1, 2"),
                "sequences": rows("SELECT sequencename, data_type::text, start_value, min_value, "
                                  "max_value, increment_by, cycle, cache_size, last_value FROM pg_sequences "
                                  "WHERE schemaname = current_schema() ORDER BY 1"),
                "types": rows("SELECT t.typname, t.typtype, e.enumlabel FROM pg_type t "
                              "JOIN pg_namespace n ON n.oid = t.typnamespace "
                              "LEFT JOIN pg_enum e ON e.enumtypid = t.oid "
                              f"WHERE {ns} AND t.typtype IN ('e', 'd', 'c') AND t.typrelid = 0 "
                              "ORDER BY 1, e.enumsortorder"),
                "triggers": rows("SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid, true) FROM pg_trigger t "
                                 "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 f"WHERE {ns} AND NOT t.tgisinternal ORDER BY 1, 2"),
                "views": rows("SELECT viewname, definition FROM pg_views "
                              "WHERE schemaname = current_schema() ORDER BY 1"),
                "functions": rows("SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p "
                                  f"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {ns} AND p.prokind = 'f' ORDER BY 1, 2"),
            }
        else:
            tables = rows("SHOW FULL TABLES")
            out = {"tables": sorted(tables)}
            for name, _kind in sorted(tables):
                out["create " + name] = rows(f"SHOW CREATE TABLE `{name}`")[0][1]
            # The catalog too, so that the check does not rest on SHOW CREATE TABLE alone (which
            # is also what a MySQL entry replays).
            db = "WHERE TABLE_SCHEMA = DATABASE()"
            out["columns"] = rows(
                "SELECT TABLE_NAME, ORDINAL_POSITION, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, "
                "CHARACTER_SET_NAME, COLLATION_NAME, EXTRA, GENERATION_EXPRESSION, COLUMN_KEY, COLUMN_COMMENT "
                f"FROM information_schema.COLUMNS {db} ORDER BY 1, 2")
            out["indexes"] = rows("SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE, "
                                  "SUB_PART, INDEX_TYPE, COLLATION FROM information_schema.STATISTICS "
                                  f"{db} ORDER BY 1, 2, 3")
            out["constraints"] = rows("SELECT TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE FROM "
                                      f"information_schema.TABLE_CONSTRAINTS {db.replace('TABLE_', 'CONSTRAINT_')} "
                                      "ORDER BY 1, 2, 3")
            out["references"] = rows("SELECT TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME, UPDATE_RULE, "
                                     "DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS "
                                     "WHERE CONSTRAINT_SCHEMA = DATABASE() ORDER BY 1, 2")
            out["table_options"] = rows("SELECT TABLE_NAME, TABLE_TYPE, ENGINE, ROW_FORMAT, TABLE_COLLATION, "
                                        f"CREATE_OPTIONS, TABLE_COMMENT FROM information_schema.TABLES {db} "
                                        "ORDER BY 1")
            out["triggers"] = rows("SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME, EVENT_MANIPULATION, ACTION_TIMING, "
                                   "ACTION_ORDER, ACTION_STATEMENT, SQL_MODE, DEFINER, CHARACTER_SET_CLIENT, "
                                   "COLLATION_CONNECTION FROM information_schema.TRIGGERS "
                                   "WHERE TRIGGER_SCHEMA = DATABASE() ORDER BY 1, 2")
        try:
            out[ALEMBIC_TABLE] = sorted(r[0] for r in rows(f"SELECT version_num FROM {ALEMBIC_TABLE}"))
        except Exception:  # noqa: BLE001 - no such table: the fingerprint says so
            if dialect == "postgresql":
                dbapi_conn.rollback()
            out[ALEMBIC_TABLE] = None
        return json.loads(json.dumps(out, default=str))  # as it reads back from the file
    finally:
        cur.close()


# ----------------------------------------------------------------------------- recording
_SIDE_EFFECTS = re.compile(r"\b(setval|nextval|set_config|pg_advisory\w*|lo_\w+)\s*\(|\bINTO\b", re.I)


def _is_read(statement: str) -> bool:
    """A statement that cannot change the database: reflection between migration steps."""
    head = statement.lstrip()[:12].upper()
    if head.startswith("SELECT"):
        return not _SIDE_EFFECTS.search(statement)
    if head.startswith("PRAGMA"):
        return "=" not in statement
    return head.startswith(("SHOW", "DESCRIBE", "EXPLAIN"))


def _jsonable(v) -> bool:
    if v is None or isinstance(v, (str, int, float, bool)):
        return not isinstance(v, float) or v == v
    if isinstance(v, (list, tuple)):
        return all(_jsonable(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _jsonable(x) for k, x in v.items())
    return False


class Recorder:
    """Records what a SQLAlchemy engine sends that could change the database, and where its
    transactions end (see the module docstring). ``ok`` is False when something could not be
    recorded faithfully (then nothing is stored)."""

    def __init__(self, engine):
        from sqlalchemy import event
        self.steps: list[list] = []
        self.ok = True
        self.engine = engine

        def execute(conn, cursor, statement, parameters, context, executemany):
            if _is_read(statement):
                return
            if not _jsonable(parameters):
                self.ok = False
                return
            no_params = bool(getattr(context, "no_parameters", False)) and not executemany
            self.steps.append(["many" if executemany else ("bare" if no_params else "exec"),
                               statement, parameters])

        event.listen(engine, "before_cursor_execute", execute)
        event.listen(engine, "commit", lambda conn: self.steps.append(["commit"]))
        event.listen(engine, "rollback", lambda conn: self.steps.append(["rollback"]))


def store(url: str, revision: str, dialect: str, recorder: Recorder) -> Path | None:
    """Write a cache entry for the schema just built in `url` by MLflow's migrations (recorded by
    `recorder`). Returns its path, or None when the cache is off or the build was not recordable.
    Never raises: the cache is only a shortcut."""
    try:
        if (dialect == "postgresql" and not recorder.ok) or cache_dir() is None:
            return None
        engine = _engine(url)
        try:
            raw = engine.raw_connection()
            try:
                conn = raw.driver_connection
                key = entry_key(revision, dialect, engine.url.drivername, server_key(conn, dialect))
                if key is None:
                    return None
                steps = recorder.steps if dialect == "postgresql" else dump(conn, dialect)
                print_ = fingerprint(conn, dialect)
                _end(conn, dialect)
                if not steps:
                    return None
            finally:
                raw.close()
        finally:
            engine.dispose()
        path = _path(key)
        body = {"key": key, "steps": steps, "fingerprint": print_}
        text = json.dumps(body, sort_keys=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"sha256": hashlib.sha256(text.encode()).hexdigest(), "entry": body},
                               sort_keys=True))
        os.replace(tmp, path)
        log.debug("schema cache: stored %s (%d statements)", path, len(steps))
        return path
    except Exception as exc:  # noqa: BLE001
        log.debug("schema cache: not stored: %s: %s", type(exc).__name__, exc)
        return None


def _load(path: Path, key: dict) -> dict | None:
    try:
        doc = json.loads(path.read_text())
        body = doc["entry"]
        text = json.dumps(body, sort_keys=True)
        if hashlib.sha256(text.encode()).hexdigest() != doc["sha256"] or body["key"] != key:
            raise ValueError("checksum or key differs")
        return body
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a damaged entry is a miss, and goes
        log.info("schema cache: dropping the unreadable entry %s (%s)", path, exc)
        _forget(path)
        return None


def _forget(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _engine(url: str):
    from sqlalchemy.pool import NullPool

    from dbmigrate.netbounds import bounded_engine
    from dbmigrate.sql_schema import _mlflow_url
    return bounded_engine(_mlflow_url(url), poolclass=NullPool)


def _end(conn, dialect: str) -> None:
    if dialect == "postgresql":
        conn.rollback()
    else:
        conn.commit()


def dump(conn, dialect: str) -> list | None:
    """SQLite, MySQL/MariaDB: the statements that make the schema in the connection's database
    again, from the engine's own record of it: SQLite keeps the text of every CREATE statement in
    sqlite_master, as the migrations left it (ALTER TABLE rewrites it there); MySQL's SHOW CREATE
    TABLE gives each table complete. Replaying the migrations' own statements instead is exact
    too, but slow on these engines (MariaDB rebuilds a table for each of ~150 ALTERs: ~12 s; SQLite
    commits every DDL statement on its own). None when the schema holds something this does not
    rebuild (a MySQL view: MLflow makes none)."""
    cur = conn.cursor()
    try:
        steps: list = []
        if dialect == "sqlite":
            cur.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                        "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2 "
                        "ELSE 3 END, rowid")
            made = cur.fetchall()
            steps.append(["bare", "BEGIN", None])
            steps += [["bare", sql, None] for _k, _n, sql in made if sql]
            cur.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_sequence'")
            if cur.fetchone():
                cur.execute("SELECT name, seq FROM sqlite_sequence")
                steps += [["exec", "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", list(r)]
                          for r in cur.fetchall()]
            mark = "?"
        else:
            cur.execute("SHOW FULL TABLES")
            made = sorted(cur.fetchall())
            if any(kind != "BASE TABLE" for _n, kind in made):
                return None
            steps.append(["bare", "SET SESSION FOREIGN_KEY_CHECKS = 0", None])
            for name, _kind in made:
                cur.execute(f"SHOW CREATE TABLE `{name}`")
                steps.append(["bare", cur.fetchone()[1], None])
            steps.append(["bare", "SET SESSION FOREIGN_KEY_CHECKS = 1", None])
            cur.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() "
                        "ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER")
            for (trigger,) in cur.fetchall():
                cur.execute(f"SHOW CREATE TRIGGER `{trigger}`")
                text = cur.fetchone()[2]
                # Made by whoever runs the migrations, as MLflow's own CREATE TRIGGER names no definer.
                steps.append(["bare", re.sub(r"\bDEFINER\s*=\s*(`[^`]*`|'[^']*'|\S+)@(`[^`]*`|'[^']*'|\S+)\s*",
                                             "", text, count=1), None])
            mark = "%s"
        cur.execute(f"SELECT version_num FROM {ALEMBIC_TABLE}")
        steps += [["exec", f"INSERT INTO {ALEMBIC_TABLE} (version_num) VALUES ({mark})", [r[0]]]
                  for r in cur.fetchall()]
        steps.append(["commit"])
        return steps
    finally:
        cur.close()


# ----------------------------------------------------------------------------- replaying
def replay(url: str, revision: str, dialect: str) -> bool:
    """Build the schema at `revision` in the empty database `url` from the cache. True when done
    and its fingerprint is the recorded one; False on a miss, with the cache off, or when the
    result differed (then the database is empty again and the entry is gone): the caller then
    runs MLflow's migrations."""
    if cache_dir() is None or tools_key() is None:
        return False
    engine = _engine(url)
    try:
        raw = engine.raw_connection()
        try:
            conn = raw.driver_connection
            key = entry_key(revision, dialect, engine.url.drivername, server_key(conn, dialect))
            path = _path(key)
            entry = _load(path, key)
            if entry is None:
                log.debug("schema cache: no entry %s", path)
                return False
            cur = conn.cursor()
            try:
                steps = entry["steps"]
                script = _one_script(cur, steps) if dialect == "postgresql" else None
                if script is not None:  # one round trip for the ~360 statements
                    cur.execute(script)
                    steps = []
                for step in steps:
                    kind = step[0]
                    if kind in ("commit", "rollback"):
                        # PostgreSQL and SQLite: all in one transaction, committed once the
                        # result is checked (MySQL commits each DDL statement by itself anyway).
                        if dialect == "mysql":
                            conn.commit() if kind == "commit" else conn.rollback()
                        continue
                    statement, params = step[1], step[2]
                    if kind == "many":
                        cur.executemany(statement, [tuple(p) if isinstance(p, list) else p for p in params])
                    elif kind == "bare":
                        cur.execute(statement)
                    else:
                        cur.execute(statement, tuple(params) if isinstance(params, list) else params)
                    if cur.description is not None:  # as SQLAlchemy did: results are consumed
                        cur.fetchall()
            except Exception as exc:  # noqa: BLE001
                log.info("schema cache: replaying %s failed (%s: %s); using MLflow's migrations",
                         path.name, type(exc).__name__, str(exc).strip().splitlines()[:1])
                cur.close()
                _undo(conn, dialect)
                _forget(path)
                return False
            cur.close()
            made = fingerprint(conn, dialect)
            if made != entry["fingerprint"]:
                log.info("schema cache: the replayed schema differs from the one MLflow's migrations "
                         "made (%s); using MLflow's migrations", path.name)
                _undo(conn, dialect)
                _forget(path)
                return False
            conn.commit()
            log.debug("schema cache: replayed %s (%d statements)", path.name, len(entry["steps"]))
            return True
        finally:
            raw.close()
    finally:
        engine.dispose()


def _one_script(cur, steps: list) -> str | None:
    """PostgreSQL (psycopg2): the steps as one script, each statement with its parameters bound
    by the driver as it binds them (mogrify), separated by a newline, a semicolon and a newline
    (a trailing -- comment cannot swallow the separator). None when the driver cannot bind
    client-side; then the steps run one by one."""
    mogrify = getattr(cur, "mogrify", None)
    if mogrify is None:
        return None
    parts = []
    for step in steps:
        kind = step[0]
        if kind in ("commit", "rollback"):
            continue
        if kind == "bare":
            parts.append(step[1])
        elif kind == "many":
            parts += [_text(mogrify(step[1], tuple(p) if isinstance(p, list) else p)) for p in step[2]]
        else:
            parts.append(_text(mogrify(step[1], tuple(step[2]) if isinstance(step[2], list) else step[2])))
    return "\n;\n".join(parts)


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _undo(conn, dialect: str) -> None:
    """Leave the database as empty as it was before a replay that did not go right, or raise
    SchemaError saying that it is not."""
    try:
        _drop_all(conn, dialect)
    except Exception as exc:  # noqa: BLE001
        from dbmigrate.errors import SchemaError
        raise SchemaError(f"A schema replayed from the cache differed from MLflow's and could not be "
                          f"removed again ({type(exc).__name__}: {str(exc)[:200]})",
                          hint="drop and recreate the target database, and run again with "
                               "DBMIGRATE_SCHEMA_CACHE=off") from None


def _drop_all(conn, dialect: str) -> None:
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001
        pass
    if dialect in ("postgresql", "sqlite"):
        return  # every step was in the one transaction just rolled back
    cur = conn.cursor()
    try:
        if dialect == "sqlite":
            cur.execute("PRAGMA foreign_keys = OFF")
            cur.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                        "AND type IN ('view', 'table')")
            for kind, name in cur.fetchall():
                cur.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')
        else:
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            cur.execute("SHOW FULL TABLES")
            for name, kind in cur.fetchall():
                cur.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS `{name}`")
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")
        conn.commit()
    finally:
        cur.close()
