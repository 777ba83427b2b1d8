"""dbmigrate.sql_schema against real servers: the schema create_schema builds at a revision is the
one MLflow itself builds at that revision (MLflow 3.17.2 here, MLflow 2.22.5 in its own virtualenv),
and prepare_target refuses targets that do not fit.

Each comparison builds the reference database with MLflow's own client (store initialisation) in a
subprocess, started before create_schema runs so that the two work side by side. The only
difference allowed, and asserted explicitly, is in the rows: MLflow's store initialisation inserts
experiment 0 "Default" (and from 3.10 its migration seeds the workspace 'default'), create_schema
leaves both out because the source's own rows are copied afterwards.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from dbmigrate.errors import SchemaError, TargetNotEmpty
from dbmigrate.sql_schema import clear_seed_rows, create_schema, inspect_target, prepare_target
from tests.support import servers

ROOT = Path(__file__).resolve().parent.parent
MLFLOW3_HEAD = "dc11669786a5"   # MLflow 3.17.x, installed in the main environment
MLFLOW2_HEAD = "0584bdc529eb"   # MLflow 2.18.0 - 2.22.5 (2.22.5 in .venv-mlflow2)
MLFLOW318_HEAD = "f4a9b2c7d1e6"  # MLflow 3.18.0, newer than the installed 3.17.2

_INIT_CODE = ("import sys\nfrom mlflow import MlflowClient\n"
              "for uri in sys.argv[1:]:\n    MlflowClient(uri).search_experiments()\n")


# ----------------------------------------------------------------------------- databases
@pytest.fixture(scope="module")
def mysql_base() -> str:
    return servers.mysql_base_uri()


@pytest.fixture
def new_db(pg_base, mysql_base, tmp_path):
    """new_db(kind) -> SQLAlchemy URL (with driver) of a fresh, empty database; all dropped after."""
    made: list[tuple[str, str]] = []

    def make(kind: str) -> str:
        if kind == "postgresql":
            name = servers.create_pg_database(pg_base, "dbm_schema")
            made.append((kind, name))
            return servers.mlflow_uri(servers.pg_database(pg_base, name))
        if kind == "mysql":  # utf8mb4 / utf8mb4_bin, as create_mysql_database makes it
            name = servers.create_mysql_database(mysql_base, "dbm_schema")
            made.append((kind, name))
            return servers.mlflow_uri(servers.mysql_database(mysql_base, name))
        path = tmp_path / f"db{len(made)}.sqlite"
        made.append((kind, str(path)))
        return f"sqlite:///{path}"

    yield make
    for kind, name in made:
        if kind == "postgresql":
            servers.drop_pg_database(pg_base, name)
        elif kind == "mysql":
            servers.drop_mysql_database(mysql_base, name)


def start_mlflow_init(uri: str, cwd: Path, *, mlflow2: bool = False) -> subprocess.Popen:
    """Let MLflow itself initialise `uri` (MlflowClient(...).search_experiments()) in a subprocess:
    MLflow 3.17.2 from this environment, or MLflow 2.22.5 from .venv-mlflow2."""
    if mlflow2:
        from tests.support import mlflow2 as m2
        cmd, env = [str(m2.ensure_env()), "-s", "-E", "-c", _INIT_CODE, uri], m2._clean_env()
    else:
        cmd, env = [sys.executable, "-c", _INIT_CODE, uri], None
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_ok(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"MLflow's initialisation failed:\n{err[-3000:]}"


# ----------------------------------------------------------------------------- snapshots
def _n(value):
    """Normalise reflected values into comparable, hashable, readable structures."""
    if isinstance(value, dict):
        return tuple(sorted((k, _n(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_n(v) for v in value)
    if isinstance(value, str):
        return re.sub(r"\s+", " ", value).strip()
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, sa.types.TypeEngine):
        return str(value)
    if isinstance(value, sa.Computed):
        return ("computed", _n(str(value.sqltext)), value.persisted)
    return _n(repr(value))


def schema_snapshot(url: str) -> dict:
    """Everything about the schema the inspector (and the catalog, for triggers and the columns'
    server-side details) can tell, per table, plus the row counts."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            dialect = conn.dialect.name
            tables = {}
            for t in sorted(insp.get_table_names()):
                tables[t] = {
                    "columns": _n([{k: v for k, v in c.items()} for c in insp.get_columns(t)]),
                    "primary_key": _n(insp.get_pk_constraint(t)),
                    "indexes": tuple(sorted(_n(insp.get_indexes(t)), key=repr)),
                    "foreign_keys": tuple(sorted(_n(insp.get_foreign_keys(t)), key=repr)),
                    "unique": tuple(sorted(_n(insp.get_unique_constraints(t)), key=repr)),
                    "checks": tuple(sorted(_n(insp.get_check_constraints(t)), key=repr)),
                    "options": _n(insp.get_table_options(t)),
                }
            extra = {}
            if dialect == "postgresql":
                extra["catalog_columns"] = _n([tuple(r) for r in conn.exec_driver_sql(
                    "SELECT table_name, column_name, ordinal_position, column_default, is_nullable,"
                    " data_type, character_maximum_length, numeric_precision, is_identity,"
                    " is_generated, generation_expression, collation_name"
                    " FROM information_schema.columns WHERE table_schema = 'public'"
                    " ORDER BY table_name, ordinal_position")])
                extra["sequences"] = tuple(sorted(insp.get_sequence_names()))
                extra["triggers"] = _n([tuple(r) for r in conn.exec_driver_sql(
                    "SELECT event_object_table, trigger_name, event_manipulation, action_timing,"
                    " action_orientation, action_statement FROM information_schema.triggers"
                    " ORDER BY 1, 2, 3")])
                extra["functions"] = _n([tuple(r) for r in conn.exec_driver_sql(
                    "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n"
                    " ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1")])
            elif dialect in ("mysql", "mariadb"):
                extra["catalog_columns"] = _n([tuple(r) for r in conn.exec_driver_sql(
                    "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_DEFAULT, IS_NULLABLE,"
                    " COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, EXTRA,"
                    " GENERATION_EXPRESSION FROM information_schema.COLUMNS"
                    " WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION")])
                extra["triggers"] = _n([tuple(r) for r in conn.exec_driver_sql(
                    "SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME, EVENT_MANIPULATION, ACTION_TIMING,"
                    " ACTION_STATEMENT FROM information_schema.TRIGGERS"
                    " WHERE TRIGGER_SCHEMA = DATABASE() ORDER BY 1, 2")])
            else:
                extra["triggers_views"] = _n([tuple(r) for r in conn.exec_driver_sql(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master"
                    " WHERE type IN ('trigger', 'view') ORDER BY 2")])
            rows = {}
            for t in tables:
                n = conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar()
                if n:
                    rows[t] = n
            revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    finally:
        engine.dispose()
    return {"tables": tables, "extra": extra, "rows": rows, "revision": revision}


