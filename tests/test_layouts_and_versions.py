"""Every MLflow table of MLflow 2.22.5 and 3.17.2, on PostgreSQL, MariaDB and SQLite, reaches MongoDB
in both layouts with `--verify full` passing; version detection refuses what it must; the
verifier catches a tampered field, row and reference and says exactly where."""

from __future__ import annotations

import json
import sqlite3

import pymongo
import pytest
from bson import ObjectId
from bson.int64 import Int64

from tests.conftest import run_cli
from tests.support import servers

ENGINES = ["postgresql", "mysql", "sqlite"]


def _migrate(source, target, *extra, tmp_path=None):
    args = ["migrate", "--source", source, "--target", target, "--no-progress", *extra]
    report = None
    if tmp_path is not None:
        report = tmp_path / "report.json"
        args += ["--report-json", report]
    res = run_cli(*args)
    return res, (json.loads(report.read_text()) if report and report.exists() else None)


@pytest.mark.parametrize("layout", ["tables", "mlflow-mongodb"])
@pytest.mark.parametrize("major", [3, 2])
@pytest.mark.parametrize("engine", ENGINES)
def test_every_table_reaches_mongodb(mlflow_source, mongo_db, tmp_path, engine, major, layout):
    src, _ = mlflow_source(engine, major)
    target = mongo_db()
    res, report = _migrate(src, target, "--layout", layout, "--verify", "full", tmp_path=tmp_path)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert report["status"] == "SUCCESS" and report["verification"]["passed"]
    expected_rev = {3: "dc11669786a5", 2: "0584bdc529eb"}[major]
    assert report["revision"] == expected_rev
    db = pymongo.MongoClient(target).get_default_database()
    rows = {t["table"]: t for t in report["tables"]}
    n_tables = {3: 65, 2: 19}[major]  # with alembic_version
    assert len([t for t in rows if not t.endswith("(copy)")]) == n_tables
    for table, t in rows.items():
        if table.endswith("(copy)"):
            continue
        if layout == "tables":
            # one collection per table, one document per row
            assert db[table].count_documents({}) == t["total"], table
        assert t["migrated"] + t["skipped"] == t["total"], table
        if t["skipped"]:  # rows without a place in mlflow-mongodb are in the complete copy
            assert rows[f"{table} (copy)"]["migrated"] == t["total"], table
    assert not report["skipped_tables"]
    checksums = report["verification"]["checksums"]
    assert checksums and all(c["match"] for c in checksums)


def test_tables_layout_documents(mlflow_source, mongo_db):
    src, ids = mlflow_source("postgresql", 3)
    target = mongo_db()
    res, _ = _migrate(src, target, "--layout", "tables", "--verify", "counts")
    assert res.returncode == 0, res.stdout[-3000:]
    db = pymongo.MongoClient(target).get_default_database()
    exp = db.experiments.find_one({"_id": int(ids["experiments"]["a"])})
    assert type(exp["_id"]) is Int64 and type(exp["creation_time"]) is Int64
    param = db.params.find_one({"run_uuid": ids["runs"]["parent"], "key": "lr"})
    assert param["_id"] == {"key": "lr", "run_uuid": ids["runs"]["parent"]}  # PK order
    nan = db.metrics.find_one({"run_uuid": ids["runs"]["parent"], "key": "special", "step": 0})
    assert nan["value"] == 0.0 and nan["is_nan"] is True  # kept exactly as SQL stores it
    assert list(nan["_id"]) == ["key", "timestamp", "step", "run_uuid", "value", "is_nan"]
    span = db.spans.find_one()
    assert span["duration_ns"] == span["end_time_unix_nano"] - span["start_time_unix_nano"]
    assert isinstance(span["content"], str)  # JSON text kept byte for byte
    marker = db["_dbmigrate_meta"].find_one({"_id": "migration"})
    assert marker["layout"] == "tables" and marker["source_revision"] == "dc11669786a5"
    names = {ix["name"] for ix in db.params.list_indexes()}
    assert "params_run_uuid_key_unique" in names
    names = {ix["name"] for ix in db.trace_tags.list_indexes()}
    assert "trace_tags_request_id" in names  # reflected SQL secondary index


