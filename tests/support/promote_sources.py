"""Small dev and prod MLflow databases made by MLflow's own client, for the selection / merge
tests (tests/test_selection_merge.py). Run in a subprocess: `python -m tests.support.promote_sources
dev|prod TRACKING_URI` prints IDS=<json>."""

from __future__ import annotations

import json
import sys


def make_dev(uri: str) -> dict:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    mlflow.set_tracking_uri(uri)
    c = MlflowClient()
    exp_id = mlflow.set_experiment("dev-exp").experiment_id
    c.set_experiment_tag(exp_id, "owner", "dev-team")
    ids: dict = {"experiment": exp_id}
    with mlflow.start_run(run_name="sweep") as parent:
        ids["parent"] = parent.info.run_id
        mlflow.log_param("sweep", "grid")
        with mlflow.start_run(run_name="train", nested=True) as run:
            ids["run"] = run.info.run_id
            mlflow.log_params({"lr": "0.01", "layers": "3"})
            for i in range(20):
                mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
            mlflow.log_metric("nan_metric", float("nan"))
            mlflow.set_tag("team", "vision")
            mlflow.log_input(mlflow.data.from_pandas(pd.DataFrame({"a": [1, 2, 3]}), name="train-ds"),
                             context="training")
            lm = mlflow.initialize_logged_model(name="clf-model", source_run_id=run.info.run_id,
                                                params={"depth": "4"}, tags={"kind": "tree"})
            mlflow.finalize_logged_model(lm.model_id, "READY")
            ids["logged_model"] = lm.model_id
            mlflow.log_metric("acc", 0.93, model_id=lm.model_id)
            with mlflow.start_span("predict") as span:
                span.set_inputs({"x": 1})
                span.set_outputs({"y": 2})
            ids["trace"] = mlflow.get_last_active_trace_id()
    with mlflow.start_run(run_name="other") as other:
        ids["other_run"] = other.info.run_id
        mlflow.log_metric("loss", 5.0)
    other_exp = mlflow.set_experiment("dev-scratch").experiment_id
    ids["other_experiment"] = other_exp
    with mlflow.start_run(run_name="scratch"):
        mlflow.log_metric("x", 1.0)
    c.create_registered_model("clf", tags={"domain": "vision"}, description="the classifier")
    v1 = c.create_model_version("clf", f"runs:/{ids['other_run']}/model", run_id=ids["other_run"])
    v2 = c.create_model_version("clf", f"models:/{lm.model_id}", run_id=ids["run"], model_id=lm.model_id,
                                tags={"validated": "yes"})
    c.set_registered_model_alias("clf", "champion", v2.version)
    c.set_registered_model_alias("clf", "old", v1.version)
    ids["versions"] = [v1.version, v2.version]
    c.create_registered_model("dev-only")
    return ids


def make_prod(uri: str) -> dict:
    import mlflow
    from mlflow import MlflowClient
    mlflow.set_tracking_uri(uri)
    c = MlflowClient()
    exp_id = mlflow.set_experiment("prod-exp").experiment_id
    with mlflow.start_run(run_name="prod-train") as run:
        mlflow.log_metric("loss", 0.5)
        mlflow.log_param("lr", "0.1")
    c.create_registered_model("prod-model")
    c.create_model_version("prod-model", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    return {"experiment": exp_id, "run": run.info.run_id}


if __name__ == "__main__":
    what, uri = sys.argv[1], sys.argv[2]
    print("IDS=" + json.dumps(make_dev(uri) if what == "dev" else make_prod(uri)))
