"""Named pure converters: value(s) in, value out. Schema maps refer to them by name.

Each one is small and total: it handles None, 0, "", NaN and the infinities, and raises a
`ValueError` with a plain message for input it cannot represent (the pipeline adds table, key and
column). Nothing here touches a database or MLflow.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
import struct
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from bson import ObjectId

REGISTRY: dict[str, Callable] = {}

NAN = float("nan")
MAX_DOUBLE = 1.7976931348623157e308


def converter(fn: Callable) -> Callable:
    REGISTRY[fn.__name__] = fn
    return fn


def get(name: str) -> Callable:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown converter {name!r}; known: {sorted(REGISTRY)}") from None


# ----------------------------------------------------------------------------- scalars
@converter
def identity(v):
    return v


@converter
def to_str(v):
    """SQL integer id -> the string form MLflow's API and the MongoDB layouts use."""
    return None if v is None else str(v)


@converter
def to_bool(v):
    return None if v is None else bool(v)


@converter
def metric_value(value, is_nan):
    """SQL stores NaN as value 0 with is_nan=true; everything else (clamped infinities included)
    is kept exactly, because that is what MLflow on the source shows."""
    if is_nan:
        return NAN
    if type(value) is float:  # the common case: already a float, as float(value) would return it
        return value
    return None if value is None else float(value)


@converter
def json_text_to_object(text):
    """JSON text (SQL) -> the object MongoDB stores; '' and None stay None."""
    if text is None or text == "":
        return None
    return json.loads(text)


