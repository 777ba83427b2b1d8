"""Sources for tests/test_mongo_merge.py, made by MLflow's own client in a subprocess:
`python -m tests.support.mongo_merge_sources dev|prod|view-exp URI [...]` prints IDS=<json>.

dev (a SQL store): experiment "dev-exp" with a run whose "loss" has N points (log_batch), a NaN
metric, a logged model with a metric, a trace; model "clf" version 1 on that run, alias champion.
prod (the mlflow-mongodb store): an experiment of the same name "dev-exp" with a run of its own, a
model "clf" of its own (version 1, alias stable)."""

from __future__ import annotations

import json
import sys
import time


def make_dev(uri: str, points: int) -> dict:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    mlflow.set_tracking_uri(uri)
    c = MlflowClient()
    exp = mlflow.set_experiment("dev-exp").experiment_id
    c.set_experiment_tag(exp, "owner", "dev-team")
    ids: dict = {"experiment": exp}
    with mlflow.start_run(run_name="train") as run:
        ids["run"] = rid = run.info.run_id
        mlflow.log_params({"lr": "0.01"})
        now = int(time.time() * 1000)
        for i in range(0, points, 1000):
            c.log_batch(rid, metrics=[Metric("loss", 1.0 / (s + 1), now + s, s) for s in range(i, min(points, i + 1000))])
        mlflow.log_metric("nan_metric", float("nan"))
        mlflow.set_tag("team", "vision")
        lm = mlflow.initialize_logged_model(name="clf-model", source_run_id=rid, params={"depth": "4"})
        mlflow.finalize_logged_model(lm.model_id, "READY")
        ids["logged_model"] = lm.model_id
        mlflow.log_metric("acc", 0.93, model_id=lm.model_id)
        with mlflow.start_span("predict") as span:
            span.set_inputs({"x": 1})
        ids["trace"] = mlflow.get_last_active_trace_id()
    c.create_registered_model("clf", tags={"domain": "vision"})
    v = c.create_model_version("clf", f"models:/{lm.model_id}", run_id=rid, model_id=lm.model_id)
    c.set_registered_model_alias("clf", "champion", v.version)
    return ids


def make_prod(uri: str) -> dict:
    import mlflow
    from mlflow import MlflowClient
    mlflow.set_tracking_uri(uri)
    c = MlflowClient()
    exp = mlflow.set_experiment("dev-exp").experiment_id
    with mlflow.start_run(run_name="prod-train") as run:
        mlflow.log_metric("loss", 0.5)
    c.create_registered_model("clf", tags={"owner": "prod"})
    c.create_model_version("clf", f"runs:/{run.info.run_id}/clf", run_id=run.info.run_id)
    c.set_registered_model_alias("clf", "stable", "1")
    return {"experiment": exp, "run": run.info.run_id}


def view_experiment(uri: str, name: str, run_id: str) -> dict:
    """What MLflow lists under the experiment `name`: its id, its runs (search_runs), the run's
    experiment id, the logged models and traces it finds for the experiment."""
    import mlflow
    from mlflow import MlflowClient
    mlflow.set_tracking_uri(uri)
    c = MlflowClient()
    exp = c.get_experiment_by_name(name)
    runs = c.search_runs([exp.experiment_id])
    out = {"experiment_id": exp.experiment_id, "runs": sorted(r.info.run_id for r in runs),
           "run_experiment_id": c.get_run(run_id).info.experiment_id,
           "loss_points": len(c.get_metric_history(run_id, "loss")),
           "logged_models": sorted((m.model_id, m.experiment_id) for m in c.search_logged_models([exp.experiment_id])),
           "traces": sorted((t.info.trace_id, t.info.experiment_id) for t in
                            mlflow.search_traces(locations=[exp.experiment_id], return_type="list"))}
    return out


if __name__ == "__main__":
    what, uri = sys.argv[1], sys.argv[2]
    out = (make_dev(uri, int(sys.argv[3])) if what == "dev" else make_prod(uri) if what == "prod"
           else view_experiment(uri, sys.argv[3], sys.argv[4]))
    print("IDS=" + json.dumps(out, default=str))
