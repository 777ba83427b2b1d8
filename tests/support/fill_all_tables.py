"""Give every table of an MLflow database at least one row (two by default).

Generic and foreign-key aware: whatever the dialect (PostgreSQL, MySQL/MariaDB, SQLite) and the
MLflow revision (2.0 - 3.18), the schema is reflected with SQLAlchemy (columns, types, nullability,
primary keys, foreign keys, unique constraints and unique indexes, CHECK constraints where the
dialect reflects them) and every *empty* table gets rows, parents before children:

* foreign-key columns take the key of an existing parent row (composite keys as a whole, e.g. the
  registry tables keyed on (workspace, name[, version])); when several foreign keys share a column
  the choices are made consistent with each other;
* a few references MLflow keeps without a declared foreign key (inputs -> runs/datasets,
  input_tags -> inputs, entity_associations trace -> run, aliases -> model versions, workspace ->
  workspaces, ...) are followed too when the parent has rows ("soft" references, see SOFT_REFS);
  a child also takes `experiment_id`/`workspace` from the parent row it points at, so a span
  lives in its trace's experiment;
* constrained columns take values MLflow accepts: the allowed values of MLflow's models
  (mlflow/store/**/dbmodels/models.py and the entity enums: lifecycle stages, run / trace / span /
  model-version / logged-model / job statuses, assessment kinds, webhook entity+action pairs,
  gateway enums, ...; see DOMAIN), intersected with the literals of any reflected CHECK constraint
  on the column; JSON columns get valid JSON (JSON-typed columns a Python structure the driver
  serialises, TEXT columns that MLflow parses as JSON - span content, assessment values,
  dataset schemas, ... - JSON text); BLOB/BYTEA get bytes, DATE a date;
* every other value is deterministic and type-appropriate: ints, bigints (timestamps in ms, span
  times in ns), doubles (one fractional, one negative), booleans (both), strings that respect
  VARCHAR lengths and include CJK and emoji text;
* generated columns (spans.duration_ns, any reflected computed column) and single-column
  auto-increment keys are left to the database.

Row 0 of a table fills every column; row 1 leaves the nullable columns that are neither keys nor
references NULL, so both shapes are present. Unique keys (primary key, unique constraints, unique
indexes) are kept distinct; when the parents cannot give two distinct keys, fewer rows are made.
No randomness: the same database gets the same rows.

    python -m tests.support.fill_all_tables URL [--rows N]

`fill(url)` returns {table: rows inserted}; tables that already had rows are left alone.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field

import sqlalchemy as sa

BASE_MS = 1_700_000_000_000          # 2023-11-14T22:13:20Z
BASE_NS = BASE_MS * 1_000_000
UNI = "値 🙂"                        # CJK + emoji in every free text
GENERATED = {"spans": {"duration_ns"}}
INHERIT = ("experiment_id", "workspace")   # taken from the parent a row points at
MAX_PARENTS = 16                     # parent rows considered per reference
MAX_ATTEMPTS = 64                    # key combinations tried per row

# --------------------------------------------------------------------------- soft references
# References MLflow relies on but does not declare as foreign keys: (table, columns) ->
# (parent table, parent columns). Used only when the parent table exists and has rows.
SOFT_REFS: list[tuple[str, tuple[str, ...], str, tuple[str, ...]]] = [
    ("inputs", ("destination_id",), "runs", ("run_uuid",)),
    ("inputs", ("source_id",), "datasets", ("dataset_uuid",)),
    ("input_tags", ("input_uuid",), "inputs", ("input_uuid",)),
    ("entity_associations", ("source_id",), "trace_info", ("request_id",)),
    ("entity_associations", ("destination_id",), "runs", ("run_uuid",)),
    ("assessments", ("run_id",), "runs", ("run_uuid",)),
    ("model_versions", ("run_id",), "runs", ("run_uuid",)),
    ("logged_models", ("source_run_id",), "runs", ("run_uuid",)),
    ("logged_model_metrics", ("dataset_uuid",), "datasets", ("dataset_uuid",)),
    ("registered_model_aliases", ("workspace", "name", "version"), "model_versions",
     ("workspace", "name", "version")),
    ("registered_model_aliases", ("name", "version"), "model_versions", ("name", "version")),
    ("review_queue_label_schemas", ("schema_id",), "label_schemas", ("schema_id",)),
    ("review_queue_items", ("item_id",), "trace_info", ("request_id",)),
    ("endpoint_bindings", ("resource_id",), "scorers", ("scorer_id",)),
    ("mcp_server_aliases", ("workspace", "name", "version"), "mcp_server_versions",
     ("workspace", "name", "version")),
    ("sql_trace_metric_daily_rollups", ("experiment_id",), "experiments", ("experiment_id",)),
    ("sql_span_cost_daily_rollups", ("experiment_id",), "experiments", ("experiment_id",)),
    ("sql_assessment_daily_rollups", ("experiment_id",), "experiments", ("experiment_id",)),
    ("sql_trace_rollup_rebuild_queue", ("experiment_id",), "experiments", ("experiment_id",)),
    ("assessments", ("experiment_id",), "experiments", ("experiment_id",)),
]
# Every `workspace` column (3.10+) names a row of `workspaces`.
WORKSPACE_REF = ("workspace",), "workspaces", ("name",)

# --------------------------------------------------------------------------- allowed values
# "table.column" or "*.column" -> values MLflow writes (cycled over the rows).
DOMAIN: dict[str, list] = {
    "*.lifecycle_stage": ["active", "deleted"],
    "*.is_nan": [False, True],
    "workspaces.name": ["default", "team-β"],
    "runs.status": ["FINISHED", "RUNNING", "FAILED", "KILLED", "SCHEDULED"],
    "runs.source_type": ["LOCAL", "NOTEBOOK", "JOB", "PROJECT", "UNKNOWN"],
    "model_versions.current_stage": ["Production", "None", "Staging", "Archived", "Deleted_Internal"],
    "model_versions.status": ["READY", "PENDING_REGISTRATION", "FAILED_REGISTRATION"],
    "logged_models.status": [2, 1, 3, 0],                 # READY, PENDING, FAILED, UNSPECIFIED
    "trace_info.status": ["OK", "ERROR", "IN_PROGRESS", "STATE_UNSPECIFIED"],
    "spans.status": ["OK", "ERROR", "UNSET"],
    "spans.type": ["LLM", "CHAIN", "RETRIEVER", "TOOL"],
    "assessments.assessment_type": ["feedback", "expectation"],
    "assessments.source_type": ["LLM_JUDGE", "HUMAN", "CODE"],
    "inputs.source_type": ["DATASET"],
    "inputs.destination_type": ["RUN"],
    "entity_associations.source_type": ["trace"],
    "entity_associations.destination_type": ["run"],
    "datasets.dataset_source_type": ["s3", "local"],
    "datasets.digest": ["d1g3st00", "d1g3st01"],
    "webhooks.status": ["ACTIVE", "DISABLED"],
    "webhook_events.entity": ["registered_model", "model_version_tag", "model_version_alias"],
    "webhook_events.action": ["created", "set", "deleted"],   # valid pairs with the entities above
    "jobs.status": [2, 0, 1, 3, 4, 5, 6],                # JobStatus ints: SUCCEEDED, PENDING, ...
    "issues.status": ["pending", "resolved", "rejected"],
    "issues.severity": ["high", "low", "medium", "not_an_issue"],
    "label_schemas.type": ["feedback", "expectation"],
    "label_schemas.input_type": ["categorical", "numeric", "pass_fail", "text"],
    "review_queues.queue_type": ["user", "custom"],
    "review_queue_items.item_type": ["trace"],
    "review_queue_items.status": ["complete", "pending", "declined"],
    "budget_policies.budget_unit": ["USD"],
    "budget_policies.duration_unit": ["DAYS", "MONTHS", "HOURS", "WEEKS", "MINUTES"],
    "budget_policies.target_scope": ["GLOBAL", "WORKSPACE", "ENDPOINT", "USER"],
    "budget_policies.budget_action": ["ALERT", "REJECT"],
    "guardrails.stage": ["BEFORE", "AFTER"],
    "guardrails.action": ["VALIDATION", "SANITIZATION"],
    "endpoint_model_mappings.linkage_type": ["PRIMARY", "FALLBACK"],
    "endpoints.routing_strategy": ["REQUEST_BASED_TRAFFIC_SPLIT"],
    "endpoint_bindings.resource_type": ["scorer"],
    "mcp_server_versions.status": ["active", "draft", "deprecated", "deleted"],
    "mcp_access_endpoints.transport_type": ["streamable-http", "sse"],
    "model_definitions.provider": ["openai", "anthropic"],
    "secrets.provider": ["openai", "anthropic"],
    "*.grouping_set": ["global", "status"],
    "sql_trace_metric_daily_rollups.trace_status": ["OK", "ERROR"],
    "sql_trace_rollup_rebuild_queue.rollup_family": ["trace_metric", "span_cost", "assessment"],
    "evaluation_dataset_records.source_type": ["HUMAN", "TRACE", "CODE", "DOCUMENT"],
    "workspaces.trace_archival_retention": ["30d", "7d"],
    "trace_metrics.key": ["input_tokens", "total_cost"],
    "span_metrics.key": ["input_tokens", "latency_ms"],
    "sql_trace_metric_daily_rollups.metric_name": ["latency", "trace_count"],
    "sql_span_cost_daily_rollups.metric_name": ["total_cost", "input_cost"],
    "sql_assessment_daily_rollups.metric_name": ["assessment_value", "assessment_count"],
}

# Integer columns by meaning (name -> rule); anything else is a plain counter.
_NS_COLS = re.compile(r"(_unix_nano|_ns)$")
_MS_COLS = re.compile(r"(time|timestamp|_ms|_at)$|^(created|updated|timestamp)")


def _hex(*parts, n: int = 32) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:n]


def _uuid36(*parts) -> str:
    h = _hex(*parts)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


# --------------------------------------------------------------------------- JSON content
def _span_content(row: dict, i: int) -> str:
    """spans.content as MLflow's SQL store writes it (an OTel-shaped span dict)."""
    tid = row.get("trace_id") or "tr-0"
    sid = row.get("span_id") or "0" * 16
    b64 = lambda s, n: base64.b64encode(bytes.fromhex(_hex(s, n=2 * n))).decode()  # noqa: E731
    attrs = {
        "mlflow.traceRequestId": json.dumps(tid),
        "mlflow.spanType": json.dumps(row.get("type") or "LLM"),
        "mlflow.spanInputs": json.dumps({"question": f"what is {UNI}?"}, ensure_ascii=False),
        "mlflow.spanOutputs": json.dumps({"answer": f"答え {i} ✅"}, ensure_ascii=False),
    }
    if i % 2 == 0:
        attrs.update({
            "mlflow.chat.tokenUsage": json.dumps({"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}),
            "mlflow.llm.cost": json.dumps({"input_cost": 0.25, "output_cost": 0.5, "total_cost": 0.75}),
            "mlflow.llm.model": json.dumps("gpt-4o-mini"),
            "mlflow.llm.provider": json.dumps("openai"),
        })
    return json.dumps({
        "trace_id": b64(tid, 16), "span_id": b64(sid, 8),
        "parent_span_id": None if row.get("parent_span_id") is None else b64(row["parent_span_id"], 8),
        "name": row.get("name") or f"span {i}",
        "start_time_unix_nano": row.get("start_time_unix_nano"),
        "end_time_unix_nano": row.get("end_time_unix_nano"),
        "events": [],
        "status": {"code": f"STATUS_CODE_{row.get('status') or 'OK'}", "message": ""},
        "attributes": attrs, "links": [],
    }, ensure_ascii=False)


def _assessment_value(row: dict, i: int) -> str:
    if row.get("assessment_type") == "expectation":
        return json.dumps({"answer": f"期待 {i} 🎯"}, ensure_ascii=False)
    return json.dumps([True, 0.75, "good 👍"][i % 3], ensure_ascii=False)


def _label_input_config(row: dict, i: int) -> str:
    kind = row.get("input_type")
    if kind == "categorical":
        return json.dumps({"options": ["良い", "bad 👎"], "multi_select": False}, ensure_ascii=False)
    if kind == "numeric":
        return json.dumps({"min_value": 0.0, "max_value": 5.0})
    if kind == "pass_fail":
        return json.dumps({"positive_label": "pass", "negative_label": "fail"})
    return json.dumps({"max_length": 200})


# TEXT columns MLflow reads with json.loads: "table.column" -> fn(row, i) -> JSON text (computed
# after the rest of the row, which they may use).
JSON_TEXT = {
    "spans.content": _span_content,
    "assessments.value": _assessment_value,
    "assessments.error": lambda r, i: json.dumps({"error_code": "TIMEOUT", "error_message": f"too slow {UNI}"},
                                                 ensure_ascii=False),
    "assessments.assessment_metadata": lambda r, i: json.dumps({"reviewer": f"レビュー {i}", "n": str(i)},
                                                               ensure_ascii=False),
    "assessments.overrides": lambda r, i: None,   # an assessment id; none to point at
    "assessments.span_id": lambda r, i: None,
    "datasets.dataset_source": lambda r, i: json.dumps({"uri": f"s3://bucket/data-{i}.csv"}),
    "datasets.dataset_schema": lambda r, i: json.dumps(
        {"mlflow_colspec": [{"type": "long", "name": "x", "required": True},
                            {"type": "string", "name": "名前", "required": True}]}, ensure_ascii=False),
    "datasets.dataset_profile": lambda r, i: json.dumps({"num_rows": 3 + i, "num_elements": 6 + 2 * i}),
    "issues.root_causes": lambda r, i: json.dumps([f"cause {i} 原因"], ensure_ascii=False),
    "issues.categories": lambda r, i: json.dumps(["quality", "安全"], ensure_ascii=False),
    "secrets.masked_value": lambda r, i: json.dumps({"api_key": f"sk-...{i:04d}"}),
    "secrets.auth_config": lambda r, i: json.dumps({"auth_type": "api_key"}),
    "endpoints.fallback_config_json": lambda r, i: json.dumps({"strategy": "SEQUENTIAL", "max_attempts": 2}),
    "label_schemas.input_config": _label_input_config,
    "jobs.params": lambda r, i: json.dumps({"experiment_id": "1", "limit": 10 + i}),
    "jobs.result": lambda r, i: json.dumps({"ok": True, "message": f"done {UNI}"}, ensure_ascii=False),
    "scorer_versions.serialized_scorer": lambda r, i: json.dumps(
        {"name": f"scorer_{i}", "builtin_scorer_class": "RelevanceToQuery", "mlflow_version": "3.17.2"}),
    "evaluation_datasets.schema": lambda r, i: json.dumps({"inputs": {"question": "string"}}),
    "evaluation_datasets.profile": lambda r, i: json.dumps({"num_records": 2}),
    "evaluation_dataset_records.input_hash": lambda r, i: _hex("input", i, n=64),
    "online_scoring_configs.filter_string": lambda r, i: "attributes.status = 'OK'",
    # not JSON, but also decided from the rest of the row:
    "spans.parent_span_id": lambda r, i: None,     # root spans (a parent would have to exist)
    "metrics.value": lambda r, i: 0.0 if r.get("is_nan") else _FLOATS[i % len(_FLOATS)],
    "latest_metrics.value": lambda r, i: 0.0 if r.get("is_nan") else _FLOATS[i % len(_FLOATS)],
}
# Columns MLflow's ORM declares NOT NULL although one dialect's migrated schema lets them be NULL
# (mlflow-schema.md section 4: jobs.job_name is nullable on MySQL only). MLflow never writes NULL
# there, and a NULL could not move to the other engines.
ORM_NOT_NULL = {"jobs.job_name"}

ROW_FUNCS = JSON_TEXT


# --------------------------------------------------------------------------- reflected model
@dataclass
class Ref:
    cols: tuple[str, ...]
    parent: str
    pcols: tuple[str, ...]
    hard: bool


@dataclass
class TableInfo:
    table: sa.Table
    refs: list[Ref] = field(default_factory=list)
    uniques: list[tuple[str, ...]] = field(default_factory=list)
    allowed: dict[str, list[str]] = field(default_factory=dict)   # from CHECK constraints
    skip: set[str] = field(default_factory=set)                  # generated / auto-increment
    json_text: set[str] = field(default_factory=set)             # text checked by json_valid()


def _kind(col: sa.Column) -> str:
    t = col.type
    name = type(t).__name__.upper()
    if isinstance(t, sa.Boolean) or name in ("BOOLEAN", "BOOL"):
        return "bool"
    if name == "TINYINT" and getattr(t, "display_width", None) == 1:
        return "bool"
    if isinstance(t, sa.Integer):
        return "bigint" if isinstance(t, sa.BigInteger) or name == "BIGINT" else "int"
    if isinstance(t, sa.JSON) or name in ("JSON", "JSONB"):
        return "json"
    if isinstance(t, (sa.Float, sa.Numeric)) or name in ("DOUBLE", "DOUBLE_PRECISION", "REAL", "FLOAT"):
        return "float"
    if isinstance(t, sa.LargeBinary) or name in ("BYTEA", "BLOB", "LONGBLOB", "MEDIUMBLOB", "VARBINARY", "BINARY"):
        return "bytes"
    if isinstance(t, sa.DateTime):
        return "datetime"
    if isinstance(t, sa.Date):
        return "date"
    return "str"


_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_JSON_VALID = re.compile(r"\s*json_valid\(\s*[`\"]?(\w+)[`\"]?\s*\)\s*", re.I)


def _check_literals(sqltext: str, columns: list[str]) -> tuple[str, list[str]] | None:
    """(column, allowed literals) of a CHECK constraint that is an IN-list on one column."""
    mentioned = [c for c in columns if re.search(rf"(?<![\w]){re.escape(c)}(?![\w])", sqltext)]
    values = [v.replace("''", "'") for v in _LITERAL.findall(sqltext)]
    if len(mentioned) != 1 or not values:
        return None
    return mentioned[0], values


def _engine_url(url: str) -> str:
    for plain, full in (("postgresql://", "postgresql+psycopg2://"), ("postgres://", "postgresql+psycopg2://"),
                        ("mysql://", "mysql+pymysql://"), ("mariadb://", "mysql+pymysql://"),
                        ("mariadb+pymysql://", "mysql+pymysql://")):
        if url.startswith(plain):
            url = full + url[len(plain):]
    if url.startswith("mysql+pymysql://") and "charset=" not in url:
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    return url


def _mysql_column_checks(engine) -> dict[str, list[dict]]:
    """CHECK constraints SQLAlchemy does not reflect on MySQL/MariaDB: column-level ones, such as
    the json_valid() check of MariaDB's JSON (a LONGTEXT alias)."""
    queries = [
        "SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
        "WHERE CONSTRAINT_SCHEMA = DATABASE()",                                   # MariaDB
        "SELECT tc.TABLE_NAME, cc.CONSTRAINT_NAME, cc.CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS cc "
        "JOIN information_schema.TABLE_CONSTRAINTS tc ON tc.CONSTRAINT_SCHEMA = cc.CONSTRAINT_SCHEMA "
        "AND tc.CONSTRAINT_NAME = cc.CONSTRAINT_NAME WHERE cc.CONSTRAINT_SCHEMA = DATABASE()",  # MySQL 8
    ]
    for q in queries:
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(q)).all()
        except sa.exc.DBAPIError:
            continue
        out: dict[str, list[dict]] = {}
        for table, cname, clause in rows:
            out.setdefault(table, []).append({"name": cname, "sqltext": clause})
        return out
    return {}


def reflect(engine) -> dict[str, TableInfo]:
    md = sa.MetaData()
    md.reflect(engine)
    insp = sa.inspect(engine)
    dialect = engine.dialect.name
    extra_checks = _mysql_column_checks(engine) if dialect in ("mysql", "mariadb") else {}
    infos: dict[str, TableInfo] = {}
    for name, table in md.tables.items():
        info = TableInfo(table)
        cols = [c.name for c in table.columns]
        for fk in insp.get_foreign_keys(name):
            if fk["referred_table"] in md.tables and fk["referred_table"] != name:
                info.refs.append(Ref(tuple(fk["constrained_columns"]), fk["referred_table"],
                                     tuple(fk["referred_columns"]), True))
        pk = tuple(c.name for c in table.primary_key.columns)
        if pk:
            info.uniques.append(pk)
        for uc in insp.get_unique_constraints(name):
            info.uniques.append(tuple(uc["column_names"]))
        for ix in insp.get_indexes(name):
            if ix.get("unique") and all(ix["column_names"]):
                info.uniques.append(tuple(ix["column_names"]))
        try:
            checks = insp.get_check_constraints(name)
        except NotImplementedError:
            checks = []
        checks = checks + extra_checks.get(name, [])
        for ck in checks:
            text = ck.get("sqltext") or ""
            valid = _JSON_VALID.fullmatch(text)
            if valid and valid.group(1) in cols:  # MariaDB's JSON: LONGTEXT CHECK (json_valid(col))
                info.json_text.add(valid.group(1))
                continue
            found = _check_literals(text, cols)
            if found:
                info.allowed[found[0]] = found[1]
        reflected = {c["name"]: c for c in insp.get_columns(name)}
        for c in table.columns:
            if c.computed is not None or reflected.get(c.name, {}).get("computed") \
                    or c.name in GENERATED.get(name, ()):
                info.skip.add(c.name)
        if len(pk) == 1:
            c = table.columns[pk[0]]
            auto = reflected.get(pk[0], {}).get("autoincrement")
            if _kind(c) in ("int", "bigint") and (auto is True or dialect == "sqlite"):
                info.skip.add(pk[0])
        infos[name] = info
    for name, info in infos.items():
        cols = {c.name for c in info.table.columns}
        hard_cols = {c for r in info.refs for c in r.cols}
        for table, ccols, parent, pcols in SOFT_REFS:
            if table == name and parent in infos and set(ccols) <= cols \
                    and set(pcols) <= {c.name for c in infos[parent].table.columns}:
                info.refs.append(Ref(ccols, parent, pcols, False))
        wcols, wparent, wpcols = WORKSPACE_REF
        if "workspace" in cols and "workspace" not in hard_cols and name != wparent and wparent in infos:
            info.refs.append(Ref(wcols, wparent, wpcols, False))
    return infos


def load_order(infos: dict[str, TableInfo]) -> list[str]:
    """Tables parents first (hard and soft references; soft ones give way in a cycle)."""
    def order(use_soft: bool) -> tuple[list[str], set[str]]:
        deps = {t: {r.parent for r in i.refs if (r.hard or use_soft) and r.parent != t} for t, i in infos.items()}
        done: list[str] = []
        left = set(infos)
        while True:
            ready = sorted(t for t in left if not (deps[t] & left))
            if not ready:
                return done, left
            done += ready
            left -= set(ready)
    done, left = order(True)
    if left:
        done, left = order(False)
    return done + sorted(left)


def _depth(infos, table, seen=()) -> int:
    if table in seen:
        return 0
    parents = [r.parent for r in infos[table].refs if r.hard and r.parent != table]
    return 1 + max((_depth(infos, p, seen + (table,)) for p in parents), default=0)


# --------------------------------------------------------------------------- values
def _domain(table: str, col: str, info: TableInfo) -> list | None:
    values = DOMAIN.get(f"{table}.{col}") or DOMAIN.get(f"*.{col}")
    allowed = info.allowed.get(col)
    if allowed is not None:
        if values:
            kept = [v for v in values if v in allowed]
            return kept or allowed
        return allowed
    return values


def _string(table: str, col: sa.Column, i: int) -> str:
    length = getattr(col.type, "length", None)
    name = col.name
    if name in ("user_id", "created_by", "last_updated_by", "creator", "completed_by"):
        value = f"user{i}@example.com"
    elif name.endswith(("_id", "_uuid", "uuid")) or name in ("id", "lock_key", "lease_key"):
        if table == "trace_info" or name in ("trace_id", "request_id", "item_id"):
            value = "tr-" + _hex(table, name, i)
        elif name == "model_id":
            value = "m-" + _hex(table, name, i)
        elif name == "assessment_id":
            value = "a-" + _hex(table, name, i)
        elif name == "span_id" or name == "parent_span_id":
            value = _hex(table, name, i, n=16)
        elif length is not None and length >= 36 and name not in ("run_uuid", "run_id", "source_run_id"):
            value = _uuid36(table, name, i)
        else:
            value = _hex(table, name, i)
    elif name in ("version",):
        value = f"{i + 1}.0.{i}"
    elif name in ("url", "artifact_location", "artifact_uri", "source", "storage_location",
                  "default_artifact_root", "trace_archival_location", "run_link"):
        value = f"s3://bucket/{table}/{i}/場所-🙂"
    else:
        value = f"{name} {i} {UNI}"
    if length is not None and len(value) > length:
        value = value[:length] if length > 4 else _hex(name, i, n=length)
    return value


def _int(table: str, name: str, kind: str, i: int) -> int:
    if _NS_COLS.search(name):
        base = BASE_NS + i * 1_000_000_000
        return base + 250_000_000 if "end" in name else base
    if kind == "bigint" and _MS_COLS.search(name):
        offset = 500 if any(w in name for w in ("end", "last", "update", "completed", "expires")) else 0
        return BASE_MS + i * 1000 + offset
    if name in ("step", "metric_step", "execution_order", "fallback_order", "retry_count"):
        return i
    if "version" in name or name in ("kek_version", "duration_value"):
        return i + 1
    if name == "ttl_seconds":
        return 60 + i
    if name == "execution_time_ms":
        return 250 + i
    if name.endswith(("_count", "_tokens")):
        return 10 + i
    if name == "db_payload_generation":
        return 1
    if kind == "bigint":
        return 5_000_000_000 + i          # does not fit 32 bits
    return 42 + i


_FLOATS = [0.5, -2.25, 1e-3, 3.0]


def _float(name: str, i: int) -> float:
    if name in ("sample_rate", "weight"):
        return [0.25, 1.0][i % 2]
    if name.endswith("_cost") or name in ("budget_amount",):
        return [0.75, 12.5][i % 2]
    return _FLOATS[i % len(_FLOATS)]


def _json_value(table: str, name: str, i: int):
    if name in ("tools",):
        return [{"name": f"search_{i}", "description": f"検索 {UNI}"}]
    if name == "inputs":
        return {"question": f"what is {i}? {UNI}"}
    if name == "expectations":
        return {"expected_response": f"answer {i} ✅"}
    return {"table": table, "column": name, "i": i, "text": UNI, "x": 1.5, "list": [1, 2]}


def _value(table: str, info: TableInfo, col: sa.Column, i: int, row: dict):
    name = col.name
    key = f"{table}.{name}"
    if key in JSON_TEXT:
        return JSON_TEXT[key](row, i)
    values = _domain(table, name, info)
    if values:
        return values[i % len(values)]
    kind = _kind(col)
    if name in info.json_text:
        return json.dumps(_json_value(table, name, i), ensure_ascii=False)
    if kind == "bool":
        return i % 2 == 0
    if kind in ("int", "bigint"):
        return _int(table, name, kind, i)
    if kind == "float":
        return _float(name, i)
    if kind == "json":
        return _json_value(table, name, i)
    if kind == "bytes":
        return bytes([i, 0, 255, 128]) + f"secret {i} 🔑".encode()
    if kind == "date":
        return dt.date(2024, 1, 1) + dt.timedelta(days=i)
    if kind == "datetime":
        return dt.datetime(2024, 1, 1, 12, 0, 0) + dt.timedelta(hours=i)
    return _string(table, col, i)


# --------------------------------------------------------------------------- filling
class Filler:
    def __init__(self, engine, infos: dict[str, TableInfo], rows_per_table: int):
        self.engine = engine
        self.infos = infos
        self.rows_per_table = rows_per_table
        self._parents: dict[str, list[dict]] = {}
        self.depth = {t: _depth(infos, t) for t in infos}

    def parent_rows(self, table: str) -> list[dict]:
        if table not in self._parents:
            t = self.infos[table].table
            order = list(t.primary_key.columns) or list(t.columns)
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(t).order_by(*order).limit(MAX_PARENTS)).mappings().all()
            self._parents[table] = [dict(r) for r in rows]
        return self._parents[table]

    def count(self, table: str) -> int:
        t = self.infos[table].table
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()

    def _refs(self, table: str, use_soft: bool) -> list[Ref]:
        refs = [r for r in self.infos[table].refs if r.hard or use_soft]
        return sorted(refs, key=lambda r: (-self.depth[r.parent], not r.hard, r.parent, r.cols))

    def candidate(self, table: str, i: int, k: int, use_soft: bool) -> dict | None:
        """Row i of `table`, using the k-th combination of parent rows (mixed radix)."""
        info = self.infos[table]
        cols = {c.name for c in info.table.columns}
        assigned: dict[str, tuple[object, str]] = {}   # column -> (value, hard|soft|inherit)
        divisor = 1
        for ref in self._refs(table, use_soft):
            options = []
            for p in self.parent_rows(ref.parent):
                vals = tuple(p[c] for c in ref.pcols)
                if any(v is None for v in vals):
                    continue
                if any(c in assigned and assigned[c][1] == "hard" and assigned[c][0] != v
                       for c, v in zip(ref.cols, vals)):
                    continue
                options.append((vals, p))
            preferred = [o for o in options if all(assigned.get(c, (v,))[0] == v for c, v in zip(ref.cols, o[0]))]
            options = preferred or options
            if not options:
                if ref.hard:
                    nullable = all(info.table.columns[c].nullable for c in ref.cols)
                    if not nullable:
                        return None
                    for c in ref.cols:
                        assigned[c] = (None, "hard")
                continue
            vals, prow = options[(k // divisor) % len(options)]
            divisor *= len(options)
            strength = "hard" if ref.hard else "soft"
            for c, v in zip(ref.cols, vals):
                if c not in assigned or assigned[c][1] != "hard":
                    assigned[c] = (v, strength)
            for c in INHERIT:
                if c in cols and c not in ref.cols and c in prow and prow[c] is not None and c not in assigned:
                    assigned[c] = (prow[c], "inherit")
        row: dict = {}
        key_cols = {c for u in info.uniques for c in u} | {c for r in info.refs for c in r.cols}
        sparse = i % 2 == 1
        later = []
        for col in info.table.columns:
            name = col.name
            if name in info.skip:
                continue
            if name in assigned:
                row[name] = assigned[name][0]
                continue
            if sparse and col.nullable and name not in key_cols and f"{table}.{name}" not in ORM_NOT_NULL:
                row[name] = None
                continue
            if f"{table}.{name}" in ROW_FUNCS:
                later.append(col)
                continue
            row[name] = _value(table, info, col, i, row)
        for col in later:  # JSON built from the rest of the row (span content, ...)
            row[col.name] = _value(table, info, col, i, row)
            if row[col.name] is None and not col.nullable:
                row[col.name] = "{}"
        return row

    def make_rows(self, table: str) -> list[dict]:
        info = self.infos[table]
        rows: list[dict] = []
        seen: set = set()

        def unique_keys(row):
            out = []
            for u in info.uniques:
                vals = tuple(row.get(c) for c in u)
                if all(v is not None for v in vals) and not any(c in info.skip for c in u):
                    out.append((u, vals))
            return out

        for i in range(self.rows_per_table):
            made = None
            for use_soft in (True, False):
                for attempt in range(MAX_ATTEMPTS):
                    row = self.candidate(table, i, i + attempt, use_soft)
                    if row is None:
                        break
                    keys = unique_keys(row)
                    if not any(k in seen for k in keys):
                        made = row
                        seen.update(keys)
                        break
                if made is not None:
                    break
            if made is not None:
                rows.append(made)
        return rows

    def fill_table(self, table: str) -> int:
        rows = self.make_rows(table)
        if rows:
            with self.engine.begin() as conn:
                for row in rows:  # one statement per row: rows may differ in which columns are set
                    conn.execute(self.infos[table].table.insert().values(**row))
            self._parents.pop(table, None)
        return len(rows)


def fill(url: str, *, rows_per_table: int = 2) -> dict[str, int]:
    """Insert rows into every empty table of the MLflow database at `url` (parents first).
    Returns {table: rows inserted} for the tables that were empty."""
    engine = sa.create_engine(_engine_url(url), poolclass=sa.pool.NullPool)
    try:
        infos = reflect(engine)
        filler = Filler(engine, infos, rows_per_table)
        done: dict[str, int] = {}
        for table in load_order(infos):
            if table == "alembic_version" or filler.count(table):
                continue
            done[table] = filler.fill_table(table)
        return done
    finally:
        engine.dispose()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="SQLAlchemy URL of an MLflow database (postgresql://, mysql://, sqlite:///...)")
    parser.add_argument("--rows", type=int, default=2, help="rows per empty table (default 2)")
    args = parser.parse_args(argv)
    done = fill(args.url, rows_per_table=args.rows)
    for table, n in done.items():
        print(f"{table:40s} {n}")
    empty = [t for t, n in done.items() if n == 0]
    print(f"{sum(done.values())} rows into {len(done) - len(empty)} tables"
          + (f"; could not fill: {', '.join(empty)}" if empty else ""))
    return 1 if empty else 0


if __name__ == "__main__":
    sys.exit(main())