def test_skip_unmapped_reports_the_tables(mlflow_source, mongo_db, tmp_path):
    src, _ = mlflow_source("postgresql", 3)
    target = mongo_db()
    res, report = _migrate(src, target, "--skip-unmapped", "--verify", "counts", tmp_path=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:]
    skipped = {s["table"]: s for s in report["skipped_tables"]}
    assert {"webhooks", "workspaces", "alembic_version", "scorers"} <= set(skipped)
    assert skipped["workspaces"]["rows"] == 1
    db = pymongo.MongoClient(target).get_default_database()
    assert not [c for c in db.list_collection_names() if c.startswith("mlflow_sql.")]
    assert "workspaces" in res.stdout and "Skipped tables" in res.stdout


# ----------------------------------------------------------------------------- tampering
@pytest.fixture
def migrated_pg(mlflow_source, mongo_db):
    def make(layout):
        src, ids = mlflow_source("postgresql", 3)
        target = mongo_db()
        res, _ = _migrate(src, target, "--layout", layout, "--verify", "none")
        assert res.returncode == 0, res.stdout[-3000:]
        return src, target, ids, pymongo.MongoClient(target).get_default_database()
    return make


def _verify(src, target, layout):
    return run_cli("verify", "--source", src, "--target", target, "--layout", layout, "--verify", "full")


def test_tampering_mlflow_layout(migrated_pg):
    src, target, ids, db = migrated_pg("mlflow-mongodb")
    assert _verify(src, target, "mlflow-mongodb").returncode == 0
    parent = ids["runs"]["parent"]
    # one field
    db.runs.update_one({"_id": parent}, [{"$set": {"params": {"$map": {"input": "$params", "in": {
        "k": "$$this.k", "v": {"$cond": [{"$eq": ["$$this.k", "lr"]}, "0.02", "$$this.v"]}}}}}}])
    # one row
    doc = db.run_metrics.find_one({"run_id": parent, "k": "loss", "step": 3})
    db.run_metrics.delete_one({"_id": doc["_id"]})
    # one reference
    child = ids["runs"]["child"]
    db.runs.update_one({"_id": child}, {"$set": {"experiment_id": "999"}})
    res = _verify(src, target, "mlflow-mongodb")
    out = res.stdout
    assert res.returncode == 7 and "Status: FAILED" in out
    lr_index = sorted(["lr", "long", "empty", "unicode 鍵"]).index("lr")  # params are sorted by key
    assert (f"FAILED runs (source runs key '{parent}', _id '{parent}') field params[{lr_index}].v: "
            "source '0.01', target '0.02'") in out
    key = ("loss", 1700000000030, 3, parent, 0.25, False)
    assert f"FAILED run_metrics (source metrics key {key!r}, _id {doc['_id']!r}) document missing on the target" in out
    assert "FAIL metrics -> run_metrics: source 56, target 55" in out
    assert "FAIL run -> experiment: 4 distinct references, 1 dangling; e.g. '999'" in out
    assert (f"FAILED runs (source runs key '{child}', _id '{child}') field experiment_id: "
            "source '1', target '999'") in out


def test_tampering_tables_layout(migrated_pg):
    src, target, ids, db = migrated_pg("tables")
    assert _verify(src, target, "tables").returncode == 0
    parent = ids["runs"]["parent"]
    db.params.update_one({"_id": {"key": "lr", "run_uuid": parent}}, {"$set": {"value": "0.02"}})
    db.tags.delete_one({"_id": {"key": "owner", "run_uuid": parent}})
    db.runs.update_one({"_id": ids["runs"]["child"]}, {"$set": {"experiment_id": Int64(999)}})
    res = _verify(src, target, "tables")
    out = res.stdout
    assert res.returncode == 7
    assert (f"FAILED params (source params key ('lr', '{parent}'), _id {{'key': 'lr', 'run_uuid': '{parent}'}}) "
            "field value: source '0.01', target '0.02'") in out
    assert (f"FAILED tags (source tags key ('owner', '{parent}'), _id {{'key': 'owner', 'run_uuid': '{parent}'}}) "
            "document missing on the target") in out
    child = ids["runs"]["child"]
    assert (f"FAILED runs (source runs key '{child}', _id '{child}') field experiment_id: "
            "source 1, target 999") in out
    assert "FAIL params " in out and "FAIL tags " in out  # their checksums differ


