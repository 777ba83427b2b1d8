"""Golden snapshots of both MongoDB layouts: for every MLflow table, a source row and the exact
document each layout makes of it.

The source is fixed: the literal rows of ROWS (below), inserted into an empty MLflow 3.17.2 schema
(alembic revision dc11669786a5, built by MLflow's own migrations through
dbmigrate.sql_schema.create_schema) on PostgreSQL. Rows that MLflow itself would have made carry
run ids and timestamps of the moment they were made, so they are written out here instead: the
core tracking/registry/tracing rows by hand (shaped like what MLflow 3.17.2 writes, with edge
values: NaN flags, 5e-324, the clamped max double, NULL vs '', CJK and emoji, a run without its
mlflow.runName tag, a deleted model version, a logged-model metric of each merge kind, ...), the
rows of the other tables once with tests/support/fill_all_tables.py (then frozen here).

`snapshot(url)` runs the real planning and building code in-process (SqlSource.inspect,
make_plan, iter_source_batches + build_documents per collection, ends.mongo.merge_rows for the
logged-model metrics) for the layouts "tables" and "mlflow-mongodb", and returns, per table, the
canonical extended JSON (bson.json_util, CANONICAL_JSON_OPTIONS: Int32/Int64/double/NaN/Binary/
ObjectId pinned) of

    {"source_rows": [the table's representative row: the smallest primary key],
     "tables": [the document the `tables` layout makes of that row],
     "mlflow-mongodb": {"collection": ..., "documents": [...]}}

where the mlflow-mongodb documents are the ones the row ends up in: its own document for a driving
table (experiments, runs, metrics -> run_metrics, ...), the document(s) that embed it for a child
table (a `tags` row -> its `runs` document), the run metric a logged-model metric is merged into,
or its `mlflow_sql.<table>` copy (tables form) for a table the layout has no place for. Tables that
are kept only in part (inputs, datasets, input_tags, entity_associations) are also copied in tables
form; that copy is recorded under "also". Documents are passed through BSON (encode + decode), so
they are what MongoDB would store.

tests/test_golden_layouts.py rebuilds the same way and compares with tests/golden/<table>.json.
To regenerate after an intended change (then review the diff by eye!):

    python -m tests.golden.make_golden
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import bson
from bson.codec_options import CodecOptions
from bson.json_util import CANONICAL_JSON_OPTIONS, dumps

GOLDEN_DIR = Path(__file__).resolve().parent
REVISION = "dc11669786a5"  # MLflow 3.17.x
LAYOUTS = ("tables", "mlflow-mongodb")

T0 = 1_700_000_000_000                  # ms
NS = T0 * 1_000_000                     # ns
RUN_A = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
RUN_B = "09f8e7d6c5b4a3928170f6e5d4c3b2a1"   # sorts first: runs.json shows the tagless run
RUN_C = "2c3d4e5f60718293a4b5c6d7e8f90a1b"
TR_1 = "tr-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TR_2 = "tr-1e2d3c4b5a69788796a5b4c3d2e1f00f"
M_1 = "m-5d6e7f8091a2b3c4d5e6f708192a3b4c"
M_2 = "m-6e7f8091a2b3c4d5e6f708192a3b4c5d"
DS_1 = "1d1d1d1d1d1d4d1d8d1d1d1d1d1d1d1d"
DS_2 = "0d2d2d2d2d2d4d2d8d2d2d2d2d2d2d2d"
IN_1 = "0e1e1e1e1e1e4e1e8e1e1e1e1e1e1e1e"
IN_2 = "1e2e2e2e2e2e4e2e8e2e2e2e2e2e2e2e"
IN_3 = "2e3e3e3e3e3e4e3e8e3e3e3e3e3e3e3e"
IN_4 = "3e4e4e4e4e4e4e4e8e4e4e4e4e4e4e4e"
IN_5 = "4e5e5e5e5e5e4e5e8e5e5e5e5e5e5e5e"
SPAN_ROOT = "0b7c1e2d3f4a5b6c"
SPAN_CHILD = "8a9b0c1d2e3f4a5b"
MAX_DOUBLE = 1.7976931348623157e308


def _span_content(trace_id, b64_trace, span_id, b64_span, parent, b64_parent, name, start, end,
                  code, attributes) -> str:
    return json.dumps({
        "trace_id": b64_trace, "span_id": b64_span, "parent_span_id": b64_parent, "name": name,
        "start_time_unix_nano": start, "end_time_unix_nano": end, "events": [],
        "status": {"code": code, "message": ""},
        "attributes": {"mlflow.traceRequestId": json.dumps(trace_id), **attributes}, "links": [],
    }, ensure_ascii=False)


ROOT_CONTENT = _span_content(
    TR_1, "Dx4tPEtaaXiHlqW0w9Lh8A==", SPAN_ROOT, "C3weLT9KW2w=", None, None, "pipeline",
    NS + 40_000_000_000, NS + 40_240_000_000, "STATUS_CODE_OK", {
        "mlflow.spanType": json.dumps("LLM"),
        "mlflow.spanFunctionName": json.dumps("pipeline"),
        "mlflow.spanInputs": json.dumps({"question": "what is mlflow? 日本"}, ensure_ascii=False),
        "mlflow.spanOutputs": json.dumps({"answer": "MLflow ✓"}, ensure_ascii=False),
        "mlflow.chat.tokenUsage": json.dumps({"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}),
        "mlflow.llm.cost": json.dumps({"input_cost": 0.25, "output_cost": 0.5, "total_cost": 0.75}),
        "mlflow.llm.model": json.dumps("gpt-4o-mini"),
        "mlflow.llm.provider": json.dumps("openai"),
        "mlflow.traceTag.env": json.dumps("prod 🌍", ensure_ascii=False),
        "mlflow.traceTag.mlflow.artifactLocation": json.dumps("s3://not/a/root/tag"),
        "session.id": json.dumps("session-42"),
        "user.id": json.dumps("alice"),
        "version": "2",
    })
CHILD_CONTENT = _span_content(
    TR_1, "Dx4tPEtaaXiHlqW0w9Lh8A==", SPAN_CHILD, "ipsMHS4/Sls=", SPAN_ROOT, "C3weLT9KW2w=",
    "retrieve", NS + 40_010_000_000, NS + 40_020_000_000, "STATUS_CODE_ERROR", {
        "mlflow.spanType": json.dumps("RETRIEVER"),
        "mlflow.spanInputs": json.dumps({"q": "what is mlflow? 日本"}, ensure_ascii=False),
        "mlflow.spanOutputs": json.dumps(["doc1", "doc2"]),
    })

# --------------------------------------------------------------------------- the source rows
# Insertion order matters only where SQL keeps no order (child rows fetched without ORDER BY):
# tags and params are inserted out of key order on purpose, so that an unsorted embedding shows.
ROWS: dict[str, list[dict]] = {
    "workspaces": [
        {"name": "default", "description": "Default workspace for legacy resources",
         "default_artifact_root": None, "trace_archival_location": None, "trace_archival_retention": None},
    ],
    "experiments": [
        {"experiment_id": 0, "name": "Default", "artifact_location": "mlflow-artifacts:/0",
         "lifecycle_stage": "active", "creation_time": T0, "last_update_time": T0, "workspace": "default"},
        {"experiment_id": 1, "name": "golden 実験 🚀", "artifact_location": "s3://bucket/golden/1",
         "lifecycle_stage": "active", "creation_time": T0 + 1000, "last_update_time": T0 + 5000,
         "workspace": "default"},
        {"experiment_id": 2, "name": "golden-deleted", "artifact_location": "s3://bucket/golden/2",
         "lifecycle_stage": "deleted", "creation_time": T0 + 2000, "last_update_time": T0 + 9000,
         "workspace": "default"},
    ],
    "experiment_tags": [
        {"key": "zeta", "value": "last", "experiment_id": 1},
        {"key": "alpha", "value": "first 🙂", "experiment_id": 1},
        {"key": "mlflow.note.content", "value": "ノート 📝", "experiment_id": 1},
        {"key": "empty", "value": "", "experiment_id": 1},
        {"key": "null_tag", "value": None, "experiment_id": 1},
        {"key": "x", "value": "1", "experiment_id": 2},
    ],
    "runs": [
        {"run_uuid": RUN_A, "name": "golden-run 🏃", "source_type": "LOCAL", "source_name": "train.py",
         "entry_point_name": "", "user_id": "alice", "status": "FINISHED", "start_time": T0 + 10_000,
         "end_time": T0 + 20_000, "source_version": "abc123", "lifecycle_stage": "active",
         "artifact_uri": f"s3://bucket/golden/1/{RUN_A}/artifacts", "experiment_id": 1, "deleted_time": None},
        {"run_uuid": RUN_B, "name": "tagless-run", "source_type": "NOTEBOOK", "source_name": "",
         "entry_point_name": "", "user_id": "bob", "status": "RUNNING", "start_time": T0 + 16_000,
         "end_time": None, "source_version": "", "lifecycle_stage": "active",
         "artifact_uri": f"s3://bucket/golden/1/{RUN_B}/artifacts", "experiment_id": 1, "deleted_time": None},
        {"run_uuid": RUN_C, "name": "deleted-run", "source_type": "UNKNOWN", "source_name": "",
         "entry_point_name": "", "user_id": "carol", "status": "KILLED", "start_time": T0 + 21_000,
         "end_time": T0 + 22_000, "source_version": "", "lifecycle_stage": "deleted",
         "artifact_uri": f"s3://bucket/golden/2/{RUN_C}/artifacts", "experiment_id": 2,
         "deleted_time": T0 + 30_000},
    ],
    "tags": [
        {"key": "zz.last", "value": "z", "run_uuid": RUN_A},
        {"key": "mlflow.user", "value": "alice", "run_uuid": RUN_A},
        {"key": "mlflow.runName", "value": "golden-run 🏃", "run_uuid": RUN_A},
        {"key": "aa.first", "value": "a 🙂", "run_uuid": RUN_A},
        {"key": "null_tag", "value": None, "run_uuid": RUN_A},
        {"key": "owner", "value": "bob", "run_uuid": RUN_B},   # RUN_B has no mlflow.runName tag
        {"key": "mlflow.runName", "value": "deleted-run", "run_uuid": RUN_C},
    ],
    "params": [
        {"key": "lr", "value": "0.01", "run_uuid": RUN_A},
        {"key": "unicode 鍵", "value": "値 ✓", "run_uuid": RUN_A},
        {"key": "batch", "value": "32", "run_uuid": RUN_A},
        {"key": "empty", "value": "", "run_uuid": RUN_A},
        {"key": "depth", "value": "1", "run_uuid": RUN_B},
    ],
    "metrics": [
        {"key": "loss", "value": 0.5, "timestamp": T0 + 11_000, "run_uuid": RUN_A, "step": 0, "is_nan": False},
        {"key": "loss", "value": 0.25, "timestamp": T0 + 12_000, "run_uuid": RUN_A, "step": 1, "is_nan": False},
        {"key": "loss", "value": 0.0, "timestamp": T0 + 13_000, "run_uuid": RUN_A, "step": 2, "is_nan": True},
        {"key": "acc", "value": 5e-324, "timestamp": T0 + 11_000, "run_uuid": RUN_A, "step": 0, "is_nan": False},
        {"key": "acc", "value": MAX_DOUBLE, "timestamp": T0 + 12_000, "run_uuid": RUN_A, "step": 1, "is_nan": False},
        {"key": "model_score", "value": 0.0, "timestamp": T0 + 15_000, "run_uuid": RUN_A, "step": 1, "is_nan": True},
        {"key": "model_score", "value": 0.93, "timestamp": T0 + 15_001, "run_uuid": RUN_A, "step": 2, "is_nan": False},
        {"key": "acc", "value": -1.5, "timestamp": T0 + 16_000, "run_uuid": RUN_B, "step": -1, "is_nan": False},
    ],
    "latest_metrics": [
        {"key": "loss", "value": 0.0, "timestamp": T0 + 13_000, "step": 2, "is_nan": True, "run_uuid": RUN_A},
        {"key": "acc", "value": MAX_DOUBLE, "timestamp": T0 + 12_000, "step": 1, "is_nan": False, "run_uuid": RUN_A},
        {"key": "model_score", "value": 0.93, "timestamp": T0 + 15_001, "step": 2, "is_nan": False, "run_uuid": RUN_A},
        {"key": "acc", "value": -1.5, "timestamp": T0 + 16_000, "step": -1, "is_nan": False, "run_uuid": RUN_B},
    ],
    "datasets": [
        {"dataset_uuid": DS_1, "experiment_id": 1, "name": "train-set", "digest": "3791fc24",
         "dataset_source_type": "s3", "dataset_source": '{"uri": "s3://data/train.csv"}',
         "dataset_schema": '{"mlflow_colspec": [{"type": "long", "name": "x", "required": true}, '
                           '{"type": "string", "name": "y", "required": true}]}',
         "dataset_profile": '{"num_rows": 3, "num_elements": 6}'},
        {"dataset_uuid": DS_2, "experiment_id": 1, "name": "eval-set 評価", "digest": "a1b2c3d4",
         "dataset_source_type": "local", "dataset_source": '{"uri": "file:///tmp/eval.csv"}',
         "dataset_schema": None, "dataset_profile": None},
    ],
    "inputs": [
        {"input_uuid": IN_1, "source_type": "DATASET", "source_id": DS_1, "destination_type": "RUN",
         "destination_id": RUN_A, "step": 0},
        {"input_uuid": IN_2, "source_type": "DATASET", "source_id": DS_2, "destination_type": "RUN",
         "destination_id": RUN_A, "step": 0},
        {"input_uuid": IN_3, "source_type": "DATASET", "source_id": DS_1, "destination_type": "RUN",
         "destination_id": RUN_B, "step": 0},
        {"input_uuid": IN_4, "source_type": "RUN_INPUT", "source_id": RUN_A, "destination_type": "MODEL_INPUT",
         "destination_id": M_1, "step": 0},
        {"input_uuid": IN_5, "source_type": "RUN_OUTPUT", "source_id": RUN_A, "destination_type": "MODEL_OUTPUT",
         "destination_id": M_1, "step": 2},
    ],
    "input_tags": [
        {"input_uuid": IN_1, "name": "split", "value": "train 🚂"},
        {"input_uuid": IN_1, "name": "mlflow.data.context", "value": "training"},
        {"input_uuid": IN_3, "name": "mlflow.data.context", "value": "training"},
    ],
    "logged_models": [
        {"model_id": M_1, "experiment_id": 1, "name": "golden-model", "artifact_location":
         f"s3://bucket/golden/1/models/{M_1}/artifacts", "creation_timestamp_ms": T0 + 14_000,
         "last_updated_timestamp_ms": T0 + 18_000, "status": 2, "lifecycle_stage": "active",
         "model_type": "classifier", "source_run_id": RUN_A, "status_message": None},
        {"model_id": M_2, "experiment_id": 1, "name": "pending-model", "artifact_location":
         f"s3://bucket/golden/1/models/{M_2}/artifacts", "creation_timestamp_ms": T0 + 17_000,
         "last_updated_timestamp_ms": T0 + 17_000, "status": 1, "lifecycle_stage": "active",
         "model_type": None, "source_run_id": None, "status_message": None},
    ],
    "logged_model_params": [
        {"model_id": M_1, "experiment_id": 1, "param_key": "beta", "param_value": "1"},
        {"model_id": M_1, "experiment_id": 1, "param_key": "alpha", "param_value": "0.5"},
    ],
    "logged_model_tags": [
        {"model_id": M_1, "experiment_id": 1, "tag_key": "stage", "tag_value": "candidate"},
        {"model_id": M_1, "experiment_id": 1, "tag_key": "framework", "tag_value": "sk 🤖"},
    ],
    "logged_model_metrics": [
        # a NaN logged with a model: MLflow keeps 0 here, the NaN flag only in `metrics`; merged
        # onto the NaN run metric (the representative row: its file shows that merge)
        {"model_id": M_1, "metric_name": "model_score", "metric_timestamp_ms": T0 + 15_000, "metric_step": 1,
         "metric_value": 0.0, "experiment_id": 1, "run_id": RUN_A, "dataset_uuid": None,
         "dataset_name": None, "dataset_digest": None},
        # merged onto the run metric of the same (run, key, timestamp, step, value)
        {"model_id": M_1, "metric_name": "model_score", "metric_timestamp_ms": T0 + 15_001, "metric_step": 2,
         "metric_value": 0.93, "experiment_id": 1, "run_id": RUN_A, "dataset_uuid": DS_2,
         "dataset_name": "eval-set 評価", "dataset_digest": "a1b2c3d4"},
        # no matching run metric: a run_metrics document of its own
        {"model_id": M_2, "metric_name": "standalone", "metric_timestamp_ms": T0 + 17_000, "metric_step": 0,
         "metric_value": 1.25, "experiment_id": 1, "run_id": RUN_B, "dataset_uuid": None,
         "dataset_name": None, "dataset_digest": None},
    ],
    "trace_info": [
        {"request_id": TR_1, "experiment_id": 1, "timestamp_ms": T0 + 40_000, "execution_time_ms": 240,
         "status": "OK", "client_request_id": "client-1",
         "request_preview": '{"question": "what is mlflow? 日本"}', "response_preview": '{"answer": "MLflow ✓"}',
         "db_payload_generation": 4, "trace_name": "pipeline", "session_id": "session-42",
         "input_tokens": 12, "output_tokens": 5, "total_tokens": 17, "cache_read_input_tokens": 0,
         "cache_creation_input_tokens": None, "cache_creation_input_tokens_above_1hr": None,
         "input_cost": 0.25, "output_cost": 0.5, "total_cost": 0.75},
        {"request_id": TR_2, "experiment_id": 1, "timestamp_ms": T0 + 50_000, "execution_time_ms": 10,
         "status": "ERROR", "client_request_id": None, "request_preview": None, "response_preview": None,
         "db_payload_generation": 0, "trace_name": None, "session_id": None, "input_tokens": None,
         "output_tokens": None, "total_tokens": None, "cache_read_input_tokens": None,
         "cache_creation_input_tokens": None, "cache_creation_input_tokens_above_1hr": None,
         "input_cost": None, "output_cost": None, "total_cost": None},
    ],
    "trace_tags": [
        {"key": "mlflow.traceName", "value": "pipeline", "request_id": TR_1},
        {"key": "mlflow.trace.spansLocation", "value": "TRACKING_STORE", "request_id": TR_1},
        {"key": "reviewed", "value": "yes ✓", "request_id": TR_1},
        {"key": "mlflow.artifactLocation", "value": f"s3://bucket/golden/1/traces/{TR_1}/artifacts",
         "request_id": TR_1},
        {"key": "mlflow.linkedPrompts", "value": '[{"name": "legacy-prompt", "version": "3"}]',
         "request_id": TR_1},
        {"key": "mlflow.trace.spansLocation", "value": "TRACKING_STORE", "request_id": TR_2},
    ],
    "trace_request_metadata": [
        {"key": "mlflow.trace_schema.version", "value": "3", "request_id": TR_1},
        {"key": "mlflow.sourceRun", "value": RUN_A, "request_id": TR_1},
        {"key": "mlflow.trace.sizeStats", "value": '{"total_size_bytes": 2048, "num_spans": 2, "max": 1500, '
                                                   '"p25": 500, "p50": 1000, "p75": 1500}', "request_id": TR_1},
        {"key": "mlflow.trace.tokenUsage", "value": '{"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}',
         "request_id": TR_1},
        {"key": "mlflow.trace.user", "value": "alice", "request_id": TR_1},
        {"key": "mlflow.trace_schema.version", "value": "3", "request_id": TR_2},
    ],
    "spans": [
        {"trace_id": TR_1, "experiment_id": 1, "span_id": SPAN_ROOT, "parent_span_id": None, "name": "pipeline",
         "type": "LLM", "status": "OK", "start_time_unix_nano": NS + 40_000_000_000,
         "end_time_unix_nano": NS + 40_240_000_000, "content": ROOT_CONTENT, "input_cost": 0.25,
         "output_cost": 0.5, "total_cost": 0.75, "model_name": "gpt-4o-mini", "model_provider": "openai"},
        {"trace_id": TR_1, "experiment_id": 1, "span_id": SPAN_CHILD, "parent_span_id": SPAN_ROOT,
         "name": "retrieve", "type": "RETRIEVER", "status": "ERROR", "start_time_unix_nano": NS + 40_010_000_000,
         "end_time_unix_nano": NS + 40_020_000_000, "content": CHILD_CONTENT, "input_cost": None,
         "output_cost": None, "total_cost": None, "model_name": None, "model_provider": None},
    ],
    "assessments": [
        {"assessment_id": "a-00f1e2d3c4b5a6978877665544332211", "trace_id": TR_1, "name": "correctness",
         "assessment_type": "feedback", "value": "true",
         "error": '{"error_code": "TIMEOUT", "error_message": "judge timed out ⏱"}',
         "created_timestamp": T0 + 60_000, "last_updated_timestamp": T0 + 61_500, "source_type": "LLM_JUDGE",
         "source_id": "gpt-judge", "run_id": RUN_A, "span_id": SPAN_ROOT, "rationale": "matches 日本",
         "overrides": None, "valid": True, "assessment_metadata": '{"k": "v", "n": 1}', "experiment_id": 1,
         "trace_timestamp_ms": T0 + 40_000, "aggregate_value": 1.0, "is_numeric_value": False},
        {"assessment_id": "a-11f1e2d3c4b5a6978877665544332211", "trace_id": TR_1, "name": "expected",
         "assessment_type": "expectation", "value": '{"answer": "X 🎯"}', "error": None,
         "created_timestamp": T0 + 62_000, "last_updated_timestamp": T0 + 62_000, "source_type": "HUMAN",
         "source_id": "alice", "run_id": None, "span_id": None, "rationale": None,
         "overrides": None, "valid": True, "assessment_metadata": None, "experiment_id": 1,
         "trace_timestamp_ms": T0 + 40_000, "aggregate_value": None, "is_numeric_value": False},
    ],
    "entity_associations": [
        {"association_id": "e1e1e1e1-0000-4000-8000-000000000001", "source_type": "trace", "source_id": TR_1,
         "destination_type": "run", "destination_id": RUN_B, "created_time": T0 + 41_000},
        {"association_id": "e2e2e2e2-0000-4000-8000-000000000002", "source_type": "trace", "source_id": TR_1,
         "destination_type": "prompt_version", "destination_id": "greeting-prompt/1", "created_time": T0 + 42_000},
        {"association_id": "e3e3e3e3-0000-4000-8000-000000000003", "source_type": "trace", "source_id": TR_2,
         "destination_type": "evaluation_dataset", "destination_id": "d-0123456789abcdef", "created_time": None},
    ],
    "registered_models": [
        {"name": "churn-model 模型", "creation_time": T0 + 70_000, "last_updated_time": T0 + 79_000,
         "description": "first model", "workspace": "default"},
        {"name": "empty-model", "creation_time": T0 + 71_000, "last_updated_time": T0 + 71_000,
         "description": "", "workspace": "default"},
    ],
    "registered_model_tags": [
        {"key": "uni", "value": "模型", "name": "churn-model 模型", "workspace": "default"},
        {"key": "owner", "value": "ml", "name": "churn-model 模型", "workspace": "default"},
        {"key": "none", "value": None, "name": "churn-model 模型", "workspace": "default"},
    ],
    "model_versions": [
        {"name": "churn-model 模型", "version": 1, "creation_time": T0 + 72_000, "last_updated_time": T0 + 75_000,
         "description": "v1", "user_id": "alice", "current_stage": "Production", "source": f"runs:/{RUN_A}/model",
         "run_id": RUN_A, "status": "READY", "status_message": None, "run_link": "",
         "storage_location": f"s3://bucket/golden/1/{RUN_A}/artifacts/model", "workspace": "default"},
        {"name": "churn-model 模型", "version": 2, "creation_time": T0 + 73_000, "last_updated_time": T0 + 73_000,
         "description": None, "user_id": None, "current_stage": "None", "source": "s3://models/m2",
         "run_id": None, "status": "READY", "status_message": "", "run_link": None,
         "storage_location": "s3://models/m2", "workspace": "default"},
        {"name": "churn-model 模型", "version": 3, "creation_time": T0 + 74_000, "last_updated_time": T0 + 78_000,
         "description": "REDACTED", "user_id": "REDACTED", "current_stage": "Deleted_Internal",
         "source": "REDACTED", "run_id": "REDACTED", "status": "READY", "status_message": None,
         "run_link": "REDACTED", "storage_location": "REDACTED", "workspace": "default"},
    ],
    "model_version_tags": [
        {"key": "quality", "value": "good", "name": "churn-model 模型", "version": 1, "workspace": "default"},
        {"key": "validated", "value": "true", "name": "churn-model 模型", "version": 2, "workspace": "default"},
        {"key": "quality", "value": "better", "name": "churn-model 模型", "version": 2, "workspace": "default"},
    ],
    "registered_model_aliases": [
        {"alias": "challenger", "version": 1, "name": "churn-model 模型", "workspace": "default"},
        {"alias": "champion", "version": 2, "name": "churn-model 模型", "workspace": "default"},
    ],
}
# Rows of the tables MLflow's client does not fill in a plain session (gateway, jobs, scorers,
# review queues, MCP, rollups, ...): made once by tests/support/fill_all_tables.py on top of ROWS,
# then frozen here.
OTHER_ROWS: dict[str, list[dict]] = {
    'scheduler_leases': [
        {'lease_key': '42d59be9-0a8f-6412-d049-0363c05606d3', 'acquired_at': 1700000001000, 'ttl_seconds': 61},
        {'lease_key': '503bb541-9d93-0108-9322-71c3640891ea', 'acquired_at': 1700000000000, 'ttl_seconds': 60},
    ],
    'budget_policies': [
        {'budget_policy_id': '4951e223-3234-b6d6-7a49-b599d7775837',
         'budget_unit': 'USD',
         'budget_amount': 12.5,
         'duration_unit': 'MONTHS',
         'duration_value': 2,
         'target_scope': 'WORKSPACE',
         'budget_action': 'REJECT',
         'created_by': None,
         'created_at': 1700000001000,
         'last_updated_by': None,
         'last_updated_at': 1700000001500,
         'workspace': 'default',
         'target_value': None},
        {'budget_policy_id': 'aa2b1f36-b168-e61f-1043-aa303c23304c',
         'budget_unit': 'USD',
         'budget_amount': 0.75,
         'duration_unit': 'DAYS',
         'duration_value': 1,
         'target_scope': 'GLOBAL',
         'budget_action': 'ALERT',
         'created_by': 'user0@example.com',
         'created_at': 1700000000000,
         'last_updated_by': 'user0@example.com',
         'last_updated_at': 1700000000500,
         'workspace': 'default',
         'target_value': 'target_value 0 値 🙂'},
    ],
    'evaluation_datasets': [
        {'dataset_id': '58a45a07-e9af-5f95-6ee9-7613411a5972',
         'name': 'name 0 値 🙂',
         'schema': '{"inputs": {"question": "string"}}',
         'profile': '{"num_records": 2}',
         'digest': 'digest 0 値 🙂',
         'created_time': 1700000000000,
         'last_update_time': 1700000000500,
         'created_by': 'user0@example.com',
         'last_updated_by': 'user0@example.com',
         'workspace': 'default'},
        {'dataset_id': '83e33f21-085b-851e-d872-7046114c0063',
         'name': 'name 1 値 🙂',
         'schema': None,
         'profile': None,
         'digest': None,
         'created_time': None,
         'last_update_time': None,
         'created_by': None,
         'last_updated_by': None,
         'workspace': 'default'},
    ],
    'jobs': [
        {'id': '2ebca33c-d647-7f3f-b402-085ec15efb9f',
         'creation_time': 1700000001000,
         'job_name': 'job_name 1 値 🙂',
         'params': '{"experiment_id": "1", "limit": 11}',
         'timeout': None,
         'status': 0,
         'result': None,
         'retry_count': 1,
         'last_update_time': 1700000001500,
         'workspace': 'default',
         'status_details': None,
         'creator': None,
         'executor_backend': None,
         'lease_expires_at': None,
         'status_message': None,
         'progress': None,
         'progress_updated_at': None,
         'token_hash': None,
         'scoped_permissions': None,
         'next_attempt_at': None},
        {'id': '8e60920b-6360-84a1-0486-d3dde91eb4ce',
         'creation_time': 1700000000000,
         'job_name': 'job_name 0 値 🙂',
         'params': '{"experiment_id": "1", "limit": 10}',
         'timeout': 0.5,
         'status': 2,
         'result': '{"ok": true, "message": "done 値 🙂"}',
         'retry_count': 0,
         'last_update_time': 1700000000500,
         'workspace': 'default',
         'status_details': {'table': 'jobs',
                            'column': 'status_details',
                            'i': 0,
                            'text': '値 🙂',
                            'x': 1.5,
                            'list': [1, 2]},
         'creator': 'user0@example.com',
         'executor_backend': 'executor_backend 0 値 🙂',
         'lease_expires_at': 1700000000500,
         'status_message': 'status_message 0 値 🙂',
         'progress': {'table': 'jobs', 'column': 'progress', 'i': 0, 'text': '値 🙂', 'x': 1.5, 'list': [1, 2]},
         'progress_updated_at': 1700000000500,
         'token_hash': 'token_hash 0 値 🙂',
         'scoped_permissions': {'table': 'jobs',
                                'column': 'scoped_permissions',
                                'i': 0,
                                'text': '値 🙂',
                                'x': 1.5,
                                'list': [1, 2]},
         'next_attempt_at': 1700000000000},
    ],
    'mcp_servers': [
        {'workspace': 'default',
         'name': 'name 0 値 🙂',
         'display_name': 'display_name 0 値 🙂',
         'description': 'description 0 値 🙂',
         'icons': {'table': 'mcp_servers', 'column': 'icons', 'i': 0, 'text': '値 🙂', 'x': 1.5, 'list': [1, 2]},
         'created_by': 'user0@example.com',
         'last_updated_by': 'user0@example.com',
         'created_at': 1700000000000,
         'last_updated_at': 1700000000500},
        {'workspace': 'default',
         'name': 'name 1 値 🙂',
         'display_name': None,
         'description': None,
         'icons': None,
         'created_by': None,
         'last_updated_by': None,
         'created_at': 1700000001000,
         'last_updated_at': 1700000001500},
    ],
    'secrets': [
        {'secret_id': '087ecebe-20d3-e222-e2ef-f0bf65a8ff0e',
         'secret_name': 'secret_name 1 値 🙂',
         'encrypted_value': b'\x01\x00\xff\x80secret 1 \xf0\x9f\x94\x91',
         'wrapped_dek': b'\x01\x00\xff\x80secret 1 \xf0\x9f\x94\x91',
         'kek_version': 2,
         'masked_value': '{"api_key": "sk-...0001"}',
         'provider': None,
         'auth_config': None,
         'description': None,
         'created_by': None,
         'created_at': 1700000001000,
         'last_updated_by': None,
         'last_updated_at': 1700000001500,
         'workspace': 'default'},
        {'secret_id': 'ca800db9-37ac-d8e3-2a1d-3443c18249e9',
         'secret_name': 'secret_name 0 値 🙂',
         'encrypted_value': b'\x00\x00\xff\x80secret 0 \xf0\x9f\x94\x91',
         'wrapped_dek': b'\x00\x00\xff\x80secret 0 \xf0\x9f\x94\x91',
         'kek_version': 1,
         'masked_value': '{"api_key": "sk-...0000"}',
         'provider': 'openai',
         'auth_config': '{"auth_type": "api_key"}',
         'description': 'description 0 値 🙂',
         'created_by': 'user0@example.com',
         'created_at': 1700000000000,
         'last_updated_by': 'user0@example.com',
         'last_updated_at': 1700000000500,
         'workspace': 'default'},
    ],
    'webhooks': [
        {'webhook_id': '0f6bbf46-8cd9-e9c7-3218-ad49e8efe5bf',
         'name': 'name 0 値 🙂',
         'description': 'description 0 値 🙂',
         'url': 's3://bucket/webhooks/0/場所-🙂',
         'status': 'ACTIVE',
         'secret': 'secret 0 値 🙂',
         'creation_timestamp': 1700000000000,
         'last_updated_timestamp': 1700000000500,
         'deleted_timestamp': 1700000000000,
         'workspace': 'default'},
        {'webhook_id': 'ace46b14-959d-dc28-ad07-6c3afb654d63',
         'name': 'name 1 値 🙂',
         'description': None,
         'url': 's3://bucket/webhooks/1/場所-🙂',
         'status': 'DISABLED',
         'secret': None,
         'creation_timestamp': None,
         'last_updated_timestamp': None,
         'deleted_timestamp': None,
         'workspace': 'default'},
    ],
    'endpoints': [
        {'endpoint_id': '51024c33-578c-27f5-8933-c087e9e6c30d',
         'name': 'name 0 値 🙂',
         'created_by': 'user0@example.com',
         'created_at': 1700000000000,
         'last_updated_by': 'user0@example.com',
         'last_updated_at': 1700000000500,
         'routing_strategy': 'REQUEST_BASED_TRAFFIC_SPLIT',
         'fallback_config_json': '{"strategy": "SEQUENTIAL", "max_attempts": 2}',
         'experiment_id': 0,
         'usage_tracking': True,
         'workspace': 'default'},
        {'endpoint_id': '9999271c-af34-17be-d5ab-d94cb5c9165f',
         'name': 'name 1 値 🙂',
         'created_by': None,
         'created_at': 1700000001000,
         'last_updated_by': None,
         'last_updated_at': 1700000001500,
         'routing_strategy': None,
         'fallback_config_json': None,
         'experiment_id': 1,
         'usage_tracking': False,
         'workspace': 'default'},
    ],
    'evaluation_dataset_records': [
        {'dataset_record_id': '190d9cd0-b41c-8694-a050-e5124e2593b8',
         'dataset_id': '83e33f21-085b-851e-d872-7046114c0063',
         'inputs': {'question': 'what is 1? 値 🙂'},
         'expectations': None,
         'tags': None,
         'source': None,
         'source_id': None,
         'source_type': None,
         'created_time': None,
         'last_update_time': None,
         'created_by': None,
         'last_updated_by': None,
         'input_hash': '24b864ce98dbcef051911b7ca1374fcdf6c16f402c231c8b95cd0d22e926b663',
         'outputs': None},
        {'dataset_record_id': '9b8f0928-827b-7d4c-f35d-52b8f8bb359c',
         'dataset_id': '58a45a07-e9af-5f95-6ee9-7613411a5972',
         'inputs': {'question': 'what is 0? 値 🙂'},
         'expectations': {'expected_response': 'answer 0 ✅'},
         'tags': {'table': 'evaluation_dataset_records',
                  'column': 'tags',
                  'i': 0,
                  'text': '値 🙂',
                  'x': 1.5,
                  'list': [1, 2]},
         'source': {'table': 'evaluation_dataset_records',
                    'column': 'source',
                    'i': 0,
                    'text': '値 🙂',
                    'x': 1.5,
                    'list': [1, 2]},
         'source_id': '2d7533c5-1c64-3c44-71bb-bb05716e1bd4',
         'source_type': 'HUMAN',
         'created_time': 1700000000000,
         'last_update_time': 1700000000500,
         'created_by': 'user0@example.com',
         'last_updated_by': 'user0@example.com',
         'input_hash': '1b06998a00714cfac5bd1ddbfc966a652c98ed46cd8b69b5f698150dc9959c63',
         'outputs': {'table': 'evaluation_dataset_records',
                     'column': 'outputs',
                     'i': 0,
                     'text': '値 🙂',
                     'x': 1.5,
                     'list': [1, 2]}},
    ],
    'evaluation_dataset_tags': [
        {'dataset_id': '58a45a07-e9af-5f95-6ee9-7613411a5972', 'key': 'key 0 値 🙂', 'value': 'value 0 値 🙂'},
        {'dataset_id': '83e33f21-085b-851e-d872-7046114c0063', 'key': 'key 1 値 🙂', 'value': None},
    ],
    'job_locks': [
        {'lock_key': '1503fc20-211e-8c0e-2f0f-71ea5605a8db',
         'job_id': '8e60920b-6360-84a1-0486-d3dde91eb4ce',
         'acquired_at': 1700000001000},
        {'lock_key': '3f7408b4-a6f6-cf68-ffc9-4b8a830657bb',
         'job_id': '2ebca33c-d647-7f3f-b402-085ec15efb9f',
         'acquired_at': 1700000000000},
    ],
    'label_schemas': [
        {'schema_id': '017b8f76-dbd8-8308-42e2-50aa68f80680',
         'experiment_id': 0,
         'name': 'name 0 値 🙂',
         'type': 'feedback',
         'instruction': 'instruction 0 値 🙂',
         'enable_comment': True,
         'input_type': 'categorical',
         'input_config': '{"options": ["良い", "bad 👎"], "multi_select": false}',
         'created_by': 'user0@example.com',
         'created_time': 1700000000000,
         'last_update_time': 1700000000500,
         'is_default': True},
        {'schema_id': 'b4d3c37b-6f05-6499-8de0-3ac21c9e73bc',
         'experiment_id': 1,
         'name': 'name 1 値 🙂',
         'type': 'expectation',
         'instruction': None,
         'enable_comment': False,
         'input_type': 'numeric',
         'input_config': '{"min_value": 0.0, "max_value": 5.0}',
         'created_by': None,
         'created_time': 1700000001000,
         'last_update_time': 1700000001500,
         'is_default': False},
    ],
    'mcp_access_endpoints': [
        {'id': '07b6ed6c-8c40-9ca6-25fb-822ad49eae09',
         'workspace': 'default',
         'server_name': 'name 1 値 🙂',
         'server_version': None,
         'server_alias': None,
         'url': 's3://bucket/mcp_access_endpoints/1/場所-🙂',
         'transport_type': 'sse',
         'created_by': None,
         'last_updated_by': None,
         'created_at': 1700000001000,
         'last_updated_at': 1700000001500},
        {'id': '14df061a-cc48-fa6e-4537-09cc9241a62b',
         'workspace': 'default',
         'server_name': 'name 0 値 🙂',
         'server_version': 'server_version 0 値 🙂',
         'server_alias': 'server_alias 0 値 🙂',
         'url': 's3://bucket/mcp_access_endpoints/0/場所-🙂',
         'transport_type': 'streamable-http',
         'created_by': 'user0@example.com',
         'last_updated_by': 'user0@example.com',
         'created_at': 1700000000000,
         'last_updated_at': 1700000000500},
    ],
    'mcp_server_tags': [
        {'workspace': 'default', 'name': 'name 0 値 🙂', 'key': 'key 0 値 🙂', 'value': 'value 0 値 🙂'},
        {'workspace': 'default', 'name': 'name 1 値 🙂', 'key': 'key 1 値 🙂', 'value': None},
    ],
    'mcp_server_versions': [
        {'workspace': 'default',
         'name': 'name 0 値 🙂',
         'version': '1.0.0',
         'version_major': 1,
         'version_minor': 1,
         'version_patch': 1,
         'version_prerelease_sort_key': 'version_prerelease_sort_key 0 値 🙂',
         'server_json': {'table': 'mcp_server_versions',
                         'column': 'server_json',
                         'i': 0,
                         'text': '値 🙂',
                         'x': 1.5,
                         'list': [1, 2]},
         'status': 'active',
         'tools': [{'name': 'search_0', 'description': '検索 値 🙂'}],
         'source': 's3://bucket/mcp_server_versions/0/場所-🙂',
         'connect_options': {'table': 'mcp_server_versions',
                             'column': 'connect_options',
                             'i': 0,
                             'text': '値 🙂',
                             'x': 1.5,
                             'list': [1, 2]},
         'created_by': 'user0@example.com',
         'last_updated_by': 'user0@example.com',
         'created_at': 1700000000000,
         'last_updated_at': 1700000000500},
        {'workspace': 'default',
         'name': 'name 1 値 🙂',
         'version': '2.0.1',
         'version_major': 2,
         'version_minor': 2,
         'version_patch': 2,
         'version_prerelease_sort_key': 'version_prerelease_sort_key 1 値 🙂',
         'server_json': {'table': 'mcp_server_versions',
                         'column': 'server_json',
                         'i': 1,
                         'text': '値 🙂',
                         'x': 1.5,
                         'list': [1, 2]},
         'status': 'draft',
         'tools': None,
         'source': None,
         'connect_options': None,
         'created_by': None,
         'last_updated_by': None,
         'created_at': 1700000001000,
         'last_updated_at': 1700000001500},
    ],
    'model_definitions': [
        {'model_definition_id': '1d6a89ce-91b0-f4bb-3594-dac20387b8a1',
         'name': 'name 0 値 🙂',
         'secret_id': '087ecebe-20d3-e222-e2ef-f0bf65a8ff0e',
         'provider': 'openai',
         'model_name': 'model_name 0 値 🙂',
         'created_by': 'user0@example.com',
         'created_at': 1700000000000,
         'last_updated_by': 'user0@example.com',
         'last_updated_at': 1700000000500,
         'workspace': 'default'},
        {'model_definition_id': 'fd70ab98-c356-ab72-4bbc-08880bba9a9c',
         'name': 'name 1 値 🙂',
         'secret_id': 'ca800db9-37ac-d8e3-2a1d-3443c18249e9',
         'provider': 'anthropic',
         'model_name': 'model_name 1 値 🙂',
         'created_by': None,
         'created_at': 1700000001000,
         'last_updated_by': None,
         'last_updated_at': 1700000001500,
         'workspace': 'default'},
    ],
    'review_queues': [
        {'queue_id': '30cc81cb-1d99-33cb-1c78-d9f04fc1b5f3',
         'experiment_id': 0,
         'name': 'name 0 値 🙂',
         'queue_type': 'user',
         'created_by': 'user0@example.com',
         'creation_time_ms': 1700000000000,
         'last_update_time_ms': 1700000000500,
         'name_key': 'name_key 0 値 🙂'},
        {'queue_id': 'c708ec8b-17c5-71a8-c91a-42b013b009f4',
         'experiment_id': 1,
         'name': 'name 1 値 🙂',
         'queue_type': 'custom',
         'created_by': None,
         'creation_time_ms': 1700000001000,
         'last_update_time_ms': 1700000001500,
         'name_key': 'name_key 1 値 🙂'},
    ],
    'scorers': [
        {'experiment_id': 0,
         'scorer_name': 'scorer_name 0 値 🙂',
         'scorer_id': '904cb07f-610a-e93f-de19-146f15bf7a18'},
        {'experiment_id': 1,
         'scorer_name': 'scorer_name 1 値 🙂',
         'scorer_id': 'f79a679a-c0f1-d679-21f2-a9ed78135a50'},
    ],
    'sql_assessment_daily_rollups': [
        {'id': 1,
         'experiment_id': 0,
         'rollup_day': datetime.date(2024, 1, 1),
         'metric_name': 'assessment_value',
         'grouping_set': 'global',
         'sample_count': 10,
         'sum_value': 0.5,
         'min_value': 0.5,
         'max_value': 0.5},
        {'id': 2,
         'experiment_id': 1,
         'rollup_day': datetime.date(2024, 1, 2),
         'metric_name': 'assessment_count',
         'grouping_set': 'status',
         'sample_count': 11,
         'sum_value': None,
         'min_value': None,
         'max_value': None},
    ],
    'sql_span_cost_daily_rollups': [
        {'id': 1,
         'experiment_id': 0,
         'rollup_day': datetime.date(2024, 1, 1),
         'metric_name': 'total_cost',
         'grouping_set': 'global',
         'model_name': 'model_name 0 値 🙂',
         'model_provider': 'model_provider 0 値 🙂',
         'sample_count': 10,
         'sum_value': 0.5,
         'min_value': 0.5,
         'max_value': 0.5},
        {'id': 2,
         'experiment_id': 1,
         'rollup_day': datetime.date(2024, 1, 2),
         'metric_name': 'input_cost',
         'grouping_set': 'status',
         'model_name': None,
         'model_provider': None,
         'sample_count': 11,
         'sum_value': None,
         'min_value': None,
         'max_value': None},
    ],
    'sql_trace_metric_daily_rollups': [
        {'id': 1,
         'experiment_id': 0,
         'rollup_day': datetime.date(2024, 1, 1),
         'metric_name': 'latency',
         'grouping_set': 'global',
         'trace_status': 'OK',
         'sample_count': 10,
         'sum_value': 0.5,
         'min_value': 0.5,
         'max_value': 0.5,
         'p50_value': 0.5,
         'p90_value': 0.5,
         'p99_value': 0.5},
        {'id': 2,
         'experiment_id': 1,
         'rollup_day': datetime.date(2024, 1, 2),
         'metric_name': 'trace_count',
         'grouping_set': 'status',
         'trace_status': None,
         'sample_count': 11,
         'sum_value': None,
         'min_value': None,
         'max_value': None,
         'p50_value': None,
         'p90_value': None,
         'p99_value': None},
    ],
    'sql_trace_rollup_rebuild_queue': [
        {'experiment_id': 0, 'rollup_day': datetime.date(2024, 1, 1), 'rollup_family': 'trace_metric'},
        {'experiment_id': 1, 'rollup_day': datetime.date(2024, 1, 2), 'rollup_family': 'span_cost'},
    ],
    'webhook_events': [
        {'webhook_id': '0f6bbf46-8cd9-e9c7-3218-ad49e8efe5bf',
         'entity': 'registered_model',
         'action': 'created'},
        {'webhook_id': 'ace46b14-959d-dc28-ad07-6c3afb654d63', 'entity': 'model_version_tag', 'action': 'set'},
    ],
    'endpoint_bindings': [
        {'endpoint_id': '51024c33-578c-27f5-8933-c087e9e6c30d',
         'resource_type': 'scorer',
         'resource_id': '904cb07f-610a-e93f-de19-146f15bf7a18',
         'created_at': 1700000000000,
         'created_by': 'user0@example.com',
         'last_updated_at': 1700000000500,
         'last_updated_by': 'user0@example.com',
         'display_name': 'display_name 0 値 🙂'},
        {'endpoint_id': '9999271c-af34-17be-d5ab-d94cb5c9165f',
         'resource_type': 'scorer',
         'resource_id': '904cb07f-610a-e93f-de19-146f15bf7a18',
         'created_at': 1700000001000,
         'created_by': None,
         'last_updated_at': 1700000001500,
         'last_updated_by': None,
         'display_name': None},
    ],
    'endpoint_model_mappings': [
        {'mapping_id': 'ba799f57-fc90-694f-7208-c813a6ecd7b1',
         'endpoint_id': '51024c33-578c-27f5-8933-c087e9e6c30d',
         'model_definition_id': '1d6a89ce-91b0-f4bb-3594-dac20387b8a1',
         'weight': 0.25,
         'created_by': 'user0@example.com',
         'created_at': 1700000000000,
         'linkage_type': 'PRIMARY',
         'fallback_order': 0},
        {'mapping_id': 'f3496150-9f78-2cba-e5b5-b81bf202a683',
         'endpoint_id': '9999271c-af34-17be-d5ab-d94cb5c9165f',
         'model_definition_id': '1d6a89ce-91b0-f4bb-3594-dac20387b8a1',
         'weight': 1.0,
         'created_by': None,
         'created_at': 1700000001000,
         'linkage_type': 'FALLBACK',
         'fallback_order': None},
    ],
    'endpoint_tags': [
        {'key': 'key 0 値 🙂', 'value': 'value 0 値 🙂', 'endpoint_id': '51024c33-578c-27f5-8933-c087e9e6c30d'},
        {'key': 'key 1 値 🙂', 'value': None, 'endpoint_id': '9999271c-af34-17be-d5ab-d94cb5c9165f'},
    ],
    'issues': [
        {'issue_id': 'de6d020c-9788-3a8b-a82d-4c52148ceadf',
         'experiment_id': 1,
         'name': 'name 1 値 🙂',
         'description': 'description 1 値 🙂',
         'status': 'resolved',
         'severity': None,
         'root_causes': None,
         'source_run_id': RUN_B,
         'categories': None,
         'created_timestamp': 1700000001000,
         'last_updated_timestamp': 1700000001500,
         'created_by': None},
        {'issue_id': 'ff730f9e-33ca-f50f-0f05-8a282408f0fe',
         'experiment_id': 1,
         'name': 'name 0 値 🙂',
         'description': 'description 0 値 🙂',
         'status': 'pending',
         'severity': 'high',
         'root_causes': '["cause 0 原因"]',
         'source_run_id': RUN_A,
         'categories': '["quality", "安全"]',
         'created_timestamp': 1700000000000,
         'last_updated_timestamp': 1700000000500,
         'created_by': 'user0@example.com'},
    ],
    'mcp_server_aliases': [
        {'workspace': 'default', 'name': 'name 0 値 🙂', 'alias': 'alias 0 値 🙂', 'version': '1.0.0'},
        {'workspace': 'default', 'name': 'name 1 値 🙂', 'alias': 'alias 1 値 🙂', 'version': '2.0.1'},
    ],
    'mcp_server_version_tags': [
        {'workspace': 'default',
         'name': 'name 0 値 🙂',
         'version': '1.0.0',
         'key': 'key 0 値 🙂',
         'value': 'value 0 値 🙂'},
        {'workspace': 'default', 'name': 'name 1 値 🙂', 'version': '2.0.1', 'key': 'key 1 値 🙂', 'value': None},
    ],
    'online_scoring_configs': [
        {'online_scoring_config_id': '0ac45b49-e269-0561-ea15-e262215297dc',
         'scorer_id': '904cb07f-610a-e93f-de19-146f15bf7a18',
         'sample_rate': 0.25,
         'experiment_id': 0,
         'filter_string': "attributes.status = 'OK'"},
        {'online_scoring_config_id': '89255244-ada4-13c8-491a-b9377ca449e3',
         'scorer_id': 'f79a679a-c0f1-d679-21f2-a9ed78135a50',
         'sample_rate': 1.0,
         'experiment_id': 1,
         'filter_string': None},
    ],
    'review_queue_items': [
        {'queue_id': '30cc81cb-1d99-33cb-1c78-d9f04fc1b5f3',
         'item_type': 'trace',
         'item_id': TR_1,
         'status': 'complete',
         'completed_by': 'user0@example.com',
         'completed_time_ms': 1700000000500,
         'creation_time_ms': 1700000000000,
         'last_update_time_ms': 1700000000500},
        {'queue_id': 'c708ec8b-17c5-71a8-c91a-42b013b009f4',
         'item_type': 'trace',
         'item_id': TR_1,
         'status': 'pending',
         'completed_by': None,
         'completed_time_ms': None,
         'creation_time_ms': 1700000001000,
         'last_update_time_ms': 1700000001500},
    ],
    'review_queue_label_schemas': [
        {'queue_id': '30cc81cb-1d99-33cb-1c78-d9f04fc1b5f3',
         'schema_id': '017b8f76-dbd8-8308-42e2-50aa68f80680'},
        {'queue_id': 'c708ec8b-17c5-71a8-c91a-42b013b009f4',
         'schema_id': '017b8f76-dbd8-8308-42e2-50aa68f80680'},
    ],
    'review_queue_users': [
        {'queue_id': '30cc81cb-1d99-33cb-1c78-d9f04fc1b5f3', 'user_id': 'user0@example.com'},
        {'queue_id': 'c708ec8b-17c5-71a8-c91a-42b013b009f4', 'user_id': 'user1@example.com'},
    ],
    'scorer_versions': [
        {'scorer_id': '904cb07f-610a-e93f-de19-146f15bf7a18',
         'scorer_version': 1,
         'serialized_scorer': '{"name": "scorer_0", "builtin_scorer_class": "RelevanceToQuery", '
                              '"mlflow_version": "3.17.2"}',
         'creation_time': 1700000000000},
        {'scorer_id': 'f79a679a-c0f1-d679-21f2-a9ed78135a50',
         'scorer_version': 2,
         'serialized_scorer': '{"name": "scorer_1", "builtin_scorer_class": "RelevanceToQuery", '
                              '"mlflow_version": "3.17.2"}',
         'creation_time': None},
    ],
    'trace_metrics': [
        {'request_id': TR_1, 'key': 'input_tokens', 'value': 0.5},
        {'request_id': TR_2, 'key': 'total_cost', 'value': None},
    ],
    'guardrails': [
        {'guardrail_id': '273e36df-3e59-d934-6af3-6ea7f7599328',
         'name': 'name 1 値 🙂',
         'scorer_id': 'f79a679a-c0f1-d679-21f2-a9ed78135a50',
         'scorer_version': 2,
         'stage': 'AFTER',
         'action': 'SANITIZATION',
         'action_endpoint_id': '51024c33-578c-27f5-8933-c087e9e6c30d',
         'created_by': None,
         'created_at': 1700000001000,
         'last_updated_by': None,
         'last_updated_at': 1700000001500,
         'workspace': 'default'},
        {'guardrail_id': '5c085077-891d-3414-6ce5-3b4d057ec7b4',
         'name': 'name 0 値 🙂',
         'scorer_id': '904cb07f-610a-e93f-de19-146f15bf7a18',
         'scorer_version': 1,
         'stage': 'BEFORE',
         'action': 'VALIDATION',
         'action_endpoint_id': '51024c33-578c-27f5-8933-c087e9e6c30d',
         'created_by': 'user0@example.com',
         'created_at': 1700000000000,
         'last_updated_by': 'user0@example.com',
         'last_updated_at': 1700000000500,
         'workspace': 'default'},
    ],
    'span_metrics': [
        {'trace_id': TR_1,
         'span_id': SPAN_ROOT,
         'key': 'input_tokens',
         'value': 0.5},
        {'trace_id': TR_1,
         'span_id': SPAN_CHILD,
         'key': 'latency_ms',
         'value': None},
    ],
    'guardrail_configs': [
        {'endpoint_id': '51024c33-578c-27f5-8933-c087e9e6c30d',
         'guardrail_id': '273e36df-3e59-d934-6af3-6ea7f7599328',
         'execution_order': 0,
         'created_by': 'user0@example.com',
         'created_at': 1700000000000,
         'workspace': 'default'},
        {'endpoint_id': '51024c33-578c-27f5-8933-c087e9e6c30d',
         'guardrail_id': '5c085077-891d-3414-6ce5-3b4d057ec7b4',
         'execution_order': None,
         'created_by': None,
         'created_at': 1700000001000,
         'workspace': 'default'},
    ],
}
ALL_ROWS: dict[str, list[dict]] = {**ROWS, **OTHER_ROWS}


# --------------------------------------------------------------------------- build the source
def _sa_url(url: str) -> str:
    from tests.support.servers import mlflow_uri
    return mlflow_uri(url)


def build_source(url: str) -> None:
    """Create the MLflow 3.17 schema in the empty database `url` and insert ALL_ROWS (parents first)."""
    import sqlalchemy as sa

    from dbmigrate.sql_schema import create_schema
    from tests.support.fill_all_tables import load_order, reflect

    create_schema(_sa_url(url), REVISION)
    engine = sa.create_engine(_sa_url(url), poolclass=sa.pool.NullPool)
    try:
        infos = reflect(engine)
        unknown = set(ALL_ROWS) - set(infos)
        if unknown:
            raise ValueError(f"ALL_ROWS names tables the schema lacks: {sorted(unknown)}")
        with engine.begin() as conn:
            for table in load_order(infos):
                if ALL_ROWS.get(table):
                    conn.execute(infos[table].table.insert(), ALL_ROWS[table])
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- snapshot
def _canonical(value) -> str:
    return dumps(value, json_options=CANONICAL_JSON_OPTIONS, ensure_ascii=False)


def _through_bson(doc: dict) -> dict:
    """The document as MongoDB stores it (BSON types: int32 vs int64, binary, ...)."""
    return bson.decode(bson.encode(doc), codec_options=CodecOptions(document_class=dict))


class MemoryTarget:
    """What the pipeline needs of a MongoDB writer (write, find_ids, update_by_id with $set),
    keeping the documents in memory in insertion order."""

    def __init__(self):
        self.collections: dict[str, dict[str, dict]] = {}

    def write(self, collection: str, docs: list[dict]) -> None:
        coll = self.collections.setdefault(collection, {})
        for doc in docs:
            key = _canonical(doc["_id"])
            if key in coll:
                raise AssertionError(f"duplicate _id {key} in {collection}")
            coll[key] = _through_bson(doc)

    def find_ids(self, collection: str, ids: list) -> set:
        coll = self.collections.get(collection, {})
        return {i for i in ids if _canonical(i) in coll}

    def update_by_id(self, collection: str, updates: list[tuple]) -> None:
        coll = self.collections[collection]
        for _id, fields in updates:
            coll[_canonical(_id)].update(_through_bson(fields))

    def get(self, collection: str, _id) -> dict:
        return self.collections[collection][_canonical(_id)]


def _sort_key(values: tuple) -> tuple:
    return tuple((type(v).__name__, v) for v in values)


def _representative(source, table) -> dict:
    """The row of `table` with the smallest primary key (compared in Python, not in the
    database's collation), all columns, values as dbmigrate's reader normalises them."""
    cols = table.column_names
    key = table.pk or cols
    idx = [cols.index(k) for k in key]
    rows = [r for batch in source.stream(table.name, cols, 10_000) for r in batch]
    if not rows:
        raise AssertionError(f"golden source table {table.name} is empty")
    best = min(rows, key=lambda r: _sort_key(tuple(r[i] for i in idx)))
    return dict(zip(cols, best))


def _same_row(row: dict, rep: dict) -> bool:
    return all(rep[c] == v for c, v in row.items() if c in rep and not isinstance(v, list))


def _embedded(children, fetched: dict, collection: str, doc_key: str, owners: dict) -> None:
    """Record which child rows (and grandchildren) a document embeds: table -> [(coll, key, row)]."""
    for cp in children:
        for row in fetched.get(cp.name, []):
            if cp.count != "none":
                owners.setdefault(cp.table, []).append((collection, doc_key, row))
            _embedded(cp.children, row, collection, doc_key, owners)


def snapshot(url: str) -> dict[str, str]:
    """{table: golden JSON text} for the MLflow database at `url`, built by dbmigrate's own code."""
    from dbmigrate.assemble import Accounts, build_documents, fetch_children, iter_source_batches
    from dbmigrate.config import Config
    from dbmigrate.ends.mongo import merge_rows
    from dbmigrate.plan import make_plan
    from dbmigrate.readers.sql import SqlSource
    from dbmigrate.uri import parse_uri

    cfg = Config(progress=False)
    source = SqlSource(parse_uri(url, role="source")).open()
    try:
        schema = source.inspect()
        reps = {name: _representative(source, t) for name, t in sorted(schema.tables.items())}
        result = {name: {"source_rows": [rep]} for name, rep in reps.items()}
        for layout in LAYOUTS:
            plan = make_plan(schema, layout)
            target = MemoryTarget()
            made: dict[str, list[tuple[dict, str]]] = {}   # collection -> [(row as dict, doc key)]
            owners: dict[str, list] = {}
            for cp in plan.collections:
                for rows in iter_source_batches(cp, source, cfg.batch_size):
                    docs = build_documents(cp, source, rows)
                    target.write(cp.name, docs)
                    for row, doc in zip(rows, docs):
                        parent = dict(zip(cp.columns, row))
                        key = _canonical(doc["_id"])
                        made.setdefault(cp.name, []).append((parent, key))
                        if cp.children:
                            fetched = fetch_children(source, cp.children, [parent])[0]
                            _embedded(cp.children, fetched, cp.name, key, owners)
            merge_rows(plan, source, target, cfg, Accounts())

            def own_doc(collection, table, rep):
                keycols = schema.tables[table].pk or schema.tables[table].column_names
                hits = [k for row, k in made.get(collection, [])
                        if all(row.get(c) == rep[c] for c in keycols if c in row)]
                if len(hits) != 1:
                    raise AssertionError(f"{len(hits)} {collection} documents from one {table} row")
                return target.collections[collection][hits[0]]

            for table, rep in reps.items():
                if layout == "tables":
                    result[table]["tables"] = [own_doc(table, table, rep)]
                    continue
                entry = _mlflow_mongodb_entry(plan, table, rep, source, target, own_doc, owners,
                                              build_documents)
                result[table]["mlflow-mongodb"] = entry
    finally:
        # SqlSource.close() leaves open the SQLAlchemy connection inspect() reflects through
        # (SqlSource._sa_conn); close it here so that dropping the database does not kill it.
        sa_conn = getattr(source, "_sa_conn", None)
        if sa_conn is not None:
            sa_conn.close()
        source.close()
    return {t: dumps(v, json_options=CANONICAL_JSON_OPTIONS, indent=1, ensure_ascii=False) + "\n"
            for t, v in result.items()}


def _mlflow_mongodb_entry(plan, table, rep, source, target, own_doc, owners, build_documents) -> dict:
    driving = [cp for cp in plan.collections if cp.table == table and not cp.spec.get("tables_form")]
    copy = plan.copies.get(table)
    if driving:
        cp = driving[0]
        entry = {"collection": cp.name, "documents": [own_doc(cp.name, table, rep)]}
    elif any(mp.table == table for mp in plan.merges):
        mp = next(mp for mp in plan.merges if mp.table == table)
        d = build_documents(mp.plan, source, [tuple(rep[c] for c in mp.plan.columns)])[0]
        present = target.find_ids(mp.collection, [d["__match"], d["__match_nan"]])
        if d["__match"] in present:          # the rule of dbmigrate.ends.mongo.merge_rows
            _id = d["__match"]
        elif d["__match_nan"] in present and d.get("v") in (0, 0.0):
            _id = d["__match_nan"]
        else:
            _id = d["_id"]
        entry = {"collection": mp.collection, "documents": [target.get(mp.collection, _id)]}
    else:
        hits = []
        for collection, key, row in owners.get(table, []):
            if _same_row(row, rep) and (collection, key) not in hits:
                hits.append((collection, key))
        if hits:
            collections = {c for c, _ in hits}
            if len(collections) != 1:
                raise AssertionError(f"{table} row embedded in several collections: {collections}")
            collection = hits[0][0]
            entry = {"collection": collection,
                     "documents": [target.collections[collection][k] for _, k in hits]}
        elif copy:
            return {"collection": copy, "documents": [own_doc(copy, table, rep)]}
        else:
            raise AssertionError(f"{table}: the mlflow-mongodb layout keeps this row nowhere")
    if copy and copy != entry["collection"]:
        entry["also"] = [{"collection": copy, "documents": [own_doc(copy, table, rep)]}]
    return entry


# --------------------------------------------------------------------------- files
def golden_files() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(GOLDEN_DIR.glob("*.json"))}


def make_snapshot_of_fresh_source() -> dict[str, str]:
    """Build the golden source in a new PostgreSQL database, snapshot it, drop the database."""
    from tests.support import servers

    base = servers.postgres_base_uri()
    name = servers.create_pg_database(base, "dbm_golden")
    try:
        url = servers.pg_database(base, name)
        build_source(url)
        return snapshot(url)
    finally:
        servers.drop_pg_database(base, name)


def main() -> int:
    got = make_snapshot_of_fresh_source()
    old = golden_files()
    for stale in sorted(set(old) - set(got)):
        (GOLDEN_DIR / f"{stale}.json").unlink()
        print(f"removed {stale}.json")
    changed = 0
    for table, text in sorted(got.items()):
        if old.get(table) != text:
            (GOLDEN_DIR / f"{table}.json").write_text(text, encoding="utf-8")
            changed += 1
            print(f"{'updated' if table in old else 'created'} {table}.json")
    print(f"{len(got)} tables, {changed} golden file(s) written to {GOLDEN_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
