"""Values MLflow's client cannot make (-0.0, 5e-324, NULL vs '' tags, 8000-character params,
duplicate (key, timestamp, step) metrics, a NaN and a 0.0 at the same point), written straight into
an MLflow-made PostgreSQL database, must reach MongoDB bit for bit and read back through MLflow."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys

import pymongo
import pytest

from tests.conftest import ROOT, run_cli
from tests.support import edge_cases, servers
from tests.support.mlflow_api import snapshot


def _bits(x: float) -> bytes:
    return struct.pack(">d", x)


@pytest.fixture(scope="module")
def edge_source(pg_base):
    name = servers.create_pg_database(pg_base, "dbm_edge")
    uri = servers.pg_database(pg_base, name)
    code = ("import sys; from mlflow import MlflowClient; "
            "print(MlflowClient(sys.argv[1]).create_experiment('edge 実験', artifact_location='s3://edge'))")
    res = subprocess.run([sys.executable, "-c", code, servers.mlflow_uri(uri)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    exp_id = int(res.stdout.strip().splitlines()[-1])
    edge_cases.add_edge_rows(servers.mlflow_uri(uri), exp_id)
    yield uri
    servers.drop_pg_database(pg_base, name)


def test_edge_values_survive(edge_source, mongo_db):
    target = mongo_db()
    res = run_cli("migrate", "--source", edge_source, "--target", target, "--verify", "full", "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    db = pymongo.MongoClient(target).get_default_database()
    hist = {}
    for d in db.run_metrics.find({"run_id": edge_cases.EDGE_RUN}):
        hist.setdefault(d["k"], []).append(d["v"])
    assert _bits(hist["neg_zero"][0]) == _bits(-0.0)
    assert _bits(hist["denormal"][0]) == _bits(5e-324)
    assert hist["max"] == [1.7976931348623157e308] and hist["min"] == [-1.7976931348623157e308]
    assert math.isnan(hist["nan"][0])
    assert sorted(hist["dup"]) == [1.0, 2.0]
    z = sorted(hist["zero_and_nan"], key=lambda v: (not math.isnan(v), v))
    assert math.isnan(z[0]) and z[1] == 0.0
    run = db.runs.find_one({"_id": edge_cases.EDGE_RUN})
    params = {p["k"]: p["v"] for p in run["params"]}
    assert params["long"] == edge_cases.LONG_VALUE and len(params["long"]) == 8000
    assert params["empty"] == "" and params["emoji 🔑 キー"] == "値 🎉"
    tags = {t["k"]: t["v"] for t in run["tags"]}
    assert tags["null_tag"] is None and tags["empty_tag"] == ""
    assert tags["mlflow.runName"] == "edge run ✓"  # added from runs.name for run-name search
    empty = db.runs.find_one({"_id": edge_cases.EMPTY_RUN})
    assert empty["params"] == [] and empty["metrics"] == [] and empty["name"] is None
    exp = db.experiments.find_one({"name": "edge 実験"})
    etags = {t["k"]: t["v"] for t in exp["tags"]}
    assert etags == {"null_exp_tag": None, "empty_exp_tag": ""}


def test_edge_values_read_back_through_mlflow(edge_source, mongo_db):
    target = mongo_db()
    assert run_cli("migrate", "--source", edge_source, "--target", target, "--no-progress").returncode == 0
    src = json.loads(json.dumps(snapshot(servers.mlflow_uri(edge_source), traces=False), default=str))
    dst = json.loads(json.dumps(snapshot(target, traces=False), default=str))
    assert src["runs"][edge_cases.EDGE_RUN]["params"]["long"] == edge_cases.LONG_VALUE
    assert src["metric_history"][f"{edge_cases.EDGE_RUN}/neg_zero"][0]["value"] == "-0.0"
    # The one intended addition: a run with a name but no mlflow.runName tag (something only a
    # hand-edited database has) gets the tag, because mlflow-mongodb's run-name search reads it.
    src["runs"][edge_cases.EDGE_RUN]["tags"]["mlflow.runName"] = "edge run ✓"
    src["runs"][edge_cases.EDGE_RUN]["tags"] = dict(sorted(src["runs"][edge_cases.EDGE_RUN]["tags"].items()))
    for section in ("experiments", "runs", "metric_history"):
        assert dst[section] == src[section], section


def test_added_run_name_tags_are_reported(edge_source, mongo_db):
    res = run_cli("migrate", "--source", edge_source, "--target", mongo_db(), "--dry-run", "--no-progress")
    assert res.returncode == 0
    assert "1 runs have a name but no mlflow.runName tag" in res.stdout
