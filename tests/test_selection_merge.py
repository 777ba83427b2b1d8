"""Issue 14: a selection with its closure copied into another server, merged into a live one.

A dev database and a prod database are made by MLflow 3.17.2's own client (tests/support/
promote_sources.py); MLflow's client on the target judges the result; every table of prod is
compared (rows as PostgreSQL prints them) before and after, so "nothing else changed" is checked
row by row."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg2
import pytest

from tests.conftest import ROOT, run_cli
from tests.support import servers
from tests.support.table_rows import mongo_docs, pg_rows


def _mlflow(what: str, uri: str, *extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    res = subprocess.run([sys.executable, "-m", "tests.support.promote_sources", what, uri, *extra], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("IDS="))[4:])


@pytest.fixture(scope="module")
def dev(pg_base):
    name = servers.create_pg_database(pg_base, "dbm_dev")
    uri = servers.pg_database(pg_base, name)
    ids = _mlflow("dev", servers.mlflow_uri(uri))
    yield uri, ids
    servers.drop_pg_database(pg_base, name)


@pytest.fixture
def prod(pg_db):
    uri = pg_db("dbm_prod")
    return uri, _mlflow("prod", servers.mlflow_uri(uri))


def test_promote_by_alias_postgres_to_live_postgres(dev, prod, tmp_path):
    dev_uri, ids = dev
    prod_uri, prod_ids = prod
    before = pg_rows(prod_uri)
    old = str(ROOT / "mlruns") + "/"
    args = ["migrate", "--source", dev_uri, "--target", prod_uri, "--models", "clf@champion", "--merge",
            "--rewrite-artifact-uri", f"{old}=s3://prod-bucket/", "--no-progress", "--state-dir", tmp_path / "st"]
    # the dry run lists what will be copied and why, and writes nothing
    dry = run_cli(*args, "--dry-run", "--report-json", tmp_path / "dry.json")
    assert dry.returncode == 0, dry.stderr[-3000:]
    report = json.loads((tmp_path / "dry.json").read_text())
    sel = report["selection"]
    assert sel["selected"] == ["model clf@champion (version 2)"]
    pulled = sel["pulled_in"]["model clf@champion (version 2)"]
    assert pulled["run"] == [ids["run"]] and pulled["logged_model"] == [ids["logged_model"]]
    assert pulled["trace"] == [ids["trace"]] and pulled["model_version"] == ["clf:2"]
    assert ids["other_run"] not in json.dumps(report) and ids["parent"] not in json.dumps(report)
    assert sel["rows"]["metrics"] == 22 and sel["rows"]["runs"] == 1 and sel["rows"]["model_versions"] == 1
    assert report["merge"]["remapped_experiments"] == {"1": 2}
    assert report["rewritten"]["runs.artifact_uri"] == 1 and report["rewritten"]["experiments.artifact_location"] == 1
    assert "Selection: model clf@champion" in dry.stdout
    assert pg_rows(prod_uri) == before

    res = run_cli(*args, "--report-json", tmp_path / "r.json")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    after = pg_rows(prod_uri)
    # nothing that was on prod changed; tables the selection does not touch are equal
    for t, rows in before.items():
        assert rows <= after[t], t
    added = {t: len(after[t]) - len(before[t]) for t in after if len(after[t]) != len(before[t])}
    # The run's and the logged model's system tags depend on where MLflow's client ran (from a git
    # checkout it adds mlflow.source.git.commit): count them on dev, the selection must bring all.
    conn = psycopg2.connect(dev_uri)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM tags WHERE run_uuid = %s", (ids["run"],))
        run_tags = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM logged_model_tags WHERE model_id = %s", (ids["logged_model"],))
        model_tags = cur.fetchone()[0]
    finally:
        conn.close()
    assert run_tags >= 8 and model_tags >= 6
    assert added == {"experiments": 1, "experiment_tags": 1, "runs": 1, "params": 2, "tags": run_tags, "metrics": 22,
                     "latest_metrics": 3, "datasets": 1, "inputs": 2, "input_tags": 1, "logged_models": 1,
                     "logged_model_params": 1, "logged_model_tags": model_tags, "logged_model_metrics": 1, "trace_info": 1,
                     "trace_tags": 2, "trace_request_metadata": 13, "spans": 1, "registered_models": 1,
                     "registered_model_tags": 1, "model_versions": 1, "model_version_tags": 1,
                     "registered_model_aliases": 1}, added
    # MLflow on prod shows the version with its run, metrics, lineage
    seen = _mlflow("view", servers.mlflow_uri(prod_uri), "clf", "champion")
    assert seen["version"] == 2 and seen["run_id"] == ids["run"] and seen["experiment"] == "dev-exp"
    assert seen["experiment_id"] == "2"  # dev's id 1 was taken on prod by prod-exp
    assert seen["params"] == {"lr": "0.01", "layers": "3"} and seen["metrics"]["nan_metric"] == "NaN"
    assert len(seen["loss_history"]) == 20 and seen["inputs"] == ["train-ds"] and seen["traces"] == 1
    assert seen["artifact_uri"].startswith("s3://prod-bucket/1/")
    assert seen["models"] == ["clf", "prod-model"] and seen["experiments"] == ["Default", "dev-exp", "prod-exp"]

    # the same merge again: everything is already there, identical; nothing changes
    again = run_cli(*args, "--report-json", tmp_path / "r2.json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert pg_rows(prod_uri) == after
    merge = json.loads((tmp_path / "r2.json").read_text())["merge"]
    assert merge["identical"]["metrics"] == 22 and merge["merged_experiments"] == {"1": 2}

    # a conflict: prod changed the promoted run's tag; every conflict listed, nothing written
    conn = psycopg2.connect(prod_uri)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE tags SET value = 'prod-team' WHERE key = 'team' AND run_uuid = %s", (ids["run"],))
        cur.execute("UPDATE params SET value = '0.5' WHERE key = 'lr' AND run_uuid = %s", (ids["run"],))
    conn.close()
    changed = pg_rows(prod_uri)
    fail = run_cli(*args)
    assert fail.returncode == 5, fail.stdout[-2000:] + fail.stderr[-2000:]
    assert "2 rows differ" in fail.stderr and "tags (key='team'" in fail.stderr and "params (key='lr'" in fail.stderr
    assert "nothing was written" in fail.stderr
    assert pg_rows(prod_uri) == changed
    skip = run_cli(*args, "--on-conflict", "skip")
    assert skip.returncode == 0, skip.stderr[-2000:]
    assert pg_rows(prod_uri) == changed
    over = run_cli(*args, "--on-conflict", "overwrite")
    assert over.returncode == 0, over.stderr[-2000:]
    assert pg_rows(prod_uri) == after


def test_promote_postgres_to_live_mongodb(dev, mongo_db, tmp_path):
    """Promote clf@champion from dev (PostgreSQL) into a prod that MLflow's mlflow-mongodb store
    made itself (experiment ids of 39 digits, registered models with ObjectIds of its own) and that
    already has a model "clf" of its own: the version is added to prod's clf, nothing else changes."""
    dev_uri, ids = dev
    prod = mongo_db("dbm_prodm")
    _mlflow("prod", prod, "with-clf")
    before = mongo_docs(prod)
    old = str(ROOT / "mlruns") + "/"
    args = ["migrate", "--source", dev_uri, "--target", prod, "--models", "clf@champion", "--merge",
            "--rewrite-artifact-uri", f"{old}=s3://prod-bucket/", "--no-progress", "--state-dir", tmp_path / "st"]
    dry = run_cli(*args, "--dry-run", "--report-json", tmp_path / "dry.json")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    merge = json.loads((tmp_path / "dry.json").read_text())["merge"]
    assert merge["conflicts"] == [] and list(merge["merged_models"]) == ["clf"]
    assert merge["inserted"]["runs"] == 1 and merge["inserted"]["model_versions"] == 1
    assert merge["merged_into"] == {"registered_models": 1} and "registered_models" not in merge["inserted"]
    assert mongo_docs(prod) == before  # a dry run writes nothing

    res = run_cli(*args, "--report-json", tmp_path / "r.json")
    assert res.returncode == 0, "\n".join(ln for ln in (res.stdout + res.stderr).splitlines() if " ok " not in ln)[-5000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verification"]["passed"] is True
    after = mongo_docs(prod)
    changed = {c: [k for k, d in docs.items() if after[c].get(k) != d] for c, docs in before.items()}
    import bson
    clf_id = next(k for k, d in before["registered_models"].items() if bson.decode(d)["name"] == "clf")
    # of prod's documents only its clf changed: dev's alias added, the version counter moved to 2
    assert {c: v for c, v in changed.items() if v} == {"registered_models": [clf_id]}
    clf = bson.decode(after["registered_models"][clf_id])
    assert sorted((a["alias"], a["version"]) for a in clf["aliases"]) == [("champion", 2), ("stable", 1)]
    assert clf["version_counter"] == 2 and clf["tags"] == bson.decode(before["registered_models"][clf_id])["tags"] + [
        {"key": "domain", "value": "vision"}]
    added = {c: len(after[c]) - len(before.get(c, {})) for c in after if len(after[c]) != len(before.get(c, {}))}
    assert added == {"experiments": 1, "runs": 1, "run_metrics": 22, "logged_models": 1, "traces": 1, "spans": 1,
                     "model_versions": 1, "mlflow_sql.workspaces": 1}, added  # metrics: loss x20, nan_metric, acc
    # new collections: those prod had no documents for yet; the workspaces row has no place in the
    # layout and comes in tables form (nothing else: no marker, no empty collections)
    assert set(after) - set(before) == {"logged_models", "traces", "spans", "mlflow_sql.workspaces"}
    seen = _mlflow("view", prod, "clf", "champion")
    assert seen["version"] == "2" or seen["version"] == 2
    assert seen["run_id"] == ids["run"] and seen["experiment"] == "dev-exp" and len(seen["loss_history"]) == 20
    assert seen["params"] == {"lr": "0.01", "layers": "3"} and seen["metrics"]["nan_metric"] == "NaN"
    assert seen["inputs"] == ["train-ds"] and seen["traces"] == 1
    assert seen["artifact_uri"].startswith("s3://prod-bucket/1/")
    assert [v[0] for v in seen["versions"]] == [1, 2] and seen["versions"][1][1] == ids["run"]
    assert seen["models"] == ["clf", "prod-model"] and seen["experiments"] == ["Default", "dev-exp", "prod-exp"]

    # (MLflow's store made its assessments collection, empty, when asked for the traces)
    viewed = mongo_docs(prod)
    assert {c: d for c, d in viewed.items() if d} == {c: d for c, d in after.items() if d}
    after = viewed
    # again: everything is there already; nothing changes
    again = run_cli(*args, "--report-json", tmp_path / "r2.json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert mongo_docs(prod) == after
    merge = json.loads((tmp_path / "r2.json").read_text())["merge"]
    assert merge["inserted"] == {} and merge["identical"]["run_metrics"] == 22

    # prod changed the promoted run's tag: the conflict is listed, nothing written; skip keeps prod's,
    # overwrite takes dev's
    import pymongo
    client = pymongo.MongoClient(prod)
    db = client.get_default_database()
    db.runs.update_one({"_id": ids["run"], "tags.k": "team"}, {"$set": {"tags.$.v": "prod-team"}})
    client.close()
    edited = mongo_docs(prod)
    fail = run_cli(*args)
    assert fail.returncode == 5, fail.stdout[-2000:] + fail.stderr[-2000:]
    assert "1 documents differ" in fail.stderr and f"runs _id='{ids['run']}'" in fail.stderr
    assert "prod-team" in fail.stderr and "nothing was written" in fail.stderr
    assert mongo_docs(prod) == edited
    skip = run_cli(*args, "--on-conflict", "skip")
    assert skip.returncode == 0, skip.stderr[-2000:]
    assert mongo_docs(prod) == edited
    over = run_cli(*args, "--on-conflict", "overwrite")
    assert over.returncode == 0, over.stderr[-2000:]
    assert mongo_docs(prod) == after

    # dev's clf version 1 (alias old) has a number prod's clf holds with other content: a conflict
    # named by its model and number, never renumbered; nothing written
    clash = run_cli(*args[:6], "clf@old", *args[7:])
    assert clash.returncode == 5, clash.stdout[-2000:] + clash.stderr[-2000:]
    assert "1 documents differ" in clash.stderr and "(model 'clf' version 1: the target holds this number" in clash.stderr
    assert mongo_docs(prod) == after


def test_merge_into_mongodb_tables_layout_equals_the_sql_merge(dev, prod, pg_db, mongo_db, tmp_path):
    """The same promotion merged into prod's copy in the lossless `tables` layout and into prod
    itself (PostgreSQL, the SQL merge): read back into PostgreSQL, the two are equal row for row,
    dev's experiment 1 moved to 2 in both (prod's prod-exp holds id 1)."""
    dev_uri, _ = dev
    prod_uri, _ = prod
    mongo = mongo_db("dbm_prodt")
    common = ["--no-progress", "--state-dir", tmp_path / "st"]
    res = run_cli("migrate", "--source", prod_uri, "--target", mongo, "--layout", "tables", *common)
    assert res.returncode == 0, res.stderr[-2000:]
    promote = ["--models", "clf@champion", "--merge", *common]
    res = run_cli("migrate", "--source", dev_uri, "--target", mongo, "--layout", "tables", *promote,
                  "--report-json", tmp_path / "m.json")
    assert res.returncode == 0, "\n".join(ln for ln in (res.stdout + res.stderr).splitlines() if " ok " not in ln)[-4000:]
    merge = json.loads((tmp_path / "m.json").read_text())["merge"]
    assert merge["remapped_experiments"] == {"1": 2} and merge["conflicts"] == []
    assert merge["inserted"]["runs"] == 1 and merge["inserted"]["metrics"] == 22
    res = run_cli("migrate", "--source", dev_uri, "--target", prod_uri, *promote)
    assert res.returncode == 0, res.stderr[-2000:]
    back = pg_db("dbm_back")
    res = run_cli("migrate", "--source", mongo, "--target", back, *common)
    assert res.returncode == 0, res.stderr[-2000:]
    assert pg_rows(back) == pg_rows(prod_uri)


def test_clone_experiment_under_new_name(dev, pg_db, tmp_path):
    dev_uri, ids = dev
    target = pg_db("dbm_clone")
    res = run_cli("migrate", "--source", dev_uri, "--target", target, "--experiments", "dev-exp",
                  "--rename-experiment", "dev-exp=dev-exp-clone", "--no-progress", "--state-dir", tmp_path / "st",
                  "--report-json", tmp_path / "r.json")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = pg_rows(target)
    names = [r for r in rows["experiments"]]
    assert len(names) == 1 and "dev-exp-clone" in names[0]
    assert len(rows["runs"]) == 3  # sweep, train (nested) and other; dev-scratch's run stays behind
    assert rows["registered_models"] == set() and rows["model_versions"] == set()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["selection"]["pulled_in"]["experiment 'dev-exp' (1)"]["run"] == sorted(
        [ids["run"], ids["parent"], ids["other_run"]])


def test_bad_selection_is_refused_by_name(dev, pg_db, tmp_path):
    dev_uri, _ = dev
    target = pg_db("dbm_bad")
    for args, text in ((["--models", "clf@nope"], "has no alias 'nope'"),
                       (["--experiments", "missing-exp"], "no experiment with id or name 'missing-exp'"),
                       (["--runs", "0" * 32], "no run 000"),
                       (["--since", "yesterday"], "--since: 'yesterday'")):
        res = run_cli("migrate", "--source", dev_uri, "--target", target, *args, "--state-dir", tmp_path / "st")
        assert res.returncode == 2, (args, res.stderr[-1500:])
        assert text in res.stderr, (args, res.stderr[-1500:])
    conn = psycopg2.connect(target)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert cur.fetchone()[0] == 0  # nothing half-written
    conn.close()
