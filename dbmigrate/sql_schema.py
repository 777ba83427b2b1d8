"""The MLflow schema of a SQL *target*: inspect it, create it at a given alembic revision, and check
that an existing one fits the source.

A target is always built by MLflow's own migrations, never by ``Base.metadata.create_all()`` of the
newest ORM (see mlflow-schema.md section 6: the ORM and the migrated database differ). This does
what MLflow's store initialisation does (``mlflow/store/db/utils.py``: ``create_sqlalchemy_engine``,
``_initialize_tables`` = ``InitialBase.metadata.create_all`` + ``_upgrade_db``), except that alembic
upgrades to the source's revision instead of ``heads``, and that MLflow's seed rows are left out:

* experiment 0 "Default", which MLflow's tracking store inserts when it opens a database, is not
  inserted (the source's own rows, its experiment 0 included, are copied afterwards);
* the ``workspaces`` row ``default`` that migration ``1b5f0d9ad7c1`` (3.10) inserts is removed
  again: every source at 3.10 or later has that row, and it is copied with the rest.

So a schema made here holds no row but ``alembic_version``.

MLflow (or mlflow-skinny, which ships ``mlflow/store/db_migrations`` too) is an optional dependency,
imported only when a schema has to be created.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from dbmigrate.errors import ConfigError, ConnectionFailed, MigrationError, SchemaError, TargetNotEmpty
from dbmigrate.mlflow_schema import REVISIONS, revision_index, schema_version
from dbmigrate.netbounds import bounded_engine
from dbmigrate.uri import mask_text

log = logging.getLogger(__name__)

ALEMBIC_TABLE = "alembic_version"
DEFAULT_EXPERIMENT_ID = 0
DEFAULT_EXPERIMENT_NAME = "Default"
DEFAULT_WORKSPACE = "default"
# What migration 1b5f0d9ad7c1 (MLflow 3.10) writes into the new workspaces table.
_SEED_WORKSPACE_DESCRIPTION = "Default workspace for legacy resources"

_NEEDS_MLFLOW_HINT = "pip install 'dbmigrate[sql]' (mlflow-skinny)"


@dataclass
class TargetState:
    revision: str | None          # alembic_version.version_num, None if no alembic_version table
    tables: set[str]              # existing table names
    rows: dict[str, int]          # row count per existing MLflow table (non-zero ones only)
    # The only data is MLflow's default experiment 0 ('Default', no runs/tags), as MLflow's store
    # init creates it, plus (3.10+) the workspace 'default' MLflow's migration seeds: see
    # inspect_target.
    default_experiment_only: bool
    # Which of those seed rows are there (table -> 1); not part of the comparison of states.
    seed_rows: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def is_empty(self) -> bool:
        """No tables at all."""
        return not self.tables

    @property
    def has_data(self) -> bool:
        """Any row outside alembic_version (MLflow's seed rows count as data here)."""
        return bool(self.rows)


# ----------------------------------------------------------------------------- helpers
def _mlflow_url(url: str) -> str:
    """The URL as MLflow's code must see it. ``mariadb+driver://`` becomes ``mysql+driver://``:
    with a mariadb:// URL SQLAlchemy names the dialect "mariadb", and MLflow's migrations branch on
    ``engine.name == "mysql"`` (and create_sqlalchemy_engine on the ``mysql`` prefix), so they would
    build a different schema from the one MLflow builds on the same server."""
    scheme, sep, rest = url.partition("://")
    if sep and "+" not in scheme and scheme.lower() in ("postgresql", "postgres", "mysql", "mariadb"):
        from dbmigrate.uri import parse_uri  # a plain URL: pick the installed driver
        url = parse_uri(url, role="target").sqlalchemy_url()
        scheme, sep, rest = url.partition("://")
    if sep and scheme.split("+", 1)[0].lower() == "mariadb":
        driver = scheme.split("+", 1)[1] if "+" in scheme else ""
        return ("mysql+" + driver if driver else "mysql") + "://" + rest
    return url


def _masked(url: str) -> str:
    return mask_text(str(url))


def _connect_error(url: str, exc: Exception) -> ConnectionFailed:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return ConnectionFailed(f"Cannot connect to the target database {_masked(url)}: "
                            f"{mask_text(detail[0] if detail else type(exc).__name__)}")


def _load_mlflow():
    """MLflow's db utilities, alembic's command module and ScriptDirectory, and MLflow's version.
    ConfigError when MLflow (or mlflow-skinny) is not installed."""
    try:
        from alembic import command
        from alembic.script import ScriptDirectory

        import mlflow.store.db.utils as db_utils
        from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase
        from mlflow.version import VERSION
    except ImportError as exc:
        log.debug("MLflow's migrations cannot be imported: %s", exc)
        raise ConfigError("Writing to a SQL target needs MLflow's schema migrations",
                          hint=_NEEDS_MLFLOW_HINT) from None
    return db_utils, command, ScriptDirectory, InitialBase, VERSION


def _installed_chain(db_utils, ScriptDirectory) -> dict[str, str | None]:
    """revision -> down_revision of the installed MLflow's migrations."""
    config = db_utils._get_alembic_config(db_url="")
    script = ScriptDirectory.from_config(config)
    return {s.revision: s.down_revision for s in script.walk_revisions()}


def _check_installed_mlflow_knows(revision: str) -> tuple:
    """Load MLflow and make sure its migrations reach `revision` along the known chain."""
    sv = schema_version(revision)  # SchemaError for a revision dbmigrate does not know
    mods = _load_mlflow()
    db_utils, _command, ScriptDirectory, _initial, version = mods
    chain = _installed_chain(db_utils, ScriptDirectory)
    if revision not in chain:
        heads = [r for r in chain if r not in {d for d in chain.values() if d}]
        raise SchemaError(
            f"Cannot create the target schema at {sv.describe()}: the installed MLflow "
            f"{version} does not know revision {revision} (its newest is "
            f"{', '.join(heads) or 'none'})",
            table=ALEMBIC_TABLE,
            hint=f"install MLflow/mlflow-skinny >= {sv.release} (e.g. pip install "
                 f"'mlflow-skinny>={sv.release}') where dbmigrate runs")
    # The installed chain down to `revision` must be the one dbmigrate knows (not a fork).
    walked, rev = [], revision
    while rev is not None and len(walked) <= len(chain):
        walked.append(rev)
        rev = chain.get(rev)
    walked.reverse()
    expected = REVISIONS[: revision_index(revision) + 1]
    if walked != expected:
        first = next((i for i, (a, b) in enumerate(zip(walked, expected)) if a != b),
                     min(len(walked), len(expected)))
        raise SchemaError(
            f"The installed MLflow {version} reaches alembic revision {revision} through a "
            f"different migration chain than MLflow's releases (they part at step {first + 1})",
            table=ALEMBIC_TABLE, hint="install an official MLflow/mlflow-skinny release")
    return mods


def _count_rows(conn, tables) -> dict[str, int]:
    """Rows per table, in one statement (65 round trips cost a small migration ~0.1-0.3 s)."""
    import sqlalchemy as sa

    names = sorted(t for t in tables if t != ALEMBIC_TABLE)
    if not names:
        return {}
    counts = sa.union_all(*(sa.select(sa.literal(i), sa.func.count()).select_from(sa.table(name))
                            for i, name in enumerate(names)))
    return {names[i]: int(n) for i, n in conn.execute(counts).fetchall() if n}


def _seed_rows(conn, rows: dict[str, int]) -> dict[str, int]:
    """MLflow's own seed rows among `rows`: experiment 0 'Default' and workspace 'default'."""
    import sqlalchemy as sa

    seeds: dict[str, int] = {}
    if rows.get("experiments") == 1:
        exp = sa.table("experiments", sa.column("experiment_id"), sa.column("name"),
                       sa.column("lifecycle_stage"))
        row = conn.execute(
            sa.select(exp.c.experiment_id, exp.c.name, exp.c.lifecycle_stage)).first()
        if row is not None and int(row[0]) == DEFAULT_EXPERIMENT_ID \
                and row[1] == DEFAULT_EXPERIMENT_NAME and row[2] in (None, "active"):
            seeds["experiments"] = 1
    if rows.get("workspaces") == 1:
        ws = sa.table("workspaces", sa.column("name"))
        if conn.execute(sa.select(ws.c.name)).scalar() == DEFAULT_WORKSPACE:
            seeds["workspaces"] = 1
    return seeds


# ----------------------------------------------------------------------------- API
def inspect_target(url: str) -> TargetState:
    """What the target database holds: its alembic revision, tables and row counts.

    `url` is a SQLAlchemy URL with a driver (e.g. ``postgresql+psycopg2://...``). Needs no MLflow.
    ``default_experiment_only`` is True when there are rows and every one is a row MLflow writes
    itself: experiment 0 'Default' as the tracking store inserts it (runs or tags of it would be
    rows of other tables), and, from MLflow 3.10, the ``workspaces`` row 'default' that MLflow's
    migration seeds (a target made by ``mlflow db upgrade`` alone holds only that one).
    ``seed_rows`` says which of the two are there. The writer must overwrite (or delete, see
    ``clear_seed_rows``) them before copying the source's own experiment 0 and workspace.
    """
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    try:
        engine = bounded_engine(url, poolclass=NullPool)
    except Exception as exc:  # bad URL or missing driver
        raise ConfigError(f"Cannot open the target database {_masked(url)}: "
                          f"{mask_text(str(exc))}") from None
    try:
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise _connect_error(url, exc) from None
        with conn:
            tables = set(sa.inspect(conn).get_table_names())
            revision = None
            if ALEMBIC_TABLE in tables:
                versions = [r[0] for r in conn.execute(sa.text(
                    f"SELECT version_num FROM {ALEMBIC_TABLE}")).fetchall()]
                if len(versions) > 1:
                    raise SchemaError(
                        f"The target's alembic_version holds several revisions "
                        f"({', '.join(sorted(versions))}): a branched or broken MLflow schema",
                        table=ALEMBIC_TABLE, hint="use an empty target database")
                revision = versions[0] if versions else None
            rows = _count_rows(conn, tables)
            seeds = _seed_rows(conn, rows)
    finally:
        engine.dispose()
    default_only = bool(rows) and rows == seeds
    return TargetState(revision=revision, tables=tables, rows=rows,
                       default_experiment_only=default_only, seed_rows=seeds)


def create_schema(url: str, revision: str) -> None:
    """Build MLflow's schema at alembic `revision` in an empty database, exactly as MLflow's store
    initialisation (or ``mlflow db upgrade``) would build it at that revision, without MLflow's
    seed rows (see the module docstring).

    Raises SchemaError for a revision dbmigrate does not know or the installed MLflow cannot reach,
    TargetNotEmpty if the database already has tables, ConnectionFailed if it cannot be reached,
    ConfigError if MLflow is not installed."""
    import sqlalchemy as sa

    sv = schema_version(revision)
    db_utils, command, _script_dir, InitialBase, version = _check_installed_mlflow_knows(revision)
    mlflow_url = _mlflow_url(url)

    state = inspect_target(url)
    if state.tables:
        raise TargetNotEmpty(
            f"Cannot create the MLflow schema in {_masked(url)}: the database already has "
            f"{len(state.tables)} table(s) ({', '.join(sorted(state.tables)[:10])}"
            f"{', ...' if len(state.tables) > 10 else ''})",
            hint="give an empty target database (drop and recreate it)")

    log.info("Creating the MLflow schema at %s with MLflow %s's migrations in %s",
             sv.describe(), version, _masked(url))
    # As MLflow's create_sqlalchemy_engine_with_retry, minus the retries (a target that cannot be
    # reached should fail now, not in a minute and a half).
    make_parent_dirs = getattr(db_utils, "_make_parent_dirs_if_sqlite", None)
    if make_parent_dirs is not None:
        make_parent_dirs(mlflow_url)
    # MLflow's own engine: pool_pre_ping, the MLFLOW_SQLALCHEMYSTORE_* pool settings and, for MySQL,
    # the MLFLOW_MYSQL_SSL_CA/CERT/KEY connect_args.
    engine = db_utils.create_sqlalchemy_engine(mlflow_url)
    from dbmigrate import schema_cache
    recorder = schema_cache.Recorder(engine)  # what the migrations send, for the schema cache
    try:
        try:
            with engine.connect():
                pass
        except sa.exc.DBAPIError as exc:
            raise _connect_error(url, exc) from None
        check_sqlite = getattr(db_utils, "_check_sqlite_version", None)
        if check_sqlite is not None:
            try:
                check_sqlite(mlflow_url)
            except Exception as exc:  # MlflowException: SQLite too old for computed columns
                raise ConfigError(mask_text(str(getattr(exc, "message", exc)))) from None
        try:
            # _initialize_tables(): the pre-migration (0.9.1) tables, then alembic ...
            InitialBase.metadata.create_all(engine)
            alembic_upgrade(db_utils, command, engine, revision)
            # Migration 1b5f0d9ad7c1 seeds the 'default' workspace; the source's row is copied.
            with engine.begin() as connection:
                if "workspaces" in sa.inspect(connection).get_table_names():
                    ws = sa.table("workspaces", sa.column("name"))
                    connection.execute(sa.delete(ws).where(ws.c.name == DEFAULT_WORKSPACE))
        except (SchemaError, ConnectionFailed, ConfigError):
            raise
        except Exception as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise SchemaError(
                f"MLflow {version}'s migrations failed while creating the schema at "
                f"{sv.describe()} in {_masked(url)}: {type(exc).__name__}: "
                f"{detail[0] if detail else ''}",
                hint="the target database may be left partly built (MySQL/MariaDB cannot roll "
                     "back DDL); drop and recreate it empty before trying again") from exc
    finally:
        engine.dispose()

    made = inspect_target(url)
    if made.revision != revision or made.rows:
        raise SchemaError(
            f"After MLflow's migrations the target is at revision {made.revision} with rows "
            f"{made.rows}, not at {revision} and empty", table=ALEMBIC_TABLE)
    missing = sv.expected_tables - made.tables
    if missing:
        raise SchemaError(f"MLflow's migrations to {revision} did not create the table(s) "
                          f"{', '.join(sorted(missing))} that {sv.describe()} has",
                          table=ALEMBIC_TABLE)
    schema_cache.store(url, revision, engine.url.get_backend_name(), recorder)


def alembic_upgrade(db_utils, command, engine, revision: str) -> None:
    """What MLflow's _upgrade_db (`mlflow db upgrade`) runs, to `revision` instead of "heads"."""
    config = db_utils._get_alembic_config(str(engine.url))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def create_schema_isolated(url: str, revision: str) -> None:
    """create_schema in a child process, so that MLflow (a few hundred MB once imported) never
    stays in the migrating process. The URL goes through the environment, never the command line;
    an error comes back as the same MigrationError subclass, message, table and hint."""
    import json
    import os
    import subprocess
    import sys

    log.info("Creating the MLflow schema at %s with MLflow's migrations in %s (child process)",
             schema_version(revision).describe(), _masked(url))
    env = dict(os.environ, DBMIGRATE_SCHEMA_URL=url)
    res = subprocess.run([sys.executable, "-m", "dbmigrate.sql_schema", revision], env=env,
                         capture_output=True, text=True)
    if res.returncode == 0:
        return
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("DBMIGRATE_ERROR ")]
    if not lines:
        raise SchemaError(f"Creating the MLflow schema in {_masked(url)} failed: "
                          + mask_text((res.stderr.strip().splitlines() or ["(no output)"])[-1]))
    err = json.loads(lines[-1].removeprefix("DBMIGRATE_ERROR "))
    from dbmigrate import errors
    cls = getattr(errors, err["type"], SchemaError)
    if not (isinstance(cls, type) and issubclass(cls, errors.MigrationError)):
        cls = SchemaError
    raise cls(err["message"], table=err.get("table"), hint=err.get("hint"))