@converter
def json_or_text(text):
    """Parse JSON when it is JSON, keep the text otherwise (MLflow's try_json_loads)."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


_LOGGED_MODEL_STATUS = {0: "UNSPECIFIED", 1: "PENDING", 2: "READY", 3: "FAILED"}
_LOGGED_MODEL_STATUS_CODE = {v: k for k, v in _LOGGED_MODEL_STATUS.items()}


@converter
def logged_model_status_name(code):
    if code is None:
        return None
    try:
        return _LOGGED_MODEL_STATUS[int(code)]
    except (KeyError, ValueError):
        raise ValueError(f"unknown logged model status {code!r} (expected 0-3)") from None


@converter
def logged_model_status_code(name):
    if name is None:
        return None
    try:
        return _LOGGED_MODEL_STATUS_CODE[str(name)]
    except KeyError:
        raise ValueError(f"unknown logged model status {name!r}") from None


@converter
def trace_state(status):
    """trace_info.status -> TraceState name. MLflow 2.x wrote TRACE_STATUS_UNSPECIFIED."""
    if status == "TRACE_STATUS_UNSPECIFIED":
        return "STATE_UNSPECIFIED"
    return status


# ----------------------------------------------------------------------------- ids
def _digest(*parts) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        if isinstance(p, float):
            token = b"f" + struct.pack(">d", p)
        elif isinstance(p, bool):
            token = b"b1" if p else b"b0"
        elif isinstance(p, int):
            token = b"i" + str(p).encode()
        elif p is None:
            token = b"n"
        else:
            token = b"s" + str(p).encode("utf-8", "surrogatepass")
        h.update(len(token).to_bytes(4, "big"))
        h.update(token)
    return h.digest()


@converter
def stable_object_id(*parts) -> ObjectId:
    """A deterministic ObjectId from key parts, so a rerun writes the same _id."""
    return ObjectId(_digest(*parts)[:12])


@converter
def timed_object_id(ms, *parts) -> ObjectId:
    """Deterministic ObjectId whose timestamp part is `ms` (epoch ms), so _id order follows it."""
    seconds = 0 if ms is None else max(0, min(int(ms) // 1000, 0xFFFFFFFF))
    return ObjectId(seconds.to_bytes(4, "big") + _digest(*parts)[:8])


_blake2b = hashlib.blake2b
_METRIC_KEY = struct.Struct(">qqd?II").pack
_SECONDS = struct.Struct(">I").pack
# ObjectId(b) checks its argument's type and length in Python on every call; these 12 bytes are
# made here, so the id is set directly (the same object ObjectId(b) makes: bson reads __id).
_new_object_id = ObjectId.__new__
# A copy of an empty 8-byte BLAKE2b state, then update: the same digest as
# blake2b(data, digest_size=8), without parsing the constructor's keyword arguments per row
# (535 ns against ~200 ns a row, measured).
_metric_hash = _blake2b(digest_size=8).copy


@converter
def metric_object_id(key, timestamp, step, run_uuid, value, is_nan) -> ObjectId:
    """The run_metrics _id of one SQL metrics row (its whole primary key): 4 bytes of the metric's
    timestamp in seconds (so _id order follows logging time) and 8 bytes of a hash of the key.
    -0.0 and 0.0 are one SQL key, and so is every NaN row; a NULL value (possible only in
    logged_model_metrics) hashes as a NaN that is not flagged, which no metrics row is.
    This runs once per metric row: one struct and one hash, no per-part encoding."""
    if is_nan:
        value = 0.0
    elif value is None:
        value = NAN
    elif value == 0.0:
        value = 0.0
    kb = (key if type(key) is str else str(key)).encode("utf-8", "surrogatepass")
    rb = (run_uuid if type(run_uuid) is str else str(run_uuid)).encode("utf-8", "surrogatepass")
    seconds = timestamp // 1000
    if not 0 <= seconds <= 0xFFFFFFFF:
        seconds = 0 if seconds < 0 else 0xFFFFFFFF
    oid = _new_object_id(ObjectId)
    h = _metric_hash()
    h.update(_METRIC_KEY(timestamp, step, float(value), bool(is_nan), len(kb), len(rb)) + kb + rb)
    oid._ObjectId__id = _SECONDS(seconds) + h.digest()
    return oid


@converter
def registry_object_id(workspace, name) -> ObjectId:
    return stable_object_id("registered_model", workspace or "default", name)


@converter
def model_version_object_id(workspace, name, version) -> ObjectId:
    return stable_object_id("model_version", workspace or "default", name, int(version))


@converter
def span_object_id(trace_id, span_id) -> ObjectId:
    return stable_object_id("span", trace_id, span_id)


@converter
def assessment_object_id(trace_id, assessment_id) -> ObjectId:
    return stable_object_id("assessment", trace_id, assessment_id)


# ----------------------------------------------------------------------------- lists
@converter
def kv_list(rows, key="key", value="value", k="k", v="v"):
    """Child rows -> [{k, v}] sorted by key (SQL keeps no order; sorting keeps reruns stable)."""
    return sorted(({k: r[key], v: r[value]} for r in rows), key=lambda e: e[k])


@converter
def run_tags(tags, run_name):
    """Run tags, with mlflow.runName added from runs.name when absent (run-name search uses it)."""
    out = kv_list(tags)
    if run_name is not None and not any(t["k"] == "mlflow.runName" for t in out):
        out.append({"k": "mlflow.runName", "v": run_name})
        out.sort(key=lambda e: e["k"])
    return out


@converter
def latest_metrics(rows):
    return sorted(({"k": r["key"], "v": metric_value(r["value"], r["is_nan"]),
                    "timestamp": r["timestamp"], "step": r["step"], "model_id": None,
                    "dataset_name": None, "dataset_digest": None} for r in rows),
                  key=lambda e: e["k"])


@converter
def run_inputs(dataset_inputs, model_inputs):
    """runs.inputs = {datasets: [...], models: [...]}: dataset inputs deduplicated on
    (name, digest) keeping the first, as the store does."""
    datasets, seen = [], set()
    for inp in sorted(dataset_inputs, key=lambda r: r["input_uuid"]):
        ds = inp.get("dataset") or []
        if not ds:
            continue  # dangling input (no dataset row): reported by the analyzer
        d = ds[0]
        ident = (d["name"], d["digest"])
        if ident in seen:
            continue
        seen.add(ident)
        datasets.append({
            "dataset": {"name": d["name"], "digest": d["digest"],
                        "source_type": d["dataset_source_type"], "source": d["dataset_source"],
                        "schema": d.get("dataset_schema"), "profile": d.get("dataset_profile")},
            "tags": kv_list(inp.get("tags") or [], "name", "value"),
        })
    models = [{"model_id": r["destination_id"]}
              for r in sorted(model_inputs, key=lambda r: r["destination_id"])
              if r["source_type"] == "RUN_INPUT" and r["destination_type"] == "MODEL_INPUT"]
    return {"datasets": datasets, "models": models}


@converter
def run_outputs(model_links):
    return [{"model_id": r["destination_id"], "step": r.get("step") or 0}
            for r in sorted(model_links, key=lambda r: (r.get("step") or 0, r["destination_id"]))
            if r["source_type"] == "RUN_OUTPUT" and r["destination_type"] == "MODEL_OUTPUT"]


@converter
def max_version(rows):
    """version_counter: the highest version ever used, Deleted_Internal versions included."""
    return max((int(r["version"]) for r in rows), default=0)


@converter
def aliases(rows):
    return sorted(({"alias": r["alias"], "version": int(r["version"])} for r in rows),
                  key=lambda e: e["alias"])


# ----------------------------------------------------------------------------- traces
TRACE_NAME_TAG = "mlflow.traceName"
SOURCE_RUN = "mlflow.sourceRun"
SIZE_STATS = "mlflow.trace.sizeStats"
TOKEN_USAGE = "mlflow.trace.tokenUsage"
TRACE_COST = "mlflow.trace.cost"
TRACE_SESSION = "mlflow.trace.session"
LINKED_PROMPTS = "mlflow.linkedPrompts"
_TOKEN_COLUMNS = {"input_tokens": "input_tokens", "output_tokens": "output_tokens",
                  "total_tokens": "total_tokens", "cache_read_input_tokens": "cache_read_input_tokens",
                  "cache_creation_input_tokens": "cache_creation_input_tokens",
                  "cache_creation_input_tokens_above_1hr": "cache_creation_input_tokens_above_1hr"}
_COST_COLUMNS = {"input_cost": "input_cost", "output_cost": "output_cost", "total_cost": "total_cost"}


@converter
def trace_tags(tags, trace_name):
    """Tags as MLflow's SQL store reports them (SqlTraceInfo.to_mlflow_entity): from 3.17 the
    trace_name column is the mlflow.traceName tag and a mlflow.traceName row is never shown.

    `trace_name` is either the column's value (None when NULL or when the column does not exist:
    a mlflow.traceName row is then kept, as MLflow before 3.17 showed it), or, from a
    {"cols": ["?trace_name"], "if_column": "trace_name"} argument, None without the column and
    {"trace_name": value} with it, which tells a NULL column (row hidden) from a missing one."""
    has_column = isinstance(trace_name, dict)
    if has_column:
        trace_name = trace_name.get("trace_name")
    drop_row = has_column or trace_name is not None
    out = {r["key"]: r["value"] for r in tags if r["key"] != TRACE_NAME_TAG or not drop_row}
    if trace_name is not None:
        out[TRACE_NAME_TAG] = trace_name
    return [{"k": k, "v": v} for k, v in sorted(out.items())]


@converter
def trace_metadata(rows, analytics):
    """Metadata as MLflow's SQL store reports it. From 3.17 the session, token usage and cost
    metadata live in columns; `analytics` holds those columns (None before 3.17)."""
    if analytics is None:
        out = {r["key"]: r["value"] for r in rows}
    else:
        out = {r["key"]: r["value"] for r in rows
               if r["key"] not in (TRACE_SESSION, TOKEN_USAGE, TRACE_COST)}
        if analytics.get("session_id") is not None:
            out[TRACE_SESSION] = analytics["session_id"]
        usage = {k: token_count(analytics.get(c)) for k, c in _TOKEN_COLUMNS.items()}
        usage = {k: v for k, v in usage.items() if v is not None}
        if usage:
            out[TOKEN_USAGE] = json.dumps(usage)
        cost = {k: analytics.get(c) for k, c in _COST_COLUMNS.items() if analytics.get(c) is not None}
        if cost:
            out[TRACE_COST] = json.dumps(cost)
    return [{"k": k, "v": v} for k, v in sorted(out.items())]


_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


def token_count(v):
    """MLflow's token_count_or_none: an integral value (exactly, via Decimal) within BIGINT.
    (The readers that rebuild trace_info's analytics columns use it too.)"""
    if v is None or isinstance(v, bool):
        return None
    try:
        d = Decimal(str(v))
    except (InvalidOperation, TypeError, ValueError):
        return None
    if not d.is_finite() or d != d.to_integral_value() or not _BIGINT_MIN <= d <= _BIGINT_MAX:
        return None
    return int(d)


def _meta(meta: list[dict], key: str):
    return next((e["v"] for e in meta if e["k"] == key), None)


@converter
def trace_run_ids(meta, associations):
    """Runs a trace belongs to: its mlflow.sourceRun and every trace->run association."""
    ids = []
    src = _meta(meta, SOURCE_RUN)
    if src:
        ids.append(src)
    ids += sorted(r["destination_id"] for r in associations if r["destination_type"] == "run")
    return list(dict.fromkeys(ids))


@converter
def trace_linked_prompts(tags, associations):
    """[{name, version (string)}] from trace->prompt_version associations ("name/version") and
    the legacy mlflow.linkedPrompts tag (a JSON list)."""
    refs = []
    for r in associations:
        if r["destination_type"] == "prompt_version" and "/" in r["destination_id"]:
            name, version = r["destination_id"].rsplit("/", 1)
            refs.append({"name": name, "version": version})
    raw = _meta(tags, LINKED_PROMPTS)
    if raw:
        try:
            for item in json.loads(raw):
                refs.append({"name": str(item["name"]), "version": str(item["version"])})
        except (ValueError, TypeError, KeyError):
            pass  # a malformed tag stays a tag; nothing to link
    seen, out = set(), []
    for ref in refs:
        key = (ref["name"], ref["version"])
        if key not in seen:
            seen.add(key)
            out.append(ref)
    return sorted(out, key=lambda r: (r["name"], r["version"]))


@converter
def trace_span_stats(meta):
    raw = _meta(meta, SIZE_STATS)
    if not raw:
        return None
    try:
        stats = json.loads(raw)
    except ValueError:
        return None
    return stats if isinstance(stats, dict) else None


def _numeric_dict(raw):
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return _finite_numbers(value)


def _finite_numbers(value):
    """`value` if it is a dict of finite numbers (not booleans), else None."""
    if not isinstance(value, dict):
        return None
    for number in value.values():
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            return None
        if isinstance(number, float) and not math.isfinite(number):
            return None
    return value


@converter
def trace_token_usage(meta):
    return _numeric_dict(_meta(meta, TOKEN_USAGE))


@converter
def trace_cost(meta):
    return _numeric_dict(_meta(meta, TRACE_COST))


@converter
def metadata_keys(meta):
    return sorted(e["k"] for e in meta)


@converter
def bool_const_true():
    return True


# ----------------------------------------------------------------------------- spans
SPAN_TYPE = "mlflow.spanType"
CHAT_USAGE = "mlflow.chat.tokenUsage"
LLM_COST = "mlflow.llm.cost"
LLM_MODEL = "mlflow.llm.model"
LLM_PROVIDER = "mlflow.llm.provider"
SESSION_ID = "session.id"
CONVERSATION_ID = "gen_ai.conversation.id"
USER_ID = "user.id"
TRACE_TAG_PREFIX = "mlflow.traceTag."


@converter
def span_content(text):
    """spans.content (JSON text of the whole span) -> the dict the store keeps."""
    if text is None or text == "":
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("span content is not a JSON object")
    return value


def _attr(content, key):
    v = (content.get("attributes") or {}).get(key)
    return json_or_text(v) if isinstance(v, str) else v


@converter
def span_type(content, sql_type):
    """The plugin's `type`: the decoded mlflow.spanType attribute of the stored (translated) span
    when truthy, else the span's own span_type, which the SQL `type` column holds. A falsy number
    or false decoded from JSON text is that span_type itself (the column only has its lossy text
    form); a falsy raw value reads as no span type (None in the column too)."""
    raw = (content.get("attributes") or {}).get(SPAN_TYPE)
    value = json_or_text(raw) if isinstance(raw, str) else raw
    if value or (isinstance(raw, str) and isinstance(value, (bool, int, float))):
        return value
    return sql_type


def _numeric_attr(content, key):
    return _finite_numbers(_attr(content, key))


@converter
def span_token_usage(content):
    return _numeric_attr(content, CHAT_USAGE)


@converter
def span_cost(content):
    return _numeric_attr(content, LLM_COST)


@converter
def span_dimensions(content):
    attrs = content.get("attributes") or {}
    out = {}
    for field, key in (("model", LLM_MODEL), ("provider", LLM_PROVIDER)):
        if key in attrs:
            out[field] = _attr(content, key)
    return out


_TAG_NAME = re.compile(r"^[/\w.\- :]*$")  # mlflow.utils.validation (non-Windows)
_MAX_TAG_KEY, _MAX_TAG_VALUE = 250, 8000  # MAX_TRACE_TAG_KEY_LENGTH / MAX_TRACE_TAG_VAL_LENGTH
_NOT_ROOT_TAGS = ("mlflow.trace.spansLocation", "mlflow.artifactLocation")


def _trace_tag(key: str, value):
    """(key, value) as mlflow-mongodb keeps a span-derived trace tag (MLflow's _validate_trace_tag:
    a valid, unique-path key of at most 250 characters; the value cut to 8000 characters, which
    is MLflow's default MLFLOW_TRUNCATE_LONG_VALUES=true), or None when the plugin skips it."""
    value = value if isinstance(value, str) else json.dumps(value)
    norm = posixpath.normpath(key)
    if (not _TAG_NAME.match(key) or norm != key or norm == "." or norm.startswith("..")
            or norm.startswith("/") or len(key) > _MAX_TAG_KEY):
        return None
    return key, value[:_MAX_TAG_VALUE]


@converter
def span_trace_fields(content, parent_span_id, request_preview, response_preview):
    """The per-span summary inputs the store keeps (trace_fields). Previews of the root span are
    the trace's own stored previews (MLflow computed both from the same root span).
    resource_tags stay empty: the SQL store never kept a span's OTel resource."""
    attrs = content.get("attributes") or {}
    root = parent_span_id is None
    root_tags = {}
    if root:
        for key, value in attrs.items():
            if key.startswith(TRACE_TAG_PREFIX):
                tag = key[len(TRACE_TAG_PREFIX):]
                if tag not in _NOT_ROOT_TAGS:
                    kept = _trace_tag(tag, json_or_text(value) if isinstance(value, str) else value)
                    if kept is not None:
                        root_tags[kept[0]] = kept[1]
    metadata = {}
    session = attrs.get(SESSION_ID) or attrs.get(CONVERSATION_ID)
    for key, value in (("mlflow.trace.session", session), ("mlflow.trace.user", attrs.get(USER_ID))):
        if value is not None:
            metadata[key] = str(json_or_text(value) if isinstance(value, str) else value)
    return {"metadata": metadata, "resource_tags": {}, "root_tags": root_tags,
            "request_preview": request_preview if root else None,
            "response_preview": response_preview if root else None}


# ----------------------------------------------------------------------------- assessments
# What MLflow's Assessment.to_dictionary() (protobuf MessageToDict of a proto2 message) writes.
# The proto fields have presence: a field MLflow sets is written even when it is "" or False.
_SOURCE_TYPES = {"SOURCE_TYPE_UNSPECIFIED", "HUMAN", "LLM_JUDGE", "CODE"}
_LEGACY_SOURCE_TYPES = {"AI_JUDGE": "LLM_JUDGE"}  # AssessmentSourceType._parse
_STACK_TRACE_LIMIT = 10000  # mlflow.entities.assessment_error._STACK_TRACE_TRUNCATION_LENGTH
_STACK_TRACE_PREFIX = "[Stack trace is truncated]\n...\n"
_MIN_PROTO_SECONDS = -62135596800   # 0001-01-01T00:00:00Z, protobuf Timestamp's range
_MAX_PROTO_SECONDS = 253402300799   # 9999-12-31T23:59:59Z
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _proto_time(ms: int) -> str:
    """A protobuf Timestamp's JSON form (as MessageToDict writes it) for epoch milliseconds."""
    ms = int(ms)
    seconds, millis = divmod(ms, 1000)
    if not _MIN_PROTO_SECONDS <= seconds <= _MAX_PROTO_SECONDS:
        raise ValueError(f"timestamp {ms} ms is outside the years 1-9999 a protobuf Timestamp holds")
    dt = _EPOCH + timedelta(seconds=seconds)
    base = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    return f"{base}.{millis:03d}Z" if millis else f"{base}Z"


def _proto_value(value):
    """A python value through google.protobuf.Value and back (numbers become floats)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _proto_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_proto_value(v) for v in value]
    return value


def _proto_str(value, what):
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _assessment_source_type(value) -> str:
    stype = str(value).upper()
    stype = _LEGACY_SOURCE_TYPES.get(stype, stype)
    if stype not in _SOURCE_TYPES:
        raise ValueError(f"unknown assessment source type {value!r} "
                         f"(MLflow knows {sorted(_SOURCE_TYPES)})")
    return stype


def _assessment_error(text) -> dict:
    err = json.loads(text)
    if not isinstance(err, dict):
        raise ValueError("assessment error is not a JSON object")
    unknown = set(err) - {"error_code", "error_message", "stack_trace"}
    if unknown or "error_code" not in err:
        raise ValueError(f"assessment error needs error_code and only error_message/stack_trace "
                         f"besides; got keys {sorted(err)}")
    e: dict[str, Any] = {"error_code": _proto_str(err["error_code"], "error_code")}
    if err.get("error_message"):
        e["error_message"] = _proto_str(err["error_message"], "error_message")
    stack = err.get("stack_trace")
    if stack:
        stack = _proto_str(stack, "stack_trace")
        if len(stack) > _STACK_TRACE_LIMIT:  # AssessmentError.to_proto keeps the tail
            keep = _STACK_TRACE_LIMIT - len(_STACK_TRACE_PREFIX)
            stack = _STACK_TRACE_PREFIX + stack[-keep:]
        e["stack_trace"] = stack
    return e


@converter
def assessment_content(row: dict) -> dict:
    """SQL assessments row -> the `content` dict mlflow-mongodb keeps: MLflow's
    Assessment.to_dictionary() with the raw value kept, plus run_id."""
    kind = row["assessment_type"]
    if kind not in ("feedback", "expectation", "issue"):
        raise ValueError(f"unknown assessment_type {kind!r}")
    value = json.loads(row["value"]) if row["value"] is not None else None
    doc: dict[str, Any] = {}
    if row.get("assessment_id") is not None:
        doc["assessment_id"] = row["assessment_id"]
    doc["assessment_name"] = row["name"]
    doc["trace_id"] = row.get("trace_id") or ""
    if row.get("span_id") is not None:
        doc["span_id"] = row["span_id"]
    source: dict[str, Any] = {"source_type": _assessment_source_type(row.get("source_type"))}
    if row.get("source_id") is not None:
        source["source_id"] = row["source_id"]
    doc["source"] = source
    doc["create_time"] = _proto_time(row["created_timestamp"])
    doc["last_update_time"] = _proto_time(row["last_updated_timestamp"])
    if kind == "feedback":
        fb: dict[str, Any] = {"value": value}
        if row.get("error") is not None:
            fb["error"] = _assessment_error(row["error"])
        doc["feedback"] = fb
    elif kind == "expectation":
        doc["expectation"] = {"value": value}
    if kind != "expectation" and row.get("rationale") is not None:
        doc["rationale"] = row["rationale"]
    meta = json.loads(row["assessment_metadata"]) if row.get("assessment_metadata") is not None else None
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("assessment metadata is not a JSON object")
    if meta:
        doc["metadata"] = {str(k): str(v) for k, v in meta.items()}
    if row.get("overrides"):
        doc["overrides"] = row["overrides"]
    if row.get("valid") is not None:
        doc["valid"] = bool(row["valid"])
    if kind == "issue":
        name = value.get("issue_name") if isinstance(value, dict) else None
        if name is None:
            raise ValueError("issue assessment value has no issue_name")
        doc["issue"] = {"issue_name": _proto_str(name, "issue_name")}
    if row.get("run_id") is not None:
        doc["run_id"] = row["run_id"]
    return doc


@converter
def first_value(rows, field):
    """A field of the first row of a lookup (an N:1 child), or None when there is none."""
    return rows[0].get(field) if rows else None


# ----------------------------------------------------------------------------- tables layout
@converter
def int64(v):
    """SQL integers as BSON int64 whatever their size (MongoDB would store small ones as int32)."""
    from bson.int64 import Int64
    return None if v is None else Int64(v)


@converter
def to_binary(v):
    """BYTEA/BLOB -> BSON binary (subtype 0), kept byte for byte."""
    from bson.binary import Binary
    return None if v is None else Binary(bytes(v))


@converter
def pk_document(names, *values):
    """A composite primary key as an _id sub-document, columns in declared key order."""
    return dict(zip(names, values))


def assessment_aggregate(value) -> tuple[float | None, bool]:
    """MLflow's trace_analytics.assessment_aggregate: a numeric view of a feedback value, and
    whether it is numeric (the readers that rebuild assessments' analytics columns use it)."""
    if isinstance(value, bool):
        return (1.0 if value else 0.0), False
    if isinstance(value, (int, float)):
        try:
            f = float(value)
        except OverflowError:
            return None, False
        return (f, True) if math.isfinite(f) else (None, False)
    if isinstance(value, str) and value.strip().lower() in ("yes", "no"):
        return (1.0 if value.strip().lower() == "yes" else 0.0), False
    return None, False