# ----------------------------------------------------------------------------- versions
def _sqlite_copy(src_uri: str, tmp_path, edit) -> str:
    import shutil
    path = tmp_path / "edited.db"
    shutil.copy(src_uri.split("sqlite:///", 1)[1], path)
    conn = sqlite3.connect(path)
    edit(conn)
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def test_unknown_revision_is_refused(mlflow_source, mongo_db, tmp_path):
    src, _ = mlflow_source("sqlite", 3)
    edited = _sqlite_copy(src, tmp_path, lambda c: c.execute("UPDATE alembic_version SET version_num='abcdef123456'"))
    res, _ = _migrate(edited, mongo_db())
    assert res.returncode == 4
    assert "Unknown alembic revision 'abcdef123456': not part of MLflow 2.0.1 \u2013 3.18.0" in res.stdout


def test_schema_that_does_not_match_its_revision_is_refused(mlflow_source, mongo_db, tmp_path):
    src, _ = mlflow_source("sqlite", 3)
    edited = _sqlite_copy(src, tmp_path, lambda c: c.execute("UPDATE alembic_version SET version_num='0584bdc529eb'"))
    res, _ = _migrate(edited, mongo_db())
    assert res.returncode == 4
    assert "claims MLflow 2.18.0 \u2013 2.22.5 (alembic revision 0584bdc529eb) but has tables of later MLflow releases" in res.stdout
    assert "logged_models (3.0.0)" in res.stdout


def test_eighteen_digit_experiment_ids(mlflow_source, mongo_db, sql_db, tmp_path):
    """A FileStore-migrated SQLite database has experiment ids of ~18 digits: MongoDB keeps them;
    PostgreSQL's INTEGER cannot, so they are remapped and the mapping is reported."""
    src, ids = mlflow_source("sqlite", 3)
    big = 418273849102938475
    old = int(ids["experiments"]["b"])

    def edit(c):
        c.execute("PRAGMA foreign_keys = OFF")
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:  # every experiment_id column of every table
            if any(col[1] == "experiment_id" for col in c.execute(f"PRAGMA table_info('{table}')")):
                c.execute(f"UPDATE {table} SET experiment_id = ? WHERE experiment_id = ?", (big, old))
        for side in ("source", "destination"):
            c.execute(f"UPDATE entity_associations SET {side}_id = ? WHERE {side}_type = 'experiment' "
                      f"AND {side}_id = ?", (str(big), str(old)))
    edited = _sqlite_copy(src, tmp_path, edit)
    target = mongo_db()
    res, _ = _migrate(edited, target, "--verify", "full")
    assert res.returncode == 0, res.stdout[-3000:]
    db = pymongo.MongoClient(target).get_default_database()
    assert db.experiments.find_one({"_id": str(big)})["name"] == "exp-b"
    assert db.runs.count_documents({"experiment_id": str(big)}) == 2
    pg = sql_db("postgresql")
    res, report = _migrate(edited, pg, "--verify", "full", tmp_path=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:]
    new_id = report["remapped"][str(big)]
    assert new_id == 4  # the next id after the largest one that fits (3)
    assert f"{big} -> {new_id}" in res.stdout
    from mlflow import MlflowClient
    c = MlflowClient(tracking_uri=servers.mlflow_uri(pg))
    assert c.get_experiment(str(new_id)).name == "exp-b"
    assert len(c.search_runs([str(new_id)])) == 2
    assert int(c.create_experiment("after")) == new_id + 1  # the sequence moved past the new ids
