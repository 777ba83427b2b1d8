"""Adversarial tests of `--merge` into a MongoDB target (dbmigrate/mongo_merge.py): a merge killed
mid-copy and run again, renames into a prod the mlflow-mongodb store made, an experiment of the
same name merged into, and the edges around them. Dev is a PostgreSQL store and prod a MongoDB
store, both made by MLflow's own client (tests/support/mongo_merge_sources.py); MLflow's client on
prod judges the result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import bson
import pymongo
import pytest

from tests.conftest import ROOT, run_cli
from tests.support import servers
from tests.support.table_rows import mongo_docs

POINTS = 4000  # "loss" points of dev's run: enough documents that a kill lands during the copy


def _mlflow(*args) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    res = subprocess.run([sys.executable, "-m", "tests.support.mongo_merge_sources", *map(str, args)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("IDS="))[4:])


def _view(uri, model, alias) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    res = subprocess.run([sys.executable, "-m", "tests.support.promote_sources", "view", uri, model, alias], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("IDS="))[4:])


def _untouched(before: dict, after: dict, allowed: dict | None = None) -> None:
    """Every document prod had is still there, byte for byte (except the _ids `allowed` names)."""
    for c, docs in before.items():
        for k, d in docs.items():
            if k in (allowed or {}).get(c, ()):
                continue
            assert after.get(c, {}).get(k) == d, (c, k)


def _db(uri):
    return pymongo.MongoClient(uri).get_default_database()


@pytest.fixture(scope="module")
def dev(pg_base):
    name = servers.create_pg_database(pg_base, "dbm_mmdev")
    uri = servers.pg_database(pg_base, name)
    ids = _mlflow("dev", servers.mlflow_uri(uri), POINTS)
    yield uri, ids
    servers.drop_pg_database(pg_base, name)


@pytest.fixture
def prod(mongo_db):
    uri = mongo_db("dbm_mmprod")
    return uri, _mlflow("prod", uri)


def _args(dev_uri, prod_uri, tmp_path, *extra):
    return ["migrate", "--source", dev_uri, "--target", prod_uri, "--models", "clf@champion", "--merge",
            "--no-progress", "--state-dir", tmp_path / "st", *extra]


def _fails(res):
    return "\n".join(ln for ln in (res.stdout + res.stderr).splitlines() if " ok " not in ln)[-5000:]


def test_same_experiment_name_is_merged_into_and_renamed_model_lands_beside_prods(dev, prod, tmp_path):
    """Prod's store made "dev-exp" (a 39-digit id) and a "clf" of its own. Dev's clf@champion is
    promoted as clf-dev: its run, logged model and trace land in prod's dev-exp (their experiment
    ids are prod's), MLflow's search_runs on prod's experiment finds the run; prod's clf and every
    other document prod had stay byte for byte."""
    dev_uri, ids = dev
    prod_uri, pids = prod
    assert len(pids["experiment"]) > 30  # the plugin's id, not a small integer
    before = mongo_docs(prod_uri)
    args = _args(dev_uri, prod_uri, tmp_path, "--rename-model", "clf=clf-dev", "--report-json", tmp_path / "r.json")
    res = run_cli(*args)
    assert res.returncode == 0, _fails(res)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verification"]["passed"] is True
    assert report["merge"]["merged_experiments"] == {ids["experiment"]: pids["experiment"]}
    assert report["merge"]["merged_models"] == {} and report["merge"]["conflicts"] == []
    after = mongo_docs(prod_uri)
    exp_key = next(k for k, d in before["experiments"].items() if bson.decode(d)["name"] == "dev-exp")
    _untouched(before, after, {"experiments": [exp_key]})
    exp = bson.decode(after["experiments"][exp_key])
    # merged into: dev's experiment tag added to prod's experiment, nothing else of it changed
    assert [t for t in exp["tags"] if "dev-team" in t.values()] != []
    assert {k: v for k, v in exp.items() if k != "tags"} == {
        k: v for k, v in bson.decode(before["experiments"][exp_key]).items() if k != "tags"}
    assert sum(1 for d in after["experiments"].values() if bson.decode(d)["name"] == "dev-exp") == 1
    db = _db(prod_uri)
    assert db.runs.find_one({"_id": ids["run"]})["experiment_id"] == pids["experiment"]
    assert db.logged_models.find_one({"_id": ids["logged_model"]})["experiment_id"] == pids["experiment"]
    trace = db.traces.find_one({"_id": ids["trace"]}) or db.traces.find_one({"trace_id": ids["trace"]})
    assert trace is not None and trace["experiment_id"] == pids["experiment"]
    seen = _mlflow("view-exp", prod_uri, "dev-exp", ids["run"])
    assert seen["experiment_id"] == pids["experiment"] and seen["run_experiment_id"] == pids["experiment"]
    assert seen["runs"] == sorted([ids["run"], pids["run"]]) and seen["loss_points"] == POINTS
    assert seen["logged_models"] == [[ids["logged_model"], pids["experiment"]]]
    assert seen["traces"] == [[ids["trace"], pids["experiment"]]]
    v = _view(prod_uri, "clf-dev", "champion")
    assert v["run_id"] == ids["run"] and v["experiment_id"] == pids["experiment"] and int(v["version"]) == 1
    assert v["models"] == ["clf", "clf-dev"]
    prod_clf = _view(prod_uri, "clf", "stable")
    assert prod_clf["run_id"] == pids["run"] and prod_clf["versions"] == [[1, pids["run"]]]
    # again: nothing changes
    viewed = mongo_docs(prod_uri)
    again = run_cli(*args[:-2], "--report-json", tmp_path / "r2.json")
    assert again.returncode == 0, _fails(again)
    assert mongo_docs(prod_uri) == viewed
    merge = json.loads((tmp_path / "r2.json").read_text())["merge"]
    assert merge["inserted"] == {} and merge["identical"]["run_metrics"] == POINTS + 2


def _start(args, state_dir):
    env = dict(os.environ, DBMIGRATE_STATE_DIR=str(state_dir))
    return subprocess.Popen([sys.executable, "-m", "dbmigrate.cli", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def test_merge_killed_mid_copy_then_resumed_and_rerun_converges(dev, prod, tmp_path):
    """kill -9 while the run's metric documents are being written (some on prod, not all), then
    `--merge --resume`: verification passes, each of dev's documents is on prod once, prod's own
    documents are unchanged; a plain rerun afterwards changes nothing."""
    dev_uri, ids = dev
    prod_uri, pids = prod
    before = mongo_docs(prod_uri)
    db = _db(prod_uri)
    had = db.run_metrics.count_documents({})
    args = _args(dev_uri, prod_uri, tmp_path, "--rename-model", "clf=clf-dev", "--batch-size", "200")
    proc = _start(args, tmp_path / "st")
    deadline, seen = time.monotonic() + 240, 0
    while proc.poll() is None and time.monotonic() < deadline:
        seen = db.run_metrics.count_documents({"run_id": ids["run"]})
        if seen >= 400:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the merge ended before the kill"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    written = db.run_metrics.count_documents({"run_id": ids["run"]})
    assert 0 < written < POINTS + 2, written  # the kill fell inside the copy
    res = run_cli(*args, "--resume", "--report-json", tmp_path / "r.json", env={"DBMIGRATE_STATE_DIR": str(tmp_path / "st")})
    assert res.returncode == 0, _fails(res)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verification"]["passed"] is True, _fails(res)
    assert db.run_metrics.count_documents({"run_id": ids["run"]}) == POINTS + 2
    assert db.run_metrics.count_documents({}) == had + POINTS + 2
    keys = [(d["k"], d["step"], d["timestamp"]) for d in db.run_metrics.find({"run_id": ids["run"]})]
    assert len(keys) == len(set(keys))  # each point once
    for coll, key in (("runs", ids["run"]), ("logged_models", ids["logged_model"])):
        assert db[coll].count_documents({"_id": key}) == 1
    assert db.registered_models.count_documents({"name": "clf-dev"}) == 1
    assert db.model_versions.count_documents({}) == 2
    assert db.experiments.count_documents({"name": "dev-exp"}) == 1
    after = mongo_docs(prod_uri)
    exp_key = next(k for k, d in before["experiments"].items() if bson.decode(d)["name"] == "dev-exp")
    _untouched(before, after, {"experiments": [exp_key]})
    # a plain rerun (no --resume) of the finished merge: everything identical, nothing written
    again = run_cli(*args, "--report-json", tmp_path / "r2.json", env={"DBMIGRATE_STATE_DIR": str(tmp_path / "st")})
    assert again.returncode == 0, _fails(again)
    merge = json.loads((tmp_path / "r2.json").read_text())["merge"]
    assert merge["inserted"] == {} and merge["conflicts"] == []
    assert mongo_docs(prod_uri) == after


@pytest.mark.slow  # an extra: the same kill as above, the other way back
def test_merge_killed_then_plain_rerun_converges(dev, prod, tmp_path):
    """The same kill, then the command again without --resume: refused while the killed run's
    catalog says it was interrupted (writing nothing); with no catalog, the merge runs again and
    converges (each point once, verification passes, prod's own documents unchanged)."""
    dev_uri, ids = dev
    prod_uri, _ = prod
    before = mongo_docs(prod_uri)
    db = _db(prod_uri)
    args = _args(dev_uri, prod_uri, tmp_path, "--rename-model", "clf=clf-dev", "--batch-size", "200")
    proc = _start(args, tmp_path / "st")
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if db.run_metrics.count_documents({"run_id": ids["run"]}) >= 400:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the merge ended before the kill"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < db.run_metrics.count_documents({"run_id": ids["run"]}) < POINTS + 2
    half = mongo_docs(prod_uri)
    # with the killed run's catalog at hand, the plain command is refused (nothing written) ...
    res = run_cli(*args, env={"DBMIGRATE_STATE_DIR": str(tmp_path / "st")})
    assert res.returncode != 0 and "--resume" in res.stderr, _fails(res)
    assert mongo_docs(prod_uri) == half
    # ... and without it (another machine, the catalog lost) the merge just runs again: converges
    args = _args(dev_uri, prod_uri, tmp_path / "elsewhere", "--rename-model", "clf=clf-dev", "--batch-size", "200")
    res = run_cli(*args, "--report-json", tmp_path / "r.json")
    assert res.returncode == 0, _fails(res)
    assert json.loads((tmp_path / "r.json").read_text())["verification"]["passed"] is True
    assert db.run_metrics.count_documents({"run_id": ids["run"]}) == POINTS + 2
    keys = [(d["k"], d["step"], d["timestamp"]) for d in db.run_metrics.find({"run_id": ids["run"]})]
    assert len(keys) == len(set(keys))
    exp_key = next(k for k, d in before["experiments"].items() if bson.decode(d)["name"] == "dev-exp")
    _untouched(before, mongo_docs(prod_uri), {"experiments": [exp_key]})


def test_renamed_model_and_experiment_into_a_prod_with_its_own_clf(dev, prod, tmp_path):
    """`--rename-model clf=clf-dev --rename-experiment dev-exp=dev-exp-promoted` into a prod whose
    store made a clf and a dev-exp of its own: `analyze` and `--dry-run` write nothing; the copy
    goes under the new names (a new experiment, a new model with dev's version 1 on dev's run),
    prod's clf and dev-exp stay byte for byte; MLflow shows the renamed version with its run."""
    dev_uri, ids = dev
    prod_uri, pids = prod
    before = mongo_docs(prod_uri)
    args = _args(dev_uri, prod_uri, tmp_path, "--rename-model", "clf=clf-dev",
                 "--rename-experiment", "dev-exp=dev-exp-promoted")
    ana = run_cli("analyze", *args[1:], "--report-json", tmp_path / "a.json")
    assert ana.returncode == 0, _fails(ana)
    merge = json.loads((tmp_path / "a.json").read_text())["merge"]
    assert merge["merged_experiments"] == {} and merge["merged_models"] == {} and merge["conflicts"] == []
    assert merge["inserted"]["experiments"] == 1 and merge["inserted"]["registered_models"] == 1
    dry = run_cli(*args, "--dry-run")
    assert dry.returncode == 0, _fails(dry)
    assert mongo_docs(prod_uri) == before
    res = run_cli(*args, "--report-json", tmp_path / "r.json")
    assert res.returncode == 0, _fails(res)
    assert json.loads((tmp_path / "r.json").read_text())["verification"]["passed"] is True
    after = mongo_docs(prod_uri)
    _untouched(before, after)  # nothing prod had changed, not even its dev-exp's tags
    db = _db(prod_uri)
    new_exp = db.experiments.find_one({"name": "dev-exp-promoted"})
    assert new_exp is not None and str(new_exp["_id"]) != pids["experiment"]
    assert db.runs.find_one({"_id": ids["run"]})["experiment_id"] == str(new_exp["_id"])
    v = _view(prod_uri, "clf-dev", "champion")
    assert v["run_id"] == ids["run"] and int(v["version"]) == 1 and v["experiment"] == "dev-exp-promoted"
    assert v["versions"] == [[1, ids["run"]]] and len(v["loss_history"]) == POINTS
    assert v["traces"] == 1  # (the layout keeps no model_id on a version: no logged model to show)
    assert v["models"] == ["clf", "clf-dev"] and v["experiments"] == ["Default", "dev-exp", "dev-exp-promoted"]
    mine = _view(prod_uri, "clf", "stable")
    assert mine["versions"] == [[1, pids["run"]]] and {k: int(x) for k, x in mine["aliases"].items()} == {"stable": 1}


def test_run_the_plugin_logged_merged_back_adds_no_duplicate_metrics(prod, pg_db, tmp_path):
    """Prod's store logged a run's metrics itself (ObjectIds of its own, a NaN, a logged-model
    metric); prod is read back into PostgreSQL and that copy merged into prod again. Every metric
    is matched by run, key, timestamp, step and value (NaN equal to NaN): nothing is added; the
    logged-model metric step (which sets model_id on run metrics) does not insert the model's
    metric a second time next to the store's own document."""
    prod_uri, pids = prod
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    code = ("import mlflow, sys; mlflow.set_tracking_uri(sys.argv[1]); r = sys.argv[2]\n"
            "with mlflow.start_run(run_id=r):\n"
            "    mlflow.log_metric('nan_metric', float('nan'))\n"
            "    lm = mlflow.initialize_logged_model(name='m', source_run_id=r)\n"
            "    mlflow.log_metric('acc', 0.5, model_id=lm.model_id)\n")
    made = subprocess.run([sys.executable, "-c", code, prod_uri, pids["run"]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    back = pg_db("dbm_mmback")
    res = run_cli("migrate", "--source", prod_uri, "--target", back, "--no-progress", "--state-dir", tmp_path / "s1")
    assert res.returncode == 0, _fails(res)
    db = _db(prod_uri)
    metrics_before = db.run_metrics.count_documents({})
    before = mongo_docs(prod_uri)
    # skip: the run document itself differs in fields SQL cannot leave out (see the report below)
    res = run_cli("migrate", "--source", back, "--target", prod_uri, "--merge", "--on-conflict", "skip",
                  "--no-progress", "--state-dir", tmp_path / "s2", "--report-json", tmp_path / "r.json")
    assert res.returncode == 0, _fails(res)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verification"]["passed"] is True
    merge = report["merge"]
    assert merge["identical"]["run_metrics"] == 3 and "run_metrics" not in merge["inserted"]
    assert db.run_metrics.count_documents({}) == metrics_before == 3
    assert db.run_metrics.count_documents({"k": "acc"}) == 1
    assert [c for c in merge["conflicts"] if not c.startswith("runs ")] == []  # experiments, models: equal
    after = mongo_docs(prod_uri)
    _untouched(before, after)
    assert {c for c in after if after[c] != before.get(c)} <= {"mlflow_sql.alembic_version"}


def test_tables_layout_target_at_another_revision_is_refused(dev, mongo_db, tmp_path):
    """A `tables`-layout copy made by dbmigrate says the revision it holds twice: in its marker and
    in its alembic_version collection. A merge from a source at another revision is refused before
    anything is written, whichever of the two says so, under every --on-conflict. (A real older
    copy needs an MLflow 2 database; the revision is edited instead: a fault injected, the
    refusal is the code under test.)"""
    dev_uri, _ = dev
    target = mongo_db("dbm_mmrev")
    res = run_cli("migrate", "--source", dev_uri, "--target", target, "--layout", "tables", "--no-progress",
                  "--state-dir", tmp_path / "s0", "--verify", "none")
    assert res.returncode == 0, _fails(res)
    db = _db(target)
    marker = next(n for n in db.list_collection_names() if db[n].find_one({"_id": "migration"}))
    rev = db[marker].find_one({"_id": "migration"})["source_revision"]
    alembic = db.alembic_version.find_one()
    assert alembic is not None and rev in json.dumps(alembic, default=str)
    db.experiments.delete_many({})  # something the merge would write if it ran
    db[marker].update_one({"_id": "migration"}, {"$set": {"source_revision": "0584bdc529eb"}})
    before = mongo_docs(target)
    args = ["migrate", "--source", dev_uri, "--target", target, "--layout", "tables", "--merge", "--no-progress"]
    res = run_cli(*args, "--state-dir", tmp_path / "s1")
    assert res.returncode != 0 and "0584bdc529eb" in res.stderr and rev in res.stderr, _fails(res)
    assert mongo_docs(target) == before
    # the marker gone (or never written): the alembic_version collection says the revision
    db[marker].delete_one({"_id": "migration"})
    db.alembic_version.delete_many({})
    db.alembic_version.insert_one({k: "0584bdc529eb" if v == rev else v for k, v in alembic.items()})
    before = mongo_docs(target)
    for policy in ("fail", "overwrite"):
        res = run_cli(*args, "--on-conflict", policy, "--state-dir", tmp_path / f"s-{policy}")
        assert res.returncode != 0 and "0584bdc529eb" in res.stderr, (policy, _fails(res))
        assert mongo_docs(target) == before, policy
