"""End to end: an MLflow 3.17.2 database on real PostgreSQL -> `run_migration.py` -> MongoDB, then
stock MLflow with the mlflow-mongodb plugin must answer exactly as MLflow on the source does."""

from __future__ import annotations

import json
import os
from importlib.metadata import version

import pymongo
import pytest

from tests.conftest import run_cli
from tests.support.mlflow_api import snapshot
from tests.support.servers import mlflow_uri

# What mlflow-mongodb 0.1.0b2 creates at start-up (its repositories' create_index calls).
PLUGIN_INDEXES = {
    "experiments": {"experiments_name_unique", "experiments_lifecycle_creation_id"},
    "runs": {"runs_experiment_id"},
    "run_metrics": {"run_metrics_run_k_timestamp", "run_metrics_model_k_latest", "run_metrics_model_dataset"},
    "traces": {"traces_experiment_request_time_id", "traces_experiment_request_time_desc_id",
               "traces_experiment_run_ids_request_time", "traces_linked_prompts_name_version"},
    "spans": {"spans_trace_span_unique", "spans_trace_start_time"},
    "assessments": {"assessments_trace_assessment_unique", "assessments_experiment_assessment"},
    "logged_models": {"logged_models_experiment_creation_id", "logged_models_experiment_tags",
                      "logged_models_experiment_params"},
    "registered_models": {"registered_models_name_unique", "registered_models_tags_key_value"},
    "model_versions": {"model_versions_registered_model_id_version_unique",
                       "model_versions_registered_model_stage_version", "model_versions_tags_key_value"},
}

REAL_MONGODB = bool(os.environ.get("DBMIGRATE_TEST_MONGODB_URI"))


def expected_from_source(src: dict) -> dict:
    """The source answers, with the one difference the target layout cannot avoid:
    MLflow's SQL store keeps a NaN logged-model metric as 0 in logged_model_metrics (the NaN flag
    exists only in `metrics`); mlflow-mongodb keeps one document per logged value, which holds
    the NaN that was logged, so get_logged_model shows NaN there."""
    exp = json.loads(json.dumps(src, default=str))
    hist = src["metric_history"]
    for lm in exp["logged_models"].values():
        for m in lm["metrics"]:
            points = hist.get(f"{m['run_id']}/{m['key']}", [])
            if m["value"] == 0.0 and any(p["timestamp"] == m["timestamp"] and p["step"] == m["step"]
                                         and p["value"] == "NaN" for p in points):
                m["value"] = "NaN"
    return exp


def normalised(snap: dict) -> dict:
    return json.loads(json.dumps(snap, default=str))


@pytest.fixture(scope="module")
def migrated(pg_source, mongo_base, tmp_path_factory):
    from tests.support.servers import with_database
    src_uri, ids = pg_source
    target = with_database(mongo_base, "dbm_e2e_" + os.urandom(4).hex())
    report_path = tmp_path_factory.mktemp("report") / "report.json"
    res = run_cli("--postgres-uri", src_uri, "--mongodb-uri", target, "--verify", "full",
                  "--report-json", report_path, "--no-progress", script="run_migration")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    yield src_uri, target, ids, json.loads(report_path.read_text()), res
    pymongo.MongoClient(target).drop_database(target.rsplit("/", 1)[1])


def test_plugin_is_the_pinned_version():
    assert version("mlflow-mongodb") == "0.1.0b2"


def test_stock_mlflow_sees_the_same_data(migrated):
    src_uri, target, ids, report, _ = migrated
    source = snapshot(mlflow_uri(src_uri))
    dest = snapshot(target)
    expected = expected_from_source(source)
    got = normalised(dest)
    # Guard against a vacuous pass: the fixture has every kind of entity.
    assert len(expected["experiments"]) == 4 and len(expected["runs"]) == 6
    assert len(expected["traces"]) == 3 and expected["registered_models"] and expected["prompts"]
    assert expected["logged_models"] and len(expected["metric_history"]) >= 9
    for section in expected:
        assert got[section] == expected[section], f"{section} differs"


