"""MLflow FileStores (mlruns directories) written by MLflow's own client, for the FileStore reader.

`make_filestore(version, directory)` runs, with MLflow `version` (3.17.2: this environment;
others: their own virtualenv, tests/support/mlflow_release.py), the standard population of
tests/support/make_source.py against `file://<directory>/mlruns`, then `extras`: the cases a
FileStore has and the standard set lacks (a metric file with repeated and out-of-order lines, tag
and metric keys with '/', a deleted logged model, trace session and token usage, a trace in a
deleted experiment). Returns the ids make_source.populate returns, plus "extras".

FileStore experiment ids are the 18-digit numbers MLflow's FileStore draws itself.

    python -m tests.support.make_filestore 3.17.2 /tmp/fs   # by hand
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from tests.support.mlflow_release import JSON_PREFIX, run_in_release

_CODE = """
import json, os, sys
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"   # MLflow >= 3.10 refuses a FileStore without it
os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
sys.path.insert(0, os.getcwd())                     # the repository (the cwd run_in_release sets)
os.chdir(sys.argv[1])                               # nothing lands in the repository's ./mlruns
from tests.support.make_source import populate
from tests.support.make_filestore import extras
uri = "file://" + os.path.join(sys.argv[1], "mlruns")
ids = populate(uri)
ids["extras"] = extras(uri)
print(%r + json.dumps(ids), flush=True)
""" % JSON_PREFIX


# version -> (the mlruns MLflow wrote in this process, its ids): later calls get a copy
_MADE: dict[str, tuple[str, dict]] = {}


def make_filestore(version: str, directory: str) -> dict:
    """Write `<directory>/mlruns` with MLflow `version`'s client; the ids it made.

    MLflow writes a release's store once per process: a second call (another test module's
    fixture) gets a copy of the first store's files, so that each module has its own directory
    (artifact locations inside still name the first one, which outlives the session's tests)."""
    os.makedirs(directory, exist_ok=True)
    dest = os.path.join(os.path.abspath(directory), "mlruns")
    if version in _MADE and os.path.isdir(_MADE[version][0]):
        shutil.copytree(_MADE[version][0], dest, symlinks=True)
        return json.loads(json.dumps(_MADE[version][1]))
    out = run_in_release(version, _CODE, os.path.abspath(directory), timeout=900)
    for line in out.splitlines():
        if line.startswith(JSON_PREFIX):
            ids = json.loads(line[len(JSON_PREFIX):])
            _MADE[version] = (dest, ids)
            return json.loads(json.dumps(ids))
    raise RuntimeError(f"MLflow {version} printed no ids:\n{out[-2000:]}")


def extras(uri: str) -> dict:
    """FileStore cases beyond make_source.populate (runs inside the release's interpreter)."""
    import math

    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mlflow.set_tracking_uri(uri)
    major = int(mlflow.__version__.split(".")[0])
    out: dict = {}
    exp = client.create_experiment("extras ✓", tags={"nested/tag key": "v/1"})
    ts = 1_700_000_100_000
    run = client.create_run(exp, run_name="extras-run", start_time=ts)
    rid = run.info.run_id
    # The same point twice, and a file that goes back in time with a repeat of an earlier point:
    # MLflow's SQL store keeps one row per (key, timestamp, step, value).
    client.log_metric(rid, "rep", 1.0, timestamp=ts, step=0)
    client.log_metric(rid, "rep", 1.0, timestamp=ts, step=0)
    client.log_metric(rid, "rep", 2.0, timestamp=ts + 5, step=1)
    client.log_metric(rid, "rep", 1.0, timestamp=ts, step=0)
    client.log_metric(rid, "rep", math.inf, timestamp=ts - 5, step=2)
    client.log_batch(rid, metrics=[Metric("group/sub metric", float(i), ts + i, i) for i in range(5)])
    client.set_tag(rid, "nested/tag", "x")
    client.log_param(rid, "nested/param", "p")
    client.set_terminated(rid, status="FINISHED", end_time=ts + 1000)
    out["run"] = rid
    out["experiment"] = exp
    if major >= 3:
        gone = client.create_logged_model(exp, name="deleted-model")
        client.delete_logged_model(gone.model_id)
        out["deleted_logged_model"] = gone.model_id
        mlflow.set_experiment(experiment_id=exp)

        @mlflow.trace(span_type="CHAT_MODEL")
        def chat(q):
            span = mlflow.get_current_active_span()
            span.set_attribute("mlflow.chat.tokenUsage",
                               {"input_tokens": 7, "output_tokens": 5, "total_tokens": 12})
            mlflow.update_current_trace(metadata={"mlflow.trace.session": "session-✓"},
                                        tags={"topic": "extras"})
            return q[::-1]

        chat("hello")
        out["trace"] = mlflow.get_last_active_trace_id()
    return out


if __name__ == "__main__":
    print(json.dumps(make_filestore(sys.argv[1], sys.argv[2]), indent=1))
