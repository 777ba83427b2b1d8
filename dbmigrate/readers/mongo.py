"""Read MLflow data back out of MongoDB as SQL table rows (the way back: MongoDB -> SQL).

Two layouts:
- `tables`: the exact inverse of dbmigrate's lossless layout (fields are the columns);
- `mlflow-mongodb`: the documents the plugin reads are split back into MLflow's tables
  (embedded lists -> tag/param/latest-metric/alias rows, NaN -> value 0 + is_nan, status names ->
  codes, datasets/inputs rebuilt from runs.inputs, logged-model metrics from run_metrics). Tables a
  dbmigrate migration also copied in tables form (`mlflow_sql.<table>`) are read from that copy.

The layout and the source schema revision come from dbmigrate's marker document when there is one.
Rows are produced per table as (columns, batches of tuples), in foreign-key order.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterator

import pymongo
from pymongo.errors import ConnectionFailure, OperationFailure, ServerSelectionTimeoutError

from dbmigrate import converters as cv
from dbmigrate.readers import batched
from dbmigrate.errors import ConnectionFailed, DataError, MigrationError, SchemaError
from dbmigrate.mlflow_schema import load_rank
from dbmigrate.uri import DatabaseURI, mask_text

log = logging.getLogger(__name__)

MAX_DOUBLE = 1.7976931348623157e308
PREFIX = "mlflow_sql."
MARKER = "_dbmigrate_meta"
_NS = uuid.UUID("8a1f3c52-6d1e-4b8e-9a55-0c2f7d9e4b10")  # namespace for rebuilt dataset/input uuids


def _uuid_hex(*parts) -> str:
    return uuid.uuid5(_NS, "\x1f".join(str(p) for p in parts)).hex


class MongoSource:
    """A MongoDB database holding MLflow data, in either layout."""

    def __init__(self, uri: DatabaseURI, *, connect_timeout: int = 10):
        self.uri = uri
        self.timeout_ms = connect_timeout * 1000
        self.layout: str | None = None
        self.revision: str | None = None
        self.marker: dict | None = None
        self.notes: list[str] = []
        self.experiment_ids: dict = {}   # source experiment id (str or int) -> SQL integer id
        self.remapped: dict = {}         # the subset of experiment_ids that changed
        self.target_has_analytics = True  # MLflow 3.17+ target: trace name/session/tokens/cost are columns
        self.clamped: dict[str, int] = {}  # table -> infinite metric values clamped to +-max double

    def open(self) -> "MongoSource":
        try:
            self.client = pymongo.MongoClient(self.uri.raw, serverSelectionTimeoutMS=self.timeout_ms,
                                              connectTimeoutMS=self.timeout_ms, appname="dbmigrate")
            self.db = self.client.get_default_database()
            self.client.admin.command("ping")
        except OperationFailure as exc:
            raise ConnectionFailed(f"Source {self.uri.masked} refused the credentials: "
                                   f"{mask_text(str(exc.details.get('errmsg', exc)))}") from None
        except (ServerSelectionTimeoutError, ConnectionFailure) as exc:
            raise ConnectionFailed(f"Cannot reach source {self.uri.masked} within "
                                   f"{self.timeout_ms // 1000} s: {mask_text(str(exc).splitlines()[0])}") from None
        names = set(self.db.list_collection_names())
        self.collections = names
        self.marker = self.db[MARKER].find_one({"_id": "migration"}) if MARKER in names else None
        if self.marker:
            self.layout = self.marker.get("layout")
            self.revision = self.marker.get("source_revision")
        elif "alembic_version" in names:
            self.layout = "tables"
            doc = self.db["alembic_version"].find_one()
            self.revision = doc.get("version_num") if doc else None
        elif {"experiments", "runs"} & names:
            self.layout = "mlflow-mongodb"   # written by the mlflow-mongodb store itself
        else:
            raise SchemaError(f"The source {self.uri.masked} holds no MLflow data "
                              f"(collections: {', '.join(sorted(names)[:10]) or 'none'}); expected "
                              "the mlflow-mongodb collections or dbmigrate's tables layout")
        return self

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ planning
    def tables(self) -> list[str]:
        """SQL tables this source can produce, in load order."""
        if self.layout == "tables":
            out = [c for c in self.collections if not c.startswith("_") and not c.startswith("system.")]
        else:
            out = list(MLFLOW_TABLES)
            out += [c[len(PREFIX):] for c in self.collections if c.startswith(PREFIX)]
        return sorted(set(out), key=load_rank)

    def count(self, table: str) -> int | None:
        """Rows the table will have; None when it is only known after reading (embedded rows)."""
        coll = self._copy_of(table)
        if coll:
            return self.db[coll].estimated_document_count()
        if self.layout == "mlflow-mongodb" and table in _DIRECT:
            c, _ = _DIRECT[table]
            return self.db[c].estimated_document_count() if c in self.collections else 0
        return None

    def _copy_of(self, table: str) -> str | None:
        """The tables-form collection to read `table` from, if there is one. Tables whose rows refer
        to each other by generated uuids (datasets <- inputs <- input_tags) come all from copies
        or all rebuilt from the embedded documents, never mixed."""
        if self.layout == "tables":
            return table if table in self.collections else None
        group = next((g for g in _COPY_GROUPS if table in g), {table})
        if all(PREFIX + t in self.collections for t in group):
            return PREFIX + table
        return None

    def plan_experiment_ids(self, max_id: int) -> dict:
        """SQL ids for the experiments: numeric ids that fit stay; others (the plugin's 39-digit
        decimal strings, or ids beyond the target's INTEGER) get the next free ids, in creation
        order. The mapping is recorded for the report."""
        coll = "experiments" if self.layout == "mlflow-mongodb" else self._copy_of("experiments")
        if not coll:
            return {}
        key = "_id" if self.layout == "mlflow-mongodb" else "experiment_id"
        docs = list(self.db[coll].find({}, {key: 1, "creation_time": 1}))
        fits, rest = {}, []
        for d in docs:
            raw = d[key]
            try:
                n = int(raw)
            except (TypeError, ValueError):
                n = None
            if n is not None and 0 <= n <= max_id and str(n) == str(raw):
                fits[raw] = n
            else:
                rest.append(d)
        nxt = max(fits.values(), default=0) + 1
        for d in sorted(rest, key=lambda d: (d.get("creation_time") or 0, str(d[key]))):
            fits[d[key]] = nxt
            self.remapped[str(d[key])] = nxt
            nxt += 1
        self.experiment_ids = fits
        return self.remapped

    def exp_id(self, raw):
        if raw is None:
            return None
        if raw in self.experiment_ids:
            return self.experiment_ids[raw]
        s = str(raw)
        for k, v in self.experiment_ids.items():
            if str(k) == s:
                return v
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise DataError(f"experiment id {raw!r} refers to no experiment and is not a number",
                            column="experiment_id") from None

    # ------------------------------------------------------------------ rows
    def produce(self, table: str, batch_size: int) -> tuple[list[str], Iterator[list[tuple]]]:
        coll = self._copy_of(table)
        if coll:
            return self._table_rows(coll, table, batch_size)
        if self.layout != "mlflow-mongodb" or table not in MLFLOW_TABLES:
            return [], iter(())
        columns, gen = MLFLOW_TABLES[table]
        return columns, batched((tuple(r) for r in gen(self)), batch_size)

    def _table_rows(self, coll: str, table: str, batch_size: int):
        first = self.db[coll].find_one()
        if first is None:
            return [], iter(())
        columns = [k for k in first if k != "_id"]
        return columns, self._rows_of_collection(coll, table, columns, batch_size, None, whole=True)

    def find(self, coll: str, query=None, projection=None):
        if coll not in self.collections:
            return iter(())
        return self.db[coll].find(query or {}, projection, batch_size=5000)

    # ------------------------------------------------------------------ the Reader protocol
    # (dbmigrate.model.Reader; MongoReader below completes it with an exact count). Type tags:
    # the schema the tables-layout writer recorded in the marker (MongoTablesWriter), else
    # MLflow's own schema at the revision (mlflow_tables), never typed by hand.
    def table(self, name: str):
        from dbmigrate.model import Column, Table
        recorded = (self.marker or {}).get("schema") or {}
        if name in recorded:
            entry = recorded[name]
            return Table(name, [Column(c, t, bool(n)) for c, t, n in entry["columns"]],
                         list(entry.get("primary_key") or []))
        revision = self.revision
        if revision is None:
            from dbmigrate.sql_schema import installed_head
            revision = installed_head()  # what a SQL target of a store-written database gets
        mlflow = mlflow_tables(revision).get(name)
        if mlflow is None or name not in self.tables():
            raise SchemaError(f"No table {name!r} in the source (or in MLflow's schema at {revision}) "
                              "to take its column types from", table=name)
        if self._copy_of(name) or self.layout == "tables":
            return mlflow
        wanted = MLFLOW_TABLES[name][0]
        return Table(name, [c for c in mlflow.columns if c.name in wanted], list(mlflow.pk), mlflow.indexes)

    def rows(self, table: str, columns, batch_size: int, part=None) -> Iterator[list[tuple]]:
        """The table's rows as canonical values (BSON int64 -> int, binary -> bytes, a whole
        number in a float column -> float) in the order of `columns`. A key range `part` is
        read from tables-form collections only: rows rebuilt from embedded documents have no
        key order to cut, so one is refused (MigrationError)."""
        t = self.table(table)
        columns = list(columns)
        unknown = [c for c in columns if t.column(c) is None]
        if unknown:
            raise SchemaError(f"The source table has no column {unknown[0]!r}", table=table, column=unknown[0])
        fix = _canonical_fixes([t.column(c).type for c in columns])
        coll = self._copy_of(table)
        if coll:
            gen = self._rows_of_collection(coll, table, columns, batch_size, part,
                                           whole={c.name for c in t.columns} <= set(columns))
        elif part is not None:
            raise MigrationError(f"The {self.layout} layout cannot read {table} by key range {part!r}: "
                                 "its rows are rebuilt from embedded documents; read the whole table",
                                 table=table)
        else:
            produced, batches = self.produce(table, batch_size)
            idx = [produced.index(c) for c in columns]
            gen = ([tuple(r[i] for i in idx) for r in b] for b in batches)
        for batch in gen:
            yield [fix(r) for r in batch] if fix else batch

    def _range_query(self, part) -> dict:
        if not part:
            return {}
        column, lo, hi = part
        cond = {k: v for k, v in (("$gte", lo), ("$lt", hi)) if v is not None}
        return {column: cond} if cond else {}

    def _rows_of_collection(self, coll: str, table: str, columns: list[str], batch_size: int, part,
                            whole: bool = False):
        """Rows of a tables-form collection. `whole`: `columns` are all the table's columns, which
        is all a tables-form document holds besides its _id, so no projection is sent (a server
        applies one document by document: it halved SecantusDB's read rate, measured)."""
        remap = "experiment_id" in columns and bool(self.remapped)
        idx = columns.index("experiment_id") if remap else None
        batch = []
        projection = None if whole else {c: 1 for c in columns}
        for d in self.db[coll].find(self._range_query(part), projection, batch_size=batch_size):
            try:
                row = [d[c] for c in columns]
            except KeyError as exc:
                raise DataError(f"Document {d.get('_id')!r} of {coll} lacks field {exc.args[0]!r}; "
                                "a tables-layout document has every column", table=table,
                                column=exc.args[0]) from None
            if remap:
                row[idx] = self.exp_id(row[idx])
            batch.append(tuple(row))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def exact_count(self, table: str, part=None) -> int:
        """Exactly the rows rows(table, ..., part) yields: counted by the server for
        tables-form collections, by reading for rows rebuilt from embedded documents."""
        coll = self._copy_of(table)
        if coll:
            return self.db[coll].count_documents(self._range_query(part))
        if part is not None:
            raise MigrationError(f"The {self.layout} layout cannot count {table} by key range", table=table)
        if self.layout != "mlflow-mongodb" or table not in MLFLOW_TABLES:
            return 0
        return sum(len(b) for b in self.produce(table, 10_000)[1])


class MongoReader(MongoSource):
    """A MongoSource that is a Reader (dbmigrate.model) to the letter: `count` is exact.
    MongoSource.count keeps its own contract (an estimate, None for rows rebuilt from embedded
    documents), which the SQL end relies on (dbmigrate.ends.sql._direct)."""

    def count(self, table: str, part=None) -> int:  # noqa: D102 - the protocol's
        return self.exact_count(table, part)

    def tables(self) -> list[str]:
        """As MongoSource.tables, plus the tables the tables-layout writer recorded (an empty
        table's collection may be missing when another writer made the layout)."""
        recorded = (self.marker or {}).get("schema") or {}
        return sorted(set(super().tables()) | set(recorded), key=load_rank)


_MLFLOW_SCHEMAS: dict = {}


def mlflow_tables(revision: str) -> dict:
    """MLflow's tables at `revision` with their type tags: the schema MLflow's own migrations
    make (dbmigrate.sql_schema.create_schema, into a temporary SQLite file), reflected as any
    SQL source is; once per revision and process. Needs MLflow, as a SQL target does."""
    if revision not in _MLFLOW_SCHEMAS:
        import tempfile
        from dbmigrate.readers.sql import SqlSource
        from dbmigrate.sql_schema import create_schema
        from dbmigrate.uri import parse_uri
        with tempfile.TemporaryDirectory(prefix="dbmigrate-schema-") as d:
            url = f"sqlite:///{d}/mlflow.db"
            create_schema(url, revision)
            src = SqlSource(parse_uri(url, role="source")).open()
            try:
                _MLFLOW_SCHEMAS[revision] = src.inspect().tables
            finally:
                src.close()
    return _MLFLOW_SCHEMAS[revision]


def _canonical_fixes(tags: list[str]):
    """A function making a row's values canonical (dbmigrate.model) from what pymongo gives,
    or None when nothing can need it."""
    fixes = [(i, fn) for i, fn in ((i, _FIX.get(t)) for i, t in enumerate(tags)) if fn]
    if not fixes:
        return None

    def fix(row):
        row = list(row)
        for i, fn in fixes:
            if row[i] is not None:
                row[i] = fn(row[i])
        return tuple(row)
    return fix


def _fix_int(v):
    return int(v) if type(v) is not int and isinstance(v, int) and not isinstance(v, bool) else v


def _fix_float(v):
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _fix_bytes(v):
    return bytes(v) if isinstance(v, (bytes, bytearray, memoryview)) and type(v) is not bytes else v


_FIX = {"int": _fix_int, "float": _fix_float, "decimal": _fix_float, "bytes": _fix_bytes}


# ----------------------------------------------------------------------------- mlflow-mongodb -> rows
def _sql_metric(v):
    """A stored metric value -> SQL (value, is_nan), clamping infinities as MLflow's SQL store does."""
    if v is None:
        return 0.0, False
    v = float(v)
    if math.isnan(v):
        return 0.0, True
    if math.isinf(v):
        return (MAX_DOUBLE if v > 0 else -MAX_DOUBLE), False
    return v, False


def _experiments(src):
    for d in src.find("experiments"):
        yield (src.exp_id(d["_id"]), d.get("name"), d.get("artifact_location"), d.get("lifecycle_stage"),
               d.get("creation_time"), d.get("last_update_time"), "default")


def _experiment_tags(src):
    for d in src.find("experiments", {"tags.0": {"$exists": True}}, {"tags": 1}):
        for t in d["tags"]:
            yield (t["k"], t.get("v"), src.exp_id(d["_id"]))


_RUN_FIELDS = ("name", "source_type", "source_name", "entry_point_name", "user_id", "status", "start_time",
               "end_time", "source_version", "lifecycle_stage", "artifact_uri", "deleted_time")


def _runs(src):
    for d in src.find("runs", None, {"tags": 0, "params": 0, "metrics": 0, "inputs": 0, "outputs": 0}):
        yield (d["_id"], d.get("name"), d.get("source_type", "UNKNOWN"), d.get("source_name", ""),
               d.get("entry_point_name", ""), d.get("user_id"), d.get("status"), d.get("start_time"),
               d.get("end_time"), d.get("source_version", ""), d.get("lifecycle_stage"), d.get("artifact_uri"),
               src.exp_id(d.get("experiment_id")), d.get("deleted_time"))


def _run_children(field, row):
    def gen(src):
        for d in src.find("runs", {f"{field}.0": {"$exists": True}}, {field: 1}):
            for e in d[field]:
                yield row(d["_id"], e)
    return gen


def _count_inf(src, table, v):
    if isinstance(v, float) and math.isinf(v):
        src.clamped[table] = src.clamped.get(table, 0) + 1


def _latest_metrics(src):
    for d in src.find("runs", {"metrics.0": {"$exists": True}}, {"metrics": 1}):
        for e in d["metrics"]:
            _count_inf(src, "latest_metrics", e.get("v"))
            value, is_nan = _sql_metric(e.get("v"))
            yield (e["k"], value, e.get("timestamp"), e.get("step"), is_nan, d["_id"])


def _metrics(src):
    for d in src.find("run_metrics", None, {"model_id": 0, "dataset_name": 0, "dataset_digest": 0}):
        _count_inf(src, "metrics", d.get("v"))
        value, is_nan = _sql_metric(d.get("v"))
        yield (d["k"], value, d.get("timestamp"), d["run_id"], d.get("step"), is_nan)


def _logged_model_metrics(src):
    exp_of = {d["_id"]: d.get("experiment_id") for d in src.find("logged_models", None, {"experiment_id": 1})}
    for d in src.find("run_metrics", {"model_id": {"$ne": None}}):
        value, is_nan = _sql_metric(d.get("v"))
        yield (d["model_id"], d["k"], d.get("timestamp"), d.get("step"), value,
               src.exp_id(exp_of.get(d["model_id"])), d["run_id"], d.get("dataset_uuid"),
               d.get("dataset_name"), d.get("dataset_digest"))


def _run_inputs(src):
    """(datasets, inputs, input_tags) rows rebuilt from runs.inputs / runs.outputs."""
    datasets, inputs, tags = {}, [], []
    for d in src.find("runs", None, {"experiment_id": 1, "inputs": 1, "outputs": 1}):
        exp = src.exp_id(d.get("experiment_id"))
        ins = d.get("inputs") or {}
        for di in ins.get("datasets", []) if isinstance(ins, dict) else []:
            ds = di["dataset"]
            key = (exp, ds["name"], ds["digest"])
            if key not in datasets:
                datasets[key] = (_uuid_hex("dataset", *key), exp, ds["name"], ds["digest"],
                                 ds.get("source_type"), ds.get("source"), ds.get("schema"), ds.get("profile"))
            input_uuid = _uuid_hex("input", d["_id"], ds["name"], ds["digest"])
            inputs.append((input_uuid, "DATASET", datasets[key][0], "RUN", d["_id"], 0))
            for t in di.get("tags", []):
                tags.append((input_uuid, t["k"], t.get("v")))
        for m in ins.get("models", []) if isinstance(ins, dict) else []:
            inputs.append((_uuid_hex("model_input", d["_id"], m["model_id"]), "RUN_INPUT", d["_id"],
                           "MODEL_INPUT", m["model_id"], 0))
        for m in d.get("outputs") or []:
            inputs.append((_uuid_hex("model_output", d["_id"], m["model_id"], m.get("step", 0)), "RUN_OUTPUT",
                           d["_id"], "MODEL_OUTPUT", m["model_id"], m.get("step", 0)))
    return list(datasets.values()), inputs, tags


def _datasets(src):
    return iter(_run_inputs(src)[0])


def _inputs(src):
    seen = set()
    for r in _run_inputs(src)[1]:
        if r[1:5] not in seen:  # (source_type, source_id, destination_type, destination_id) is the key
            seen.add(r[1:5])
            yield r


def _input_tags(src):
    seen = set()
    for r in _run_inputs(src)[2]:
        if r[:2] not in seen:
            seen.add(r[:2])
            yield r


def _logged_models(src):
    for d in src.find("logged_models", None, {"tags": 0, "params": 0}):
        yield (d["_id"], src.exp_id(d.get("experiment_id")), d.get("name"), d.get("artifact_location"),
               d.get("creation_timestamp"), d.get("last_updated_timestamp"),
               cv.logged_model_status_code(d.get("status")), d.get("lifecycle_stage"), d.get("model_type"),
               d.get("source_run_id"), d.get("status_message"))


def _logged_model_kv(field):
    def gen(src):
        for d in src.find("logged_models", {f"{field}.0": {"$exists": True}}, {field: 1, "experiment_id": 1}):
            for e in d[field]:
                yield (d["_id"], src.exp_id(d.get("experiment_id")), e["k"], e.get("v"))
    return gen


def _meta_dict(d, field):
    return {e["k"]: e.get("v") for e in d.get(field) or []}


def _trace_info(src):
    for d in src.find("traces"):
        meta = _meta_dict(d, "trace_metadata")
        tags = _meta_dict(d, "tags")
        usage = cv._numeric_dict(meta.get(cv.TOKEN_USAGE)) or {}
        cost = cv._numeric_dict(meta.get(cv.TRACE_COST)) or {}
        yield (d["_id"], src.exp_id(d.get("experiment_id")), d.get("request_time"), d.get("execution_duration"),
               d.get("state"), d.get("client_request_id"), d.get("request_preview"), d.get("response_preview"),
               tags.get(cv.TRACE_NAME_TAG), meta.get(cv.TRACE_SESSION),
               usage.get("input_tokens"), usage.get("output_tokens"), usage.get("total_tokens"),
               usage.get("cache_read_input_tokens"), usage.get("cache_creation_input_tokens"),
               usage.get("cache_creation_input_tokens_above_1hr"),
               cost.get("input_cost"), cost.get("output_cost"), cost.get("total_cost"),
               d.get("db_payload_generation", 0))


def _trace_kv(field, drop):
    """trace tags / metadata rows. From MLflow 3.17 the trace name, session, token usage and cost
    live in trace_info columns, not in these tables (`drop` lists those keys)."""
    def gen(src):
        analytics = src.target_has_analytics
        for d in src.find("traces", {f"{field}.0": {"$exists": True}}, {field: 1}):
            for e in d[field]:
                if analytics and e["k"] in drop:
                    continue
                yield (e["k"], e.get("v"), d["_id"])
    return gen


def _spans(src):
    exp_of = {d["_id"]: d.get("experiment_id") for d in src.find("traces", None, {"experiment_id": 1})}
    for d in src.find("spans"):
        content = d.get("content") or {}
        attrs = content.get("attributes") or {}
        cost = cv.json_or_text(attrs.get(cv.LLM_COST)) if isinstance(attrs.get(cv.LLM_COST), str) else None
        cost = cost if isinstance(cost, dict) else {}
        model = cv._attr(content, cv.LLM_MODEL)
        provider = cv._attr(content, cv.LLM_PROVIDER)
        yield (d["trace_id"], src.exp_id(exp_of.get(d["trace_id"])), d["span_id"], d.get("parent_span_id"),
               d.get("name"), d.get("type"), d.get("status"), d.get("start_time_ns"), d.get("end_time_ns"),
               json.dumps(content, ensure_ascii=False) if content else "",
               _finite(cost.get("input_cost")), _finite(cost.get("output_cost")), _finite(cost.get("total_cost")),
               model[:500] if isinstance(model, str) else None,
               provider[:500] if isinstance(provider, str) else None)


def _finite(v):
    if v is None or isinstance(v, bool):
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _assessments(src):
    ts_of = {d["_id"]: d.get("request_time") for d in src.find("traces", None, {"request_time": 1})}
    for d in src.find("assessments"):
        row = assessment_row(d.get("content") or {})
        row["trace_id"] = d["trace_id"]
        row["experiment_id"] = src.exp_id(d.get("experiment_id"))
        row["trace_timestamp_ms"] = ts_of.get(d["trace_id"])
        yield tuple(row.get(c) for c in ASSESSMENT_COLUMNS)


ASSESSMENT_COLUMNS = ["assessment_id", "trace_id", "name", "assessment_type", "value", "error",
                      "created_timestamp", "last_updated_timestamp", "source_type", "source_id", "run_id",
                      "span_id", "rationale", "overrides", "valid", "assessment_metadata", "experiment_id",
                      "trace_timestamp_ms", "aggregate_value", "is_numeric_value"]


def assessment_row(c: dict) -> dict:
    """The inverse of converters.assessment_content: an assessments row from the stored content."""
    if "expectation" in c:
        kind, value, error = "expectation", c["expectation"].get("value"), None
    elif "feedback" in c:
        kind, value = "feedback", c["feedback"].get("value")
        error = c["feedback"].get("error")
    elif "issue" in c:
        kind, value, error = "issue", {"issue_name": c["issue"].get("issue_name")}, None
    else:
        raise DataError(f"assessment {c.get('assessment_id')!r} has no feedback, expectation or issue",
                        table="assessments")
    agg, numeric = cv.assessment_aggregate(value) if kind == "feedback" else (None, False)
    src = c.get("source") or {}
    return {"assessment_id": c.get("assessment_id"), "name": c.get("assessment_name"), "assessment_type": kind,
            "value": json.dumps(value), "error": json.dumps(error) if error is not None else None,
            "created_timestamp": _proto_ms(c.get("create_time")),
            "last_updated_timestamp": _proto_ms(c.get("last_update_time")),
            "source_type": src.get("source_type", "SOURCE_TYPE_UNSPECIFIED"), "source_id": src.get("source_id"),
            "run_id": c.get("run_id"), "span_id": c.get("span_id"), "rationale": c.get("rationale"),
            "overrides": c.get("overrides"), "valid": bool(c.get("valid", True)),
            "assessment_metadata": json.dumps(c["metadata"]) if c.get("metadata") else None,
            "aggregate_value": agg, "is_numeric_value": numeric}


def _proto_ms(text):
    """'2026-11-22T19:33:14.215Z' -> epoch milliseconds."""
    if text is None:
        return None
    from datetime import datetime, timezone
    base, _, frac = text.rstrip("Z").partition(".")
    dt = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    ms = int((frac + "000")[:3]) if frac else 0
    return int(dt.timestamp()) * 1000 + ms


def _entity_associations(src):
    """Trace -> run links (beyond the trace's own mlflow.sourceRun) and trace -> prompt links."""
    for d in src.find("traces", None, {"run_ids": 1, "linked_prompts": 1, "trace_metadata": 1}):
        source_run = _meta_dict(d, "trace_metadata").get(cv.SOURCE_RUN)
        for run_id in d.get("run_ids") or []:
            if run_id != source_run:
                yield (_uuid_hex("assoc", d["_id"], "run", run_id), "trace", d["_id"], "run", run_id, None)
        for p in d.get("linked_prompts") or []:
            dest = f"{p['name']}/{p['version']}"
            yield (_uuid_hex("assoc", d["_id"], "prompt_version", dest), "trace", d["_id"], "prompt_version",
                   dest, None)


def _registered_models(src):
    for d in src.find("registered_models"):
        yield (d["name"], d.get("creation_timestamp"), d.get("last_updated_timestamp"), d.get("description"),
               "default")


def _registered_model_tags(src):
    for d in src.find("registered_models", {"tags.0": {"$exists": True}}, {"name": 1, "tags": 1}):
        for t in d["tags"]:
            yield (t["key"], t.get("value"), d["name"], "default")


def _aliases(src):
    for d in src.find("registered_models", {"aliases.0": {"$exists": True}}, {"name": 1, "aliases": 1}):
        for a in d["aliases"]:
            yield (a["alias"], int(a["version"]), d["name"], "default")


def _model_names(src):
    return {d["_id"]: d["name"] for d in src.find("registered_models", None, {"name": 1})}


def _model_versions(src):
    names = _model_names(src)
    for d in src.find("model_versions", None, {"tags": 0}):
        yield (names.get(d["registered_model_id"]), d["version"], d.get("creation_timestamp"),
               d.get("last_updated_timestamp"), d.get("description"), d.get("user_id"), d.get("current_stage"),
               d.get("source"), d.get("run_id"), d.get("status"), d.get("status_message"), d.get("run_link"),
               d.get("storage_location"), "default")


def _model_version_tags(src):
    names = _model_names(src)
    for d in src.find("model_versions", {"tags.0": {"$exists": True}}, {"registered_model_id": 1, "version": 1,
                                                                      "tags": 1}):
        for t in d["tags"]:
            yield (t["key"], t.get("value"), names.get(d["registered_model_id"]), d["version"], "default")


_TRACE_ANALYTIC_META = {cv.TRACE_SESSION, cv.TOKEN_USAGE, cv.TRACE_COST}

MLFLOW_TABLES = {
    "experiments": (["experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time",
                     "last_update_time", "workspace"], _experiments),
    "experiment_tags": (["key", "value", "experiment_id"], _experiment_tags),
    "runs": (["run_uuid", *_RUN_FIELDS[:11], "experiment_id", "deleted_time"], _runs),
    "tags": (["run_uuid", "key", "value"], _run_children("tags", lambda r, e: (r, e["k"], e.get("v")))),
    "params": (["run_uuid", "key", "value"], _run_children("params", lambda r, e: (r, e["k"], e.get("v")))),
    "metrics": (["key", "value", "timestamp", "run_uuid", "step", "is_nan"], _metrics),
    "latest_metrics": (["key", "value", "timestamp", "step", "is_nan", "run_uuid"], _latest_metrics),
    "datasets": (["dataset_uuid", "experiment_id", "name", "digest", "dataset_source_type", "dataset_source",
                  "dataset_schema", "dataset_profile"], _datasets),
    "inputs": (["input_uuid", "source_type", "source_id", "destination_type", "destination_id", "step"], _inputs),
    "input_tags": (["input_uuid", "name", "value"], _input_tags),
    "logged_models": (["model_id", "experiment_id", "name", "artifact_location", "creation_timestamp_ms",
                       "last_updated_timestamp_ms", "status", "lifecycle_stage", "model_type", "source_run_id",
                       "status_message"], _logged_models),
    "logged_model_params": (["model_id", "experiment_id", "param_key", "param_value"], _logged_model_kv("params")),
    "logged_model_tags": (["model_id", "experiment_id", "tag_key", "tag_value"], _logged_model_kv("tags")),
    "logged_model_metrics": (["model_id", "metric_name", "metric_timestamp_ms", "metric_step", "metric_value",
                              "experiment_id", "run_id", "dataset_uuid", "dataset_name", "dataset_digest"],
                             _logged_model_metrics),
    "trace_info": (["request_id", "experiment_id", "timestamp_ms", "execution_time_ms", "status",
                    "client_request_id", "request_preview", "response_preview", "trace_name", "session_id",
                    "input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens",
                    "cache_creation_input_tokens", "cache_creation_input_tokens_above_1hr", "input_cost",
                    "output_cost", "total_cost", "db_payload_generation"], _trace_info),
    "trace_tags": (["key", "value", "request_id"], _trace_kv("tags", {cv.TRACE_NAME_TAG})),
    "trace_request_metadata": (["key", "value", "request_id"], _trace_kv("trace_metadata", _TRACE_ANALYTIC_META)),
    "spans": (["trace_id", "experiment_id", "span_id", "parent_span_id", "name", "type", "status",
               "start_time_unix_nano", "end_time_unix_nano", "content", "input_cost", "output_cost",
               "total_cost", "model_name", "model_provider"], _spans),
    "assessments": (ASSESSMENT_COLUMNS, _assessments),
    "entity_associations": (["association_id", "source_type", "source_id", "destination_type",
                             "destination_id", "created_time"], _entity_associations),
    "registered_models": (["name", "creation_time", "last_updated_time", "description", "workspace"],
                          _registered_models),
    "registered_model_tags": (["key", "value", "name", "workspace"], _registered_model_tags),
    "model_versions": (["name", "version", "creation_time", "last_updated_time", "description", "user_id",
                        "current_stage", "source", "run_id", "status", "status_message", "run_link",
                        "storage_location", "workspace"], _model_versions),
    "model_version_tags": (["key", "value", "name", "version", "workspace"], _model_version_tags),
    "registered_model_aliases": (["alias", "version", "name", "workspace"], _aliases),
}

_COPY_GROUPS = [{"datasets", "inputs", "input_tags"}]

# Tables whose rows are exactly one document each (their counts are known up front).
_DIRECT = {"experiments": ("experiments", None), "runs": ("runs", None), "metrics": ("run_metrics", None),
           "logged_models": ("logged_models", None), "trace_info": ("traces", None), "spans": ("spans", None),
           "assessments": ("assessments", None), "registered_models": ("registered_models", None),
           "model_versions": ("model_versions", None)}