def assert_same_schema(ours: dict, mlflows: dict) -> None:
    assert ours["revision"] == mlflows["revision"]
    assert sorted(ours["tables"]) == sorted(mlflows["tables"]), "different tables"
    for table in mlflows["tables"]:
        for aspect, value in mlflows["tables"][table].items():
            assert ours["tables"][table][aspect] == value, f"{table}: {aspect} differ"
    for aspect, value in mlflows["extra"].items():
        assert ours["extra"][aspect] == value, f"{aspect} differ"


# ----------------------------------------------------------------------------- create_schema
@pytest.mark.parametrize("kind", ["postgresql", "mysql", "sqlite"])
def test_create_schema_matches_mlflow_3_17(new_db, tmp_path, kind):
    ours_url, ref_url = new_db(kind), new_db(kind)
    proc = start_mlflow_init(ref_url, tmp_path)
    # For MariaDB, the URL DatabaseURI.sqlalchemy_url() gives for a mariadb:// target: SQLAlchemy
    # then names the dialect "mariadb", and create_schema must still run MLflow's "mysql" branches.
    create_url = ours_url.replace("mysql+pymysql://", "mariadb+pymysql://", 1)
    create_schema(create_url, MLFLOW3_HEAD)
    wait_ok(proc)

    ours, mlflows = schema_snapshot(ours_url), schema_snapshot(ref_url)
    assert mlflows["revision"] == MLFLOW3_HEAD
    assert_same_schema(ours, mlflows)
    assert len(ours["tables"]) > 60
    # The one intended difference: MLflow's store initialisation inserts experiment 0 'Default',
    # and MLflow 3.10's workspace migration seeds the workspace 'default'. create_schema leaves
    # both out (the source's own rows are copied afterwards); only alembic_version has a row.
    assert mlflows["rows"] == {"alembic_version": 1, "experiments": 1, "workspaces": 1}
    assert ours["rows"] == {"alembic_version": 1}
    # A target MLflow initialised itself holds only that: prepare_target accepts it as it is.
    state = prepare_target(ref_url, MLFLOW3_HEAD)
    assert state.revision == MLFLOW3_HEAD and state.default_experiment_only is True
    assert state.rows == {"experiments": 1, "workspaces": 1} == state.seed_rows
    # With MLflow's seed rows cleared, MLflow's own database equals create_schema's, rows included.
    assert clear_seed_rows(ref_url).rows == {}
    assert schema_snapshot(ref_url) == ours


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_create_schema_matches_mlflow_2_22(new_db, tmp_path, kind):
    """An older revision comes out exactly as the older MLflow (2.22.5) makes it."""
    ours_url, ref_url = new_db(kind), new_db(kind)
    proc = start_mlflow_init(ref_url, tmp_path, mlflow2=True)
    create_schema(ours_url, MLFLOW2_HEAD)
    wait_ok(proc)

    ours, mlflows = schema_snapshot(ours_url), schema_snapshot(ref_url)
    assert mlflows["revision"] == MLFLOW2_HEAD
    assert_same_schema(ours, mlflows)
    assert "logged_models" not in ours["tables"] and "trace_info" in ours["tables"]
    # MLflow 2.22.5's store initialisation inserts experiment 0; 2.x has no workspaces.
    assert mlflows["rows"] == {"alembic_version": 1, "experiments": 1}
    assert ours["rows"] == {"alembic_version": 1}