def _replay_cached(url: str, revision: str) -> TargetState | None:
    """The schema from dbmigrate.schema_cache, when it holds this (revision, dialect, server,
    MLflow) and the replay gives exactly what MLflow's migrations made: the target's state after
    it. None: build it with MLflow's migrations."""
    import sqlalchemy as sa

    from dbmigrate import schema_cache
    dialect = sa.engine.make_url(_mlflow_url(url)).get_backend_name()
    try:
        done = schema_cache.replay(url, revision, dialect)
    except MigrationError:
        raise
    except Exception as exc:  # noqa: BLE001 - any doubt: MLflow's migrations decide
        log.info("Schema cache not used: %s: %s", type(exc).__name__, mask_text(str(exc))[:200])
        return None
    if not done:
        return None
    made = inspect_target(url)
    missing = schema_version(revision).expected_tables - made.tables
    if made.revision != revision or made.rows or missing:
        raise SchemaError(f"The cached MLflow schema replayed into {_masked(url)} is at revision "
                          f"{made.revision} with rows {made.rows}, missing {sorted(missing)}",
                          table=ALEMBIC_TABLE, hint="set DBMIGRATE_SCHEMA_CACHE=off, drop and "
                          "recreate the target database, and run again")
    log.info("Created the MLflow schema at %s in %s from the schema cache (what MLflow's "
             "migrations made, checked identical)", schema_version(revision).describe(), _masked(url))
    return made