def test_special_metric_values_survive(migrated):
    src_uri, target, ids, _, _ = migrated
    from mlflow import MlflowClient
    hist = MlflowClient(tracking_uri=target).get_metric_history(ids["runs"]["parent"], "special")
    values = [m.value for m in sorted(hist, key=lambda m: m.step)]
    import math
    assert math.isnan(values[0])
    # MLflow's SQL store clamps infinities to the largest double; the target shows what the source shows.
    assert values[1] == 1.7976931348623157e308 and values[2] == -1.7976931348623157e308
    assert values[3] == 0.0  # MLflow's client logged -0.0 as 0 (see test_edge_values for -0.0 itself)
    assert values[4] == 5e-324


def test_indexes_have_the_plugin_names(migrated):
    _, target, _, _, _ = migrated
    db = pymongo.MongoClient(target).get_default_database()
    for coll, names in PLUGIN_INDEXES.items():
        found = {ix["name"] for ix in db[coll].list_indexes()} - {"_id_"}
        assert found == names, coll


def test_report_counts_and_verification(migrated):
    _, _, _, report, res = migrated
    assert report["status"] == "SUCCESS" and report["exit_code"] == 0
    v = report["verification"]
    assert v["passed"] and v["level"] == "full"
    assert all(c["passed"] for c in v["counts"] + v["references"] + v["values"] + v["indexes"])
    tables = {t["table"]: t for t in report["tables"]}
    for t in ("experiments", "runs", "metrics", "params", "tags", "latest_metrics", "trace_info",
              "spans", "assessments", "registered_models", "model_versions", "registered_model_aliases",
              "logged_models", "datasets", "inputs", "input_tags"):
        assert tables[t]["total"] > 0 and tables[t]["migrated"] == tables[t]["total"], t
    # Tables the layout has no place for are copied in tables form under mlflow_sql.
    assert tables["webhooks"]["destination"].startswith("mlflow_sql.webhooks (tables form")
    assert tables["alembic_version"]["migrated"] == 1 and not report["skipped_tables"]
    assert "STEP 1/6" in res.stderr and "Status: SUCCESS" in res.stdout


def test_target_keeps_working_in_mlflow(migrated):
    """Ids continue where the source left off: version numbers (deleted ones count), new entities."""
    _, target, ids, _, _ = migrated
    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri=target, registry_uri=target)
    v = client.create_model_version("reg-model", "s3://models/m4")
    assert v.version == 4  # v3 was deleted in the source; its number stays used
    exp = client.create_experiment("created-after-migration")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    client.log_metric(ids["runs"]["parent"], "loss", 0.001, step=100)
    assert client.get_run(ids["runs"]["parent"]).data.metrics["loss"] == 0.001


def test_run_search_filters(migrated):
    """search_runs filters answer as on the source. SecantusDB cannot evaluate filters on
    metrics/params/tags/run_name (a server gap); those run when DBMIGRATE_TEST_MONGODB_URI points
    at a real MongoDB."""
    src_uri, target, ids, _, _ = migrated
    from mlflow import MlflowClient
    from mlflow.entities import ViewType
    src = MlflowClient(tracking_uri=mlflow_uri(src_uri))
    dst = MlflowClient(tracking_uri=target)
    exps = [e.experiment_id for e in src.search_experiments(view_type=ViewType.ALL)]
    filters = ["attributes.status = 'FINISHED'", "attributes.start_time > 1700000000020",
               "attributes.status != 'RUNNING'"]
    orders = [["metrics.loss DESC"], ["params.lr ASC"], ["attributes.start_time DESC"]]
    if REAL_MONGODB:
        filters += ["metrics.loss < 1", "params.lr = '0.01'", "tags.owner = 'alice'",
                    "attributes.run_name = 'parent-run'", "metrics.special > 0"]
    for f in filters:
        a = sorted(r.info.run_id for r in src.search_runs(exps, f, run_view_type=ViewType.ALL))
        b = sorted(r.info.run_id for r in dst.search_runs(exps, f, run_view_type=ViewType.ALL))
        assert a == b, f
    for o in orders:
        a = [r.info.run_id for r in src.search_runs(exps, "", run_view_type=ViewType.ACTIVE_ONLY, order_by=o)]
        b = [r.info.run_id for r in dst.search_runs(exps, "", run_view_type=ViewType.ACTIVE_ONLY, order_by=o)]
        assert set(a) == set(b) and a[0] == b[0], o
