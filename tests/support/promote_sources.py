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


def make_prod(uri: str, with_clf: bool = False) -> dict:
    """prod-exp with one run and prod-model; `with_clf`: also a registered model "clf" of prod's
    own (version 1, alias "stable"), which a promotion of dev's clf is merged into."""
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
    if with_clf:
        c.create_registered_model("clf", tags={"owner": "prod"})
        c.create_model_version("clf", f"runs:/{run.info.run_id}/clf", run_id=run.info.run_id)
        c.set_registered_model_alias("clf", "stable", "1")
    return {"experiment": exp_id, "run": run.info.run_id}


def view(uri: str, model: str, alias: str) -> dict:
    """What MLflow shows of a promoted model version: the version, its run (params, metrics,
    history), its logged model, the run's traces, and every experiment's name."""
    import mlflow
    from mlflow import MlflowClient
    mlflow.set_tracking_uri(uri)
    c = MlflowClient()
    v = c.get_model_version_by_alias(model, alias)
    run = c.get_run(v.run_id)
    out = {"version": v.version, "source": v.source, "run_id": v.run_id, "params": run.data.params,
           "metrics": {k: (x if x == x else "NaN") for k, x in run.data.metrics.items()},
           "loss_history": [m.value for m in c.get_metric_history(v.run_id, "loss")],
           "artifact_uri": run.info.artifact_uri, "experiment_id": run.info.experiment_id,
           "experiment": c.get_experiment(run.info.experiment_id).name,
           "experiments": sorted(e.name for e in c.search_experiments()),
           "models": sorted(m.name for m in c.search_registered_models())}
    if getattr(v, "model_id", None):
        lm = c.get_logged_model(v.model_id)
        out["logged_model"] = {"id": lm.model_id, "source_run_id": lm.source_run_id, "params": lm.params,
                               "artifact_location": lm.artifact_location}
    out["versions"] = sorted((int(m.version), m.run_id) for m in c.search_model_versions(f"name = '{model}'"))
    out["aliases"] = dict(sorted(c.get_registered_model(model).aliases.items()))
    out["inputs"] = sorted(d.dataset.name for d in run.inputs.dataset_inputs)
    out["traces"] = len(mlflow.search_traces(locations=[run.info.experiment_id], run_id=v.run_id,
                                             return_type="list"))
    return out


if __name__ == "__main__":
    what, uri = sys.argv[1], sys.argv[2]
    if what == "view":
        print("IDS=" + json.dumps(view(uri, sys.argv[3], sys.argv[4]), default=str))
    else:
        print("IDS=" + json.dumps(make_dev(uri) if what == "dev" else make_prod(uri, "with-clf" in sys.argv[3:])))
