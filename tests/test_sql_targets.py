"""SQL targets: every ordered pair of PostgreSQL, MariaDB and SQLite, the way back from MongoDB in
both layouts, and the refusals. The judge is MLflow itself: its client on the target must answer
exactly as on the source, and the target must keep working (new ids continue after the copied)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.support import servers
from tests.support.mlflow_api import snapshot

ENGINES = ["postgresql", "mysql", "sqlite"]
PAIRS = [(a, b) for a in ENGINES for b in ENGINES if a != b] + [("postgresql", "postgresql")]


def _migrate(source, target, *extra, tmp_path=None):
    args = ["migrate", "--source", source, "--target", target, "--no-progress", *extra]
    report = None
    if tmp_path is not None:
        report = tmp_path / f"report-{abs(hash(target))}.json"
        args += ["--report-json", report]
    res = run_cli(*args)
    return res, (json.loads(report.read_text()) if report and report.exists() else None)


def _api(uri):
    return json.loads(json.dumps(snapshot(servers.mlflow_uri(uri)), default=str))


def _same_api(a: dict, b: dict):
    assert a["experiments"] and a["runs"] and a["traces"] and a["registered_models"]
    for section in a:
        assert b[section] == a[section], section


@pytest.mark.parametrize("src_engine, dst_engine", PAIRS)
def test_sql_pair(mlflow_source, sql_db, tmp_path, src_engine, dst_engine):
    src, ids = mlflow_source(src_engine, 3)
    dst = sql_db(dst_engine)
    res, report = _migrate(src, dst, "--verify", "full", tmp_path=tmp_path)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert report["verification"]["passed"] and report["revision"] == "dc11669786a5"
    assert all(c["match"] for c in report["verification"]["checksums"])
    import os
    if src_engine == "mysql" and (os.cpu_count() or 1) > 1:  # its snapshot is its connection's own
        assert any(n.startswith(f"one worker: a {src_engine} source") for n in report["notes"]), report["notes"]
    if src_engine == "sqlite":  # MLflow's file, in rollback-journal mode: shared (test_sqlite_shared_snapshot)
        assert not any(n.startswith("one worker") for n in report["notes"]), report["notes"]
    # PostgreSQL -> PostgreSQL goes byte for byte (binary COPY straight through) and is checked by
    # both servers' checksums; every other pair goes through Python and its checksums.
    server_checked = {c["table"] for c in report["verification"]["checksums"] if "server md5" in c["source"]}
    assert server_checked == ({c["table"] for c in report["verification"]["checksums"]}
                              if (src_engine, dst_engine) == ("postgresql", "postgresql") else set())
    _same_api(_api(src), _api(dst))
    # MLflow keeps working on the target: ids continue after the copied ones.
    from mlflow import MlflowClient
    c = MlflowClient(tracking_uri=servers.mlflow_uri(dst), registry_uri=servers.mlflow_uri(dst))
    top = max(int(e.experiment_id) for e in c.search_experiments(view_type=3))
    assert int(c.create_experiment("new-on-target")) > top
    assert c.create_model_version("reg-model", "s3://m/4").version == 4
    res = run_cli("verify", "--source", src, "--target", dst)
    assert res.returncode == 7  # the target now has more than the source: verify says so
    assert "FAILED experiments key" in res.stdout and "row on the target that the source does not have" in res.stdout


def test_mlflow2_source_to_sql(mlflow_source, sql_db, tmp_path):
    src, _ = mlflow_source("postgresql", 2)
    dst = sql_db("sqlite")
    res, report = _migrate(src, dst, "--verify", "full", tmp_path=tmp_path)
    assert res.returncode == 0, res.stdout[-4000:]
    assert report["revision"] == "0584bdc529eb"  # the target is at the source's revision
    import sqlalchemy as sa
    eng = sa.create_engine(dst)
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0584bdc529eb"
        assert "logged_models" not in sa.inspect(eng).get_table_names()
    eng.dispose()


def test_round_trip_through_tables_layout(mlflow_source, mongo_db, sql_db, tmp_path):
    """PostgreSQL -> MongoDB (tables) -> PostgreSQL gives identical per-table checksums."""
    src, _ = mlflow_source("postgresql", 3)
    mongo = mongo_db()
    back = sql_db("postgresql")
    assert _migrate(src, mongo, "--layout", "tables", "--verify", "none")[0].returncode == 0
    res, _ = _migrate(mongo, back, "--verify", "full")
    assert res.returncode == 0, res.stdout[-4000:]
    res = run_cli("verify", "--source", src, "--target", back, "--verify", "full", "--report-json",
                  tmp_path / "v.json")
    assert res.returncode == 0, res.stdout[-4000:]
    v = json.loads((tmp_path / "v.json").read_text())["verification"]
    assert len(v["checksums"]) == 64 and all(c["match"] for c in v["checksums"])
    assert sum(c["rows"] for c in v["checksums"]) > 150


def test_round_trip_through_mlflow_layout(mlflow_source, mongo_db, sql_db):
    """PostgreSQL -> MongoDB (mlflow-mongodb) -> PostgreSQL gives identical MLflow answers."""
    src, _ = mlflow_source("postgresql", 3)
    mongo = mongo_db()
    back = sql_db("postgresql")
    assert _migrate(src, mongo, "--verify", "none")[0].returncode == 0
    res, _ = _migrate(mongo, back, "--verify", "full")
    assert res.returncode == 0, res.stdout[-4000:]
    _same_api(_api(src), _api(back))


@pytest.fixture(scope="module")
def plugin_source(mongo_base):
    """A database written by the mlflow-mongodb store itself (MLflow 3.17.2 + the plugin)."""
    import pymongo

    from tests.conftest import _populate
    name = "dbm_native_" + __import__("uuid").uuid4().hex[:8]
    uri = servers.with_database(mongo_base, name)
    ids = _populate(uri)
    yield uri, ids
    pymongo.MongoClient(mongo_base).drop_database(name)


@pytest.mark.parametrize("dst_engine", ["postgresql", "sqlite"])
def test_plugin_written_mongodb_to_sql(plugin_source, sql_db, tmp_path, dst_engine):
    """The plugin's 39-digit experiment ids get SQL ids (recorded); everything else answers as the
    plugin answered, with those ids."""
    src, ids = plugin_source
    dst = sql_db(dst_engine)
    res, report = _migrate(src, dst, "--verify", "full", tmp_path=tmp_path)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    remap = report["remapped"]
    assert set(remap) == {ids["experiments"][k] for k in ("a", "b", "deleted")}
    assert "records no MLflow schema revision" in res.stdout
    assert "infinite metric values were written as +-1.7976931348623157e308" in res.stdout
    before = json.loads(json.dumps(snapshot(src), default=str))
    after = _api(dst)
    # The same data under the new experiment ids. Artifact locations keep the old ids: they are
    # paths in the artifact store, which does not move. Infinities are clamped as MLflow's SQL
    # store clamps them when logging.
    text = json.dumps(before, sort_keys=True)
    for old, new in remap.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    text = text.replace("Infinity", "1.7976931348623157e+308")
    if dst_engine == "sqlite":  # SQLite stores no negative zero (reported)
        text = text.replace('"-0.0"', "0.0")
    expected = json.loads(text)
    for lm in expected["logged_models"].values():  # logged_model_metrics has no NaN flag in SQL:
        for m in lm["metrics"]:                      # MLflow's SQL store keeps such a value as 0
            if m["value"] == "NaN":
                m["value"] = 0.0
    for section in ("runs", "metric_history", "registered_models", "prompts", "traces", "logged_models"):
        assert after[section] == expected[section], section
    by_name = {e["name"]: e for e in after["experiments"]}
    assert by_name == {e["name"]: e for e in expected["experiments"]}


def test_revision_mismatch_is_refused_and_nothing_written(mlflow_source, sql_db, tmp_path):
    src, _ = mlflow_source("postgresql", 2)      # 0584bdc529eb
    dst = sql_db("postgresql")
    other, _ = mlflow_source("postgresql", 3)
    assert _migrate(other, dst, "--verify", "none")[0].returncode == 0   # dst now at dc11669786a5
    before = run_cli("verify", "--source", other, "--target", dst)
    assert before.returncode == 0
    res, _ = _migrate(src, dst)
    assert res.returncode == 4
    assert "0584bdc529eb" in res.stdout and "dc11669786a5" in res.stdout
    assert "mlflow db upgrade" in res.stdout
    assert run_cli("verify", "--source", other, "--target", dst).returncode == 0  # untouched


def test_non_empty_target_is_refused_and_nothing_written(mlflow_source, sql_db):
    src, _ = mlflow_source("postgresql", 3)
    dst = sql_db("sqlite")
    assert _migrate(src, dst, "--verify", "none")[0].returncode == 0
    res, _ = _migrate(src, dst)
    assert res.returncode == 5
    assert "experiments (4 rows)" in res.stdout
    assert run_cli("verify", "--source", src, "--target", dst, "--verify", "full").returncode == 0


@pytest.mark.parametrize("dst_engine", ["sqlite", "mysql"])
def test_values_an_engine_cannot_hold(pg_base, sql_db, tmp_path, dst_engine):
    """SQLite and MariaDB store no -0.0. A metric value -0.0 becomes 0.0 there (MLflow's own SQL
    store writes 0 too), counted in the report; a -0.0 in any other column stops the run, naming
    table, key and column."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.support import edge_cases
    src = sql_db("postgresql")
    code = "import sys; from mlflow import MlflowClient; print(MlflowClient(sys.argv[1]).create_experiment('e'))"
    out = subprocess.run([sys.executable, "-c", code, servers.mlflow_uri(src)], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    edge_cases.add_edge_rows(servers.mlflow_uri(src), int(out.split()[-1]))
    res, _ = _migrate(src, sql_db(dst_engine), "--verify", "full")
    assert res.returncode == 0, res.stdout[-3000:]
    assert "metric values of -0.0 were written as 0.0" in res.stdout
    assert "latest_metrics: 1, metrics: 1" in res.stdout
    import sqlalchemy as sa
    eng = sa.create_engine(servers.mlflow_uri(src))
    with eng.begin() as conn:
        exp = conn.execute(sa.text("SELECT MAX(experiment_id) FROM experiments")).scalar()
        conn.execute(sa.text("INSERT INTO trace_info (request_id, experiment_id, timestamp_ms, status, input_cost) "
                             "VALUES ('tr-negzero', :e, 1, 'OK', CAST('-0' AS DOUBLE PRECISION))"), {"e": exp})
    eng.dispose()
    res, _ = _migrate(src, sql_db(dst_engine))
    assert res.returncode == 6
    engine = {"sqlite": "SQLite", "mysql": "MySQL/MariaDB"}[dst_engine]
    assert (f"{engine} cannot store -0.0; the value would change [table trace_info, key 'tr-negzero', "
            "column input_cost]") in res.stdout


def test_null_where_the_target_schema_forbids_it(sql_db):
    """MLflow's MySQL schema lets jobs.job_name be NULL, its PostgreSQL schema does not: such a row
    is refused by name before anything of that table is written."""
    src = sql_db("mysql")
    from dbmigrate.sql_schema import create_schema
    create_schema(servers.mlflow_uri(src), "dc11669786a5")
    import sqlalchemy as sa
    eng = sa.create_engine(servers.mlflow_uri(src))
    with eng.begin() as conn:
        conn.execute(sa.text("INSERT INTO jobs (id, creation_time, job_name, params, status, retry_count, "
                             "last_update_time, workspace) VALUES ('job-1', 1, NULL, '{}', 0, 0, 1, 'default')"))
        conn.execute(sa.text("INSERT INTO workspaces (name) VALUES ('default')"))
    eng.dispose()
    res, _ = _migrate(src, sql_db("postgresql"))
    assert res.returncode == 6, res.stdout[-2000:]
    assert ("NULL in a column that is NOT NULL in the target's MLflow schema [table jobs, key 'job-1', "
            "column job_name]") in res.stdout
