"""Populate an MLflow tracking + registry store through MLflow's own public client.

Used by the tests (and the demo) to make real source databases: whatever MLflow writes for
these calls is what dbmigrate must carry over. Works against any tracking URI MLflow accepts
(SQL via SQLAlchemy, or MongoDB via the mlflow-mongodb plugin), which lets the tests compare
what the plugin itself writes with what dbmigrate writes.

    python -m tests.support.make_source postgresql+psycopg2://postgres@127.0.0.1/src \
        [--scale N] [--json]

Runs under MLflow 3.x (the main environment) and under MLflow 2.22 (the .venv-mlflow2
environment of tests/support/mlflow2.py). Under 2.x the calls 2.x lacks are left out:
logged models (and the run inputs/outputs and metric links to them) and assessments
(2.22 has log_feedback/log_expectation, but only for Databricks Managed MLflow); the
model_score metrics are then logged without a model, prompts go through mlflow.register_prompt,
and trace spans are written as artifacts under a temporary directory (the experiment that holds
the traces gets its artifact location there). Under 2.x the ids also carry "mlflow_version",
"artifact_root" and "skipped" (what was left out).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import warnings
import os
import time
from pathlib import Path

# Traces must be written before the function returns, not by a background exporter.
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("MLFLOW_TRACKING_INSECURE_TLS", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

LONG_PARAM = ("é" + "x" * 99) * 80  # 8000 characters, non-ASCII first
SPECIAL_VALUES = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.5, 0.0]


def populate(tracking_uri: str, *, scale: int = 1, with_traces: bool = True) -> dict:
    """Create the standard set of MLflow entities; returns ids for the tests to look up."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    warnings.filterwarnings("ignore")
    mlflow_major = int(mlflow.__version__.split(".")[0])
    mlflow3 = mlflow_major >= 3
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    ids: dict = {"experiments": {}, "runs": {}, "models": [], "traces": []}
    exp_a_kw: dict = {}
    version = tuple(int(x) for x in mlflow.__version__.split(".")[:2])
    if version < (3, 3):
        # Before 3.3 (no spans table) trace spans are artifacts: keep them out of ./mlruns.
        artifact_root = tempfile.mkdtemp(prefix="dbm-mlflow2-artifacts-")
        exp_a_kw["artifact_location"] = Path(artifact_root, "exp-a").as_uri()
        ids.update(mlflow_version=mlflow.__version__, artifact_root=artifact_root, skipped=[])

    exp_a = client.create_experiment(
        "exp-a 実験 🚀",
        tags={"team": "platform", "emoji": "🙂 ok", "empty": "", "mlflow.note.content": "日本語"},
        **exp_a_kw,
    )
    exp_b = client.create_experiment("exp-b", artifact_location="s3://bucket/exp-b")
    exp_del = client.create_experiment("exp-deleted", tags={"x": "1"})
    ids["experiments"] = {"a": exp_a, "b": exp_b, "deleted": exp_del}

    base_ts = 1_700_000_000_000
    # Parent and nested runs with full metric histories.
    parent = client.create_run(exp_a, run_name="parent-run", start_time=base_ts,
                               tags={"owner": "alice", "emoji": "🔥"})
    pid = parent.info.run_id
    metrics = []
    for i, v in enumerate(SPECIAL_VALUES):
        metrics.append(Metric("special", v, base_ts + i, i))
    for step in range(20 * scale):
        metrics.append(Metric("loss", 1.0 / (step + 1), base_ts + step * 10, step))
        metrics.append(Metric("acc", step / 100.0, base_ts + step * 10, step))
    # duplicate (key, timestamp, step) with different values
    metrics.append(Metric("dup", 1.0, base_ts, 0))
    metrics.append(Metric("dup", 2.0, base_ts, 0))
    metrics.append(Metric("nan_last", 3.0, base_ts, 0))
    metrics.append(Metric("nan_last", math.nan, base_ts + 5, 1))
    for chunk in range(0, len(metrics), 900):
        client.log_batch(pid, metrics=metrics[chunk:chunk + 900])
    client.log_batch(
        pid,
        params=[Param("lr", "0.01"), Param("long", LONG_PARAM[:_param_limit()]), Param("empty", ""),
                Param("unicode 鍵", "値 ✓")],
        tags=[RunTag("stage", "train"), RunTag("mlflow.note.content", "notes 📝")],
    )
    client.set_terminated(pid, status="FINISHED", end_time=base_ts + 100_000)

    child = client.create_run(exp_a, run_name="child-run", start_time=base_ts + 10,
                              tags={"mlflow.parentRunId": pid})
    client.log_metric(child.info.run_id, "child_metric", 42.0, timestamp=base_ts + 11, step=3)
    client.log_param(child.info.run_id, "depth", "1")
    client.set_terminated(child.info.run_id, status="FAILED", end_time=base_ts + 20)

    deleted_run = client.create_run(exp_a, run_name="deleted-run", start_time=base_ts + 30)
    client.log_metric(deleted_run.info.run_id, "m", 1.0, timestamp=base_ts + 31)
    client.set_terminated(deleted_run.info.run_id, status="KILLED", end_time=base_ts + 40)
    client.delete_run(deleted_run.info.run_id)

    empty_run = client.create_run(exp_b, start_time=base_ts + 50)  # no name given: MLflow picks one
    running = client.create_run(exp_b, run_name="still-running", start_time=base_ts + 60)
    client.log_param(running.info.run_id, "p", "v")

    ids["runs"] = {"parent": pid, "child": child.info.run_id, "deleted": deleted_run.info.run_id,
                   "empty": empty_run.info.run_id, "running": running.info.run_id}

    # Runs in the experiment that gets deleted.
    r_in_del = client.create_run(exp_del, run_name="in-deleted-exp", start_time=base_ts + 70)
    client.log_metric(r_in_del.info.run_id, "m", 2.0, timestamp=base_ts + 71)
    client.set_terminated(r_in_del.info.run_id)
    ids["runs"]["in_deleted_exp"] = r_in_del.info.run_id
    client.delete_experiment(exp_del)

    # Datasets as run inputs.
    import pandas as pd
    df = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    with mlflow.start_run(run_id=pid):
        ds = mlflow.data.from_pandas(df, source="s3://data/train.csv", name="train-set")
        mlflow.log_input(ds, context="training", tags={"split": "train"})
        ds2 = mlflow.data.from_pandas(df.head(2), source="s3://data/eval.csv", name="eval-set")
        mlflow.log_input(ds2, context="evaluation")
    with mlflow.start_run(run_id=child.info.run_id):
        mlflow.log_input(ds, context="training")

    # Logged model with params, tags and metrics linked to a run and dataset (MLflow 3 only).
    if mlflow3:
        lm = client.create_logged_model(exp_a, name="my-model", source_run_id=pid,
                                        tags={"framework": "sk"}, params={"alpha": "0.5"},
                                        model_type="classifier")
        client.log_metric(pid, "model_score", 0.93, timestamp=base_ts + 500, step=1,
                          model_id=lm.model_id, dataset_name="eval-set", dataset_digest=ds2.digest)
        client.log_metric(pid, "model_score", math.nan, timestamp=base_ts + 501, step=2,
                          model_id=lm.model_id)
        try:  # mlflow-mongodb 0.1.0b2 does not implement finalize_logged_model
            client.finalize_logged_model(lm.model_id, "READY")
        except NotImplementedError:
            pass
        client.set_logged_model_tags(lm.model_id, {"stage": "candidate"})
        client.log_inputs(pid, models=[mlflow.entities.LoggedModelInput(lm.model_id)])
        client.log_outputs(pid, models=[mlflow.entities.LoggedModelOutput(lm.model_id, step=2)])
        lm2 = client.create_logged_model(exp_b, name="pending-model")
        ids["logged_models"] = [lm.model_id, lm2.model_id]
    else:
        # 2.x has no logged models: the same metric points, linked to no model.
        client.log_metric(pid, "model_score", 0.93, timestamp=base_ts + 500, step=1)
        client.log_metric(pid, "model_score", math.nan, timestamp=base_ts + 501, step=2)
        ids["logged_models"] = []
        ids["skipped"].append("logged models (create_logged_model, log_inputs(models=), "
                              "log_outputs, log_metric(model_id=)): not in MLflow 2")

    # Registry: models, versions, tags, aliases, a deleted version, a version without run.
    rm = client.create_registered_model("reg-model", tags={"owner": "ml", "uni": "模型"},
                                        description="first model")
    v1 = client.create_model_version("reg-model", f"runs:/{pid}/model", run_id=pid,
                                     tags={"quality": "good"}, description="v1")
    v2 = client.create_model_version("reg-model", "s3://models/m2", tags={"quality": "better"})
    v3 = client.create_model_version("reg-model", "s3://models/m3")
    client.set_registered_model_alias("reg-model", "champion", v2.version)
    client.set_registered_model_alias("reg-model", "challenger", v1.version)
    client.transition_model_version_stage("reg-model", v1.version, "Production")
    client.set_model_version_tag("reg-model", v2.version, "validated", "true")
    client.delete_model_version("reg-model", v3.version)
    client.create_registered_model("empty-model")
    client.create_registered_model("model 模型 🤖", description="")
    client.create_model_version("model 模型 🤖", "s3://models/u1", run_id=child.info.run_id)
    ids["models"] = [rm.name, "empty-model", "model 模型 🤖"]

    # A prompt (a registered model with prompt tags) with two versions and an alias.
    genai = getattr(mlflow, "genai", None)
    if getattr(genai, "register_prompt", None) is not None:
        p1 = mlflow.genai.register_prompt("greeting-prompt", "Hello {{name}}!",
                                          commit_message="first", tags={"lang": "en"})
        mlflow.genai.register_prompt("greeting-prompt", "Hi {{name}} 👋", commit_message="second")
        mlflow.genai.set_prompt_alias("greeting-prompt", "production", p1.version)
        ids["prompts"] = ["greeting-prompt"]
    elif hasattr(mlflow, "register_prompt"):  # 2.21 - 3.0: version tags are "version_metadata"
        p1 = mlflow.register_prompt("greeting-prompt", "Hello {{name}}!",
                                    commit_message="first", version_metadata={"lang": "en"})
        mlflow.register_prompt("greeting-prompt", "Hi {{name}} 👋", commit_message="second")
        mlflow.set_prompt_alias("greeting-prompt", "production", p1.version)
        ids["prompts"] = ["greeting-prompt"]
    else:
        p1, ids["prompts"] = None, []
        ids.setdefault("skipped", []).append(f"prompts: not in MLflow {mlflow.__version__}")
    with_traces = with_traces and hasattr(mlflow, "trace")  # tracing arrived in 2.13
    if not hasattr(mlflow, "trace"):
        ids.setdefault("skipped", []).append(f"traces: not in MLflow {mlflow.__version__}")

    if with_traces:
        mlflow.set_experiment(experiment_id=exp_a)

        @mlflow.trace(span_type="LLM")
        def llm_call(question):
            return {"answer": question.upper(), "tokens": 3}

        @mlflow.trace(name="pipeline", attributes={"version": 2})
        def pipeline(question):
            with mlflow.start_span(name="retrieve", span_type="RETRIEVER") as span:
                span.set_inputs({"q": question})
                span.set_outputs(["doc1", "doc2"])
            return llm_call(question)

        pipeline("what is mlflow? 日本")
        trace_id = _last_trace_id(mlflow)
        ids["traces"].append(trace_id)
        client.set_trace_tag(trace_id, "reviewed", "yes ✓")
        if mlflow3 and _has_table(tracking_uri, "assessments"):
            mlflow.log_feedback(trace_id=trace_id, name="correctness", value=True,
                                rationale="matches", metadata={"k": "v"})
            mlflow.log_expectation(trace_id=trace_id, name="expected", value={"answer": "X"})
        elif mlflow3:  # 3.0 and 3.1 have the API but no assessments table (it arrived in 3.2)
            ids.setdefault("skipped", []).append(f"assessments: no table in MLflow {mlflow.__version__}")
        else:
            ids["skipped"].append("assessments (log_feedback, log_expectation): MLflow 2 "
                                  "accepts them only on Databricks Managed MLflow")

        @mlflow.trace
        def failing():
            raise ValueError("boom")

        try:
            failing()
        except ValueError:
            pass
        ids["traces"].append(_last_trace_id(mlflow))
        with mlflow.start_run(run_id=pid):
            pipeline("inside run")
        ids["traces"].append(_last_trace_id(mlflow))
        try:
            client.link_prompt_version_to_trace(ids["traces"][0], p1) if p1 is not None and hasattr(
                client, "link_prompt_version_to_trace") else None
        except Exception:  # noqa: BLE001 - optional API across versions
            pass

    # Bulk metrics to make tables non-trivial when asked for more scale.
    if scale > 1:
        for r in range(scale):
            run = client.create_run(exp_b, run_name=f"bulk-{r}", start_time=base_ts + r)
            batch = [Metric(f"k{k}", float(k * r), base_ts + s, s)
                     for k in range(5) for s in range(100)]
            for chunk in range(0, len(batch), 1000):
                client.log_batch(run.info.run_id, metrics=batch[chunk:chunk + 1000])
            client.set_terminated(run.info.run_id)
    time.sleep(0.01)
    return ids