def _main(argv: list[str]) -> int:
    """Child side of create_schema_isolated: python -m dbmigrate.sql_schema REVISION."""
    import json
    import os
    try:
        create_schema(os.environ["DBMIGRATE_SCHEMA_URL"], argv[0])
    except MigrationError as exc:
        print("DBMIGRATE_ERROR " + json.dumps({"type": type(exc).__name__, "message": exc.message,
                                               "table": exc.table, "hint": exc.hint}), flush=True)
        return 1
    return 0


def _describe(revision: str | None) -> str:
    if revision is None:
        return "no alembic revision"
    try:
        return schema_version(revision).describe()
    except SchemaError:
        return (f"alembic revision {revision} (unknown to dbmigrate: a newer MLflow than 3.18 "
                f"or a fork)")


def prepare_target(url: str, revision: str, *, allow_existing_schema: bool = True,
                   create: bool = True) -> TargetState:
    """Make sure the target can take the source's data at alembic `revision` (the source's).

    * no tables: the schema is created at `revision` (create_schema);
    * an MLflow schema: accepted when it is exactly at `revision`, has all the tables of that
      revision and holds no data but MLflow's seed rows (``default_experiment_only``); refused
      with SchemaError (other revision) or TargetNotEmpty (data);
      ``allow_existing_schema=False`` refuses any existing schema (TargetNotEmpty);
    * tables but no alembic_version: SchemaError, not an MLflow schema.

    Returns the target's state after preparation. ``create=False`` (a dry run) makes the same
    checks and refusals but creates nothing."""
    sv = schema_version(revision)  # unknown revision -> SchemaError before touching the target
    state = inspect_target(url)
    if not state.tables:
        if not create:
            return state
        made = _replay_cached(url, revision)
        if made is not None:
            return made
        create_schema_isolated(url, revision)
        return inspect_target(url)

    if ALEMBIC_TABLE not in state.tables:
        names = sorted(state.tables)
        raise SchemaError(
            f"The target database {_masked(url)} has tables ({', '.join(names[:10])}"
            f"{', ...' if len(names) > 10 else ''}) but no alembic_version table: "
            f"not an MLflow schema", table=ALEMBIC_TABLE,
            hint="give an empty target database (dbmigrate then creates the schema with "
                 "MLflow's migrations) or one made by MLflow")
    if state.revision is None:
        raise SchemaError(
            f"The target database {_masked(url)} has an empty alembic_version table: an "
            f"interrupted or broken MLflow schema", table=ALEMBIC_TABLE,
            hint="drop and recreate the target database empty")
    if not allow_existing_schema:
        raise TargetNotEmpty(
            f"The target database {_masked(url)} already has an MLflow schema "
            f"({_describe(state.revision)})",
            hint="give an empty target database, or allow an existing schema")

    if state.revision != revision:
        target_known = state.revision in REVISIONS
        if target_known and revision_index(state.revision) > revision_index(revision):
            fix = (f"the target must be at exactly the source's revision: either upgrade the "
                   f"source to the target's schema with `mlflow db upgrade <source-uri>` using "
                   f"MLflow {schema_version(state.revision).release_range} (back the source up "
                   f"first), or start from an empty target database (drop and recreate it; "
                   f"dbmigrate then creates the schema at the source's revision, and with "
                   f"--target-revision {state.revision} upgrades it there after the copy)")
        else:
            fix = ("the target must be at exactly the source's revision: start from an empty "
                   f"target database (drop and recreate it; dbmigrate then creates the schema at "
                   f"the source's revision)"
                   + (f", or upgrade the target with `mlflow db upgrade <target-uri>` using MLflow "
                      f"{sv.release_range}" if target_known else "")
                   + "; the source cannot be moved back to an older schema")
        raise SchemaError(
            f"The target database is at {_describe(state.revision)}, but the source is at "
            f"{sv.describe()}", table=ALEMBIC_TABLE, hint=fix)

    missing = sv.expected_tables - state.tables
    if missing:
        raise SchemaError(
            f"The target database is at alembic revision {revision} but lacks the table(s) "
            f"{', '.join(sorted(missing))} that {sv.describe()} has: a partial or hand-edited "
            f"schema", table=ALEMBIC_TABLE, hint="drop and recreate the target database empty")

    if state.rows and not state.default_experiment_only:
        other = {t: n for t, n in state.rows.items() if state.seed_rows.get(t) != n}
        listed = ", ".join(f"{t} ({n} row{'s' if n != 1 else ''})" for t, n in sorted(other.items()))
        raise TargetNotEmpty(
            f"The target database already holds data: {listed}",
            table=next(iter(sorted(other))),
            hint="give an empty target database, or one holding only MLflow's default "
                 "experiment 0")
    return state


