"""MLflow's own client writing into a tracking store until told to stop: the "MLflow keeps running
while the first copy runs" side of the sync tests (issue 14, item 4).

    python -m tests.support.live_writer TRACKING_URI IDS_JSON STOP_FILE [TICKS]

IDS_JSON is what tests/support/make_source.populate returned for the store. First a long "trainer"
run is started (it stays RUNNING and logs one metric step per tick, like a training that goes on
during the copy). Then, until STOP_FILE exists, each tick:

* creates a short run in experiment "a" with a batch of metrics, params and tags, and ends it
  (FINISHED or FAILED);
* logs the trainer's next step (a new metrics row; its latest_metrics row changes);
* sets the parent run's "progress" tag to the tick's number (an existing tags row changes);
* every third tick registers a new version of the first model from the short run and moves the
  model's "live" alias to it.

When STOP_FILE appears (or after TICKS ticks, if given): the trainer run ends and a new version of
the model is registered from it, the "live" alias moves to that version, the parent's "progress"
tag becomes "done" and its "owner" tag changes, the child run (made by populate) logs the next step
of its metric and is ended again (KILLED, a new end_time), and the first short run is deleted
(lifecycle_stage). So what the writer does after a copy's snapshot always includes new rows,
changed rows of runs that existed before and changed parents, whatever the timing.

Prints ``TICK <n> <unix time after the tick's last write>`` after every tick (flushed), and
``OUT=<json>`` at the end: the runs and versions it made.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def main(uri: str, ids: dict, stop_file: str, ticks: int | None = None) -> dict:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    warnings.filterwarnings("ignore")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp, parent, model = ids["experiments"]["a"], ids["runs"]["parent"], ids["models"][0]
    trainer = c.create_run(exp, run_name="live-trainer").info.run_id
    runs, versions = [], []
    tick = 0
    while not os.path.exists(stop_file) and (ticks is None or tick < ticks):
        tick += 1
        ts = int(time.time() * 1000)
        rid = c.create_run(exp, run_name=f"live-{tick}").info.run_id
        runs.append(rid)
        c.log_batch(rid, metrics=[Metric(k, tick + s / 10, ts + s, s) for k in ("loss", "acc") for s in range(5)],
                    params=[Param("tick", str(tick)), Param("lr", "0.01")],
                    tags=[RunTag("writer", "live"), RunTag("tick", str(tick))])
        c.set_terminated(rid, "FAILED" if tick % 5 == 0 else "FINISHED")
        c.log_metric(trainer, "train_loss", 1.0 / tick, timestamp=ts, step=tick)
        c.set_tag(parent, "progress", str(tick))
        if tick % 3 == 1:
            mv = c.create_model_version(model, f"runs:/{rid}/model", run_id=rid)
            versions.append(mv.version)
            c.set_registered_model_alias(model, "live", mv.version)
        print(f"TICK {tick} {time.time():.3f}", flush=True)
    c.set_terminated(trainer, "FINISHED")
    mv = c.create_model_version(model, f"runs:/{trainer}/model", run_id=trainer)
    versions.append(mv.version)
    c.set_registered_model_alias(model, "live", mv.version)
    c.set_tag(parent, "progress", "done")
    c.set_tag(parent, "owner", f"live-writer {time.time():.3f}")
    child, ts = ids["runs"]["child"], int(time.time() * 1000)
    c.log_metric(child, "child_metric", 43.0, timestamp=ts, step=4)
    c.set_terminated(child, "KILLED", end_time=ts)
    if runs:
        c.delete_run(runs[0])
    print(f"TICK {tick + 1} {time.time():.3f}", flush=True)
    return {"trainer": trainer, "runs": runs, "versions": versions, "ticks": tick}


if __name__ == "__main__":
    out = main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else None)
    print("OUT=" + json.dumps(out), flush=True)