def _param_limit() -> int:
    """The longest param value this MLflow keeps (6000 from 2.x to 3.17: longer ones are cut there,
    refused by 2.9), so every release stores the same text."""
    from mlflow.utils import validation
    return getattr(validation, "MAX_PARAM_VAL_LENGTH", len(LONG_PARAM))


def _last_trace_id(mlflow) -> str:
    if hasattr(mlflow, "get_last_active_trace_id"):
        return mlflow.get_last_active_trace_id()
    if hasattr(mlflow, "get_last_active_trace"):  # 2.14 - 2.20
        return mlflow.get_last_active_trace().info.request_id
    # 2.13: the newest trace of the active experiment, from the store
    from mlflow import MlflowClient
    exp = mlflow.tracking.fluent._get_experiment_id()
    return MlflowClient().search_traces([exp], max_results=1,
                                        order_by=["timestamp_ms DESC"])[0].info.request_id


def _has_table(tracking_uri: str, table: str) -> bool:
    import sqlalchemy as sa
    if not tracking_uri.split(":", 1)[0].split("+")[0] in ("sqlite", "postgresql", "mysql", "mssql"):
        return True  # another store (mlflow-mongodb): it has its own
    engine = sa.create_engine(tracking_uri)
    try:
        return table in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracking_uri")
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--no-traces", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the ids as JSON")
    args = parser.parse_args(argv)
    ids = populate(args.tracking_uri, scale=args.scale, with_traces=not args.no_traces)
    print(json.dumps(ids) if args.json else ids)


if __name__ == "__main__":
    main()