def clear_seed_rows(url: str) -> TargetState:
    """Delete MLflow's seed rows (experiment 0 'Default', workspace 'default') from a target whose
    only data they are (``default_experiment_only``), so the source's own rows can be copied in
    verbatim. Refuses (TargetNotEmpty) a target holding any other row. Returns the new state."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    state = inspect_target(url)
    if not state.rows:
        return state
    if not state.default_experiment_only:
        listed = ", ".join(f"{t} ({n})" for t, n in sorted(state.rows.items()))
        raise TargetNotEmpty(f"The target database holds data besides MLflow's seed rows: {listed}")
    engine = bounded_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            if "experiments" in state.seed_rows:
                exp = sa.table("experiments", sa.column("experiment_id"), sa.column("name"))
                conn.execute(sa.delete(exp).where(exp.c.experiment_id == DEFAULT_EXPERIMENT_ID,
                                                  exp.c.name == DEFAULT_EXPERIMENT_NAME))
            if "workspaces" in state.seed_rows:
                ws = sa.table("workspaces", sa.column("name"))
                conn.execute(sa.delete(ws).where(ws.c.name == DEFAULT_WORKSPACE))
    finally:
        engine.dispose()
    return inspect_target(url)


def installed_head() -> str:
    """The newest alembic revision the installed MLflow's migrations reach: the schema a SQL
    target gets when the source has no revision of its own (a database the mlflow-mongodb store
    wrote)."""
    db_utils, _command, ScriptDirectory, _initial, _version = _load_mlflow()
    chain = _installed_chain(db_utils, ScriptDirectory)
    heads = [r for r in chain if r not in {d for d in chain.values() if d}]
    if len(heads) != 1:
        raise SchemaError(f"The installed MLflow's migrations have {len(heads)} heads; expected one")
    return heads[0]


if __name__ == "__main__":
    import sys as _sys
    _sys.exit(_main(_sys.argv[1:]))