# ----------------------------------------------------------------------------- prepare_target
def test_prepare_target_creates_schema_in_empty_database(new_db):
    url = new_db("sqlite")
    state = prepare_target(url, MLFLOW2_HEAD)
    assert state.revision == MLFLOW2_HEAD and state.rows == {}
    assert not state.default_experiment_only and "registered_model_aliases" in state.tables
    # Asked again with the same revision: the (empty) schema is accepted as it is.
    assert prepare_target(url, MLFLOW2_HEAD).revision == MLFLOW2_HEAD


def test_prepare_target_refuses_other_revision(new_db):
    url = new_db("postgresql")
    create_schema(url, MLFLOW3_HEAD)
    with pytest.raises(SchemaError) as err:
        prepare_target(url, MLFLOW2_HEAD)
    text = str(err.value)
    assert MLFLOW3_HEAD in text and MLFLOW2_HEAD in text
    assert "3.17.0 \u2013 3.17.2" in text and "2.18.0 \u2013 2.22.5" in text
    assert "mlflow db upgrade <source-uri>" in text and "empty target" in text


def test_prepare_target_refuses_data(new_db):
    url = new_db("postgresql")
    create_schema(url, MLFLOW3_HEAD)
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO experiments (experiment_id, name, lifecycle_stage, workspace)"
            " VALUES (0, 'Default', 'active', 'default'), (7, 'mine', 'active', 'default')")
    with pytest.raises(TargetNotEmpty) as err:
        prepare_target(url, MLFLOW3_HEAD)
    assert "experiments (2 rows)" in str(err.value)
    with pytest.raises(TargetNotEmpty):
        clear_seed_rows(url)  # only ever deletes MLflow's own seed rows

    # Experiment 0 alone, but with a tag: not MLflow's bare default experiment either.
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM experiments WHERE experiment_id = 7")
        conn.exec_driver_sql("INSERT INTO experiment_tags (key, value, experiment_id)"
                             " VALUES ('team', 'x', 0)")
    engine.dispose()
    with pytest.raises(TargetNotEmpty) as err:
        prepare_target(url, MLFLOW3_HEAD)
    assert "experiment_tags (1 row)" in str(err.value)


def test_prepare_target_refuses_newer_and_unknown_revisions(new_db):
    url = new_db("sqlite")
    with pytest.raises(SchemaError) as err:
        prepare_target(url, MLFLOW318_HEAD)
    text = str(err.value)
    import mlflow
    assert MLFLOW318_HEAD in text and mlflow.__version__ in text
    assert "install MLflow/mlflow-skinny >= 3.18" in text
    assert inspect_target(url).tables == set()  # refused before touching the database

    with pytest.raises(SchemaError) as err:
        prepare_target(url, "0123456789ab")
    assert "Unknown alembic revision '0123456789ab'" in str(err.value)
    with pytest.raises(SchemaError):
        create_schema(url, "0123456789ab")


def test_prepare_target_refuses_non_mlflow_tables(new_db):
    url = new_db("sqlite")
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE experiments (id INTEGER PRIMARY KEY)")
    engine.dispose()
    with pytest.raises(SchemaError, match="not an MLflow schema"):
        prepare_target(url, MLFLOW3_HEAD)
