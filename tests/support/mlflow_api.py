"""What stock MLflow shows for a tracking/registry URI, as plain comparable data.

`snapshot(uri)` asks MLflow's public client everything a user could see (experiments, runs with
info/params/tags/latest metrics/inputs/outputs, full metric histories, registered models,
versions, aliases, prompts, logged models, traces with spans and assessments) and normalises it
(NaN -> "NaN", unordered collections sorted) so two stores can be compared with ==.
"""

from __future__ import annotations

import math
import os
import warnings

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def norm(v):
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if v == 0.0 and math.copysign(1, v) < 0:
            return "-0.0"
        return v
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    return v


def _metric(m, *, with_model=False):
    d = {"key": m.key, "value": norm(m.value), "timestamp": m.timestamp, "step": m.step}
    if with_model:
        d.update(model_id=m.model_id, dataset_name=m.dataset_name, dataset_digest=m.dataset_digest,
                 run_id=getattr(m, "run_id", None))
    return d


def _version(v):
    return {"name": v.name, "version": str(v.version), "creation_timestamp": v.creation_timestamp,
            "last_updated_timestamp": v.last_updated_timestamp, "description": v.description or None,
            "user_id": v.user_id or None, "current_stage": v.current_stage, "source": v.source,
            "run_id": v.run_id or None, "status": v.status, "status_message": v.status_message or None,
            "run_link": v.run_link or None, "tags": dict(sorted(v.tags.items()))}


def snapshot(uri: str, *, metric_history: bool = True, traces: bool = True) -> dict:
    warnings.filterwarnings("ignore")
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    out: dict = {}
    exps = client.search_experiments(view_type=ViewType.ALL, max_results=50000)
    out["experiments"] = sorted(
        ({"experiment_id": e.experiment_id, "name": e.name, "artifact_location": e.artifact_location,
          "lifecycle_stage": e.lifecycle_stage, "creation_time": e.creation_time,
          "last_update_time": e.last_update_time, "tags": dict(sorted(e.tags.items()))} for e in exps),
        key=lambda d: d["experiment_id"])
    exp_ids = [e.experiment_id for e in exps]
    runs = client.search_runs(exp_ids, run_view_type=ViewType.ALL, max_results=50000)
    out["runs"] = {}
    out["metric_history"] = {}
    for r in sorted(runs, key=lambda r: r.info.run_id):
        full = client.get_run(r.info.run_id)
        i = full.info
        info = {"run_id": i.run_id, "experiment_id": i.experiment_id, "run_name": i.run_name,
                "user_id": i.user_id, "status": i.status, "start_time": i.start_time,
                "end_time": i.end_time, "lifecycle_stage": i.lifecycle_stage,
                "artifact_uri": i.artifact_uri}
        d = full.data
        inputs = full.inputs
        datasets = sorted(
            ({"name": di.dataset.name, "digest": di.dataset.digest,
              "source_type": di.dataset.source_type, "source": di.dataset.source,
              "schema": di.dataset.schema, "profile": di.dataset.profile,
              "tags": sorted((t.key, t.value) for t in di.tags)} for di in inputs.dataset_inputs),
            key=lambda x: (x["name"], x["digest"]))
        models_in = sorted(m.model_id for m in (getattr(inputs, "model_inputs", None) or []))
        outputs = getattr(full, "outputs", None)
        models_out = sorted((m.model_id, m.step) for m in (outputs.model_outputs if outputs else []))
        out["runs"][i.run_id] = {
            "info": info, "params": dict(sorted(d.params.items())),
            "tags": dict(sorted(d.tags.items())), "metrics": norm(dict(sorted(d.metrics.items()))),
            "latest": sorted((_metric(m) for m in d._metric_objs), key=lambda m: m["key"]),
            "datasets": datasets, "model_inputs": models_in, "model_outputs": models_out,
            "search_row": {"run_id": r.info.run_id, "status": r.info.status,
                           "metrics": norm(dict(sorted(r.data.metrics.items())))},
        }
        if metric_history:
            for key in sorted(d.metrics):
                hist = client.get_metric_history(i.run_id, key)
                out["metric_history"][f"{i.run_id}/{key}"] = sorted(
                    (_metric(m) for m in hist),
                    key=lambda m: (m["timestamp"], m["step"], str(m["value"])))
    # Registry
    models = client.search_registered_models(max_results=1000)
    out["registered_models"] = {}
    for m in sorted(models, key=lambda m: m.name):
        rm = client.get_registered_model(m.name)
        versions = client.search_model_versions(f"name = '{m.name}'", max_results=10000)
        out["registered_models"][m.name] = {
            "creation_timestamp": rm.creation_timestamp, "last_updated_timestamp": rm.last_updated_timestamp,
            "description": rm.description or None, "tags": dict(sorted(rm.tags.items())),
            "aliases": dict(sorted(rm.aliases.items())),
            "latest_versions": sorted(_version(v)["version"] for v in rm.latest_versions),
            "versions": sorted((_version(v) for v in versions), key=lambda v: int(v["version"])),
            "by_alias": {a: {**_version(mv), "aliases": sorted(mv.aliases)} for a in sorted(rm.aliases)
                         for mv in [client.get_model_version_by_alias(m.name, a)]},
        }
    # Prompts
    out["prompts"] = {}
    try:
        prompts = client.search_prompts(max_results=1000)
    except Exception as exc:  # noqa: BLE001
        prompts = []
        out["prompts"]["error"] = type(exc).__name__
    for p in sorted(prompts, key=lambda p: p.name):
        versions = []
        v = 1
        while True:
            try:
                pv = client.get_prompt_version(p.name, v)
            except Exception:  # noqa: BLE001 - past the last version
                break
            if pv is None:
                break
            versions.append({"version": pv.version, "template": pv.template,
                             "commit_message": pv.commit_message, "tags": dict(sorted(pv.tags.items())),
                             "aliases": sorted(pv.aliases or [])})
            v += 1
        out["prompts"][p.name] = {"tags": dict(sorted(p.tags.items())), "versions": versions}
    # Logged models
    lms = client.search_logged_models(experiment_ids=exp_ids, max_results=1000)
    out["logged_models"] = {}
    for lm in sorted(lms, key=lambda m: m.model_id):
        g = client.get_logged_model(lm.model_id)
        out["logged_models"][g.model_id] = {
            "name": g.name, "experiment_id": g.experiment_id, "artifact_location": g.artifact_location,
            "creation_timestamp": g.creation_timestamp, "last_updated_timestamp": g.last_updated_timestamp,
            "status": str(g.status), "status_message": g.status_message, "source_run_id": g.source_run_id,
            "model_type": g.model_type, "tags": dict(sorted(g.tags.items())),
            "params": dict(sorted(g.params.items())),
            "metrics": sorted((_metric(m, with_model=True) for m in (g.metrics or [])),
                              key=lambda m: (m["key"], m["timestamp"], m["step"])),
        }
    if traces:
        out["traces"] = {}
        infos, token = [], None
        while True:
            page = client.search_traces(locations=exp_ids, max_results=500, page_token=token)
            infos += list(page)
            token = page.token
            if not token:
                break
        for t in sorted(infos, key=lambda t: t.info.trace_id):
            full = client.get_trace(t.info.trace_id)
            out["trace_search"] = sorted(x.info.trace_id for x in infos)
            info = full.info.to_dict()
            info["assessments"] = sorted(info.get("assessments", []), key=lambda a: a["assessment_id"])
            spans = sorted((s.to_dict() for s in full.data.spans), key=lambda s: s["span_id"])
            out["traces"][t.info.trace_id] = {"info": info, "spans": spans}
    return out
