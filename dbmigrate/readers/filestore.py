"""Read an MLflow FileStore (an `mlruns` directory) as the rows of MLflow's SQL tables.

The rows are what MLflow's own SqlAlchemyStore holds for the same entities at one schema revision
(`FileStoreSource.revision`: the head of MLflow RELEASE, taken from dbmigrate's revision data), so
any SQL target gets them unchanged and MLflow answers from it as it answered from the files.
The layout (MLflow 2.x and 3.x; see mlflow/store/tracking/file_store.py and
mlflow/store/model_registry/file_store.py):

    <root>/<exp id>/meta.yaml, tags/<key>                      experiments, experiment_tags
    <root>/.trash/<exp id>/...                                 deleted experiments, same layout
    <exp>/<run uuid>/meta.yaml, params/, tags/, metrics/<key>  runs, params, tags, metrics,
                                                               latest_metrics
    <exp>/datasets/<id>/meta.yaml, <run>/inputs/<id>/meta.yaml datasets, inputs, input_tags
    <run>/outputs/<model id>/meta.yaml                         inputs (RUN_OUTPUT -> MODEL_OUTPUT)
    <exp>/traces/<id>/trace_info.yaml, tags/, request_metadata/, assessments/<id>.yaml
                                                               trace_info, trace_tags,
                                                               trace_request_metadata, assessments
    <exp>/models/<model id>/meta.yaml, params/, tags/, metrics/  logged_models and children
    <root>/models/<name>/meta.yaml, tags/, aliases/, version-<n>/meta.yaml, version-<n>/tags/
                                                               the model registry (prompts too)

How the files become rows, where MLflow's SQL store differs from the files:
- metrics: NaN -> value 0.0 with is_nan, +-inf -> +-1.7976931348623157e308 (counted in
  `clamped`); a line repeated in a file (same timestamp, step and value) is one row, as the SQL
  store keeps it (its primary key); latest_metrics is the max of (step, timestamp, value) per key.
- run status / source type are stored as enum numbers in meta.yaml; the table holds their names.
- dataset_uuid and input_uuid are the FileStore's own ids (md5 hex of name+digest, of dataset+run);
  an output link, which has none, gets a uuid5 of (run, model) so every read gives the same id.
- trace V2 (request_id, timestamp_ms) and V3 (trace_id, request_time) files both; from MLflow 3.17
  the trace name, session id, token usage and cost live in trace_info columns, not in tags/metadata
  rows (`target_has_analytics`, True by default).
- trace spans stay where the FileStore keeps them (the trace's artifacts, which the copied
  `mlflow.artifactLocation` tag points at); the spans table is not filled.

Files are only read; the directory must not change while it is read. Every file is streamed
(metric files line by line), so memory holds a batch. A file MLflow could not parse either is a
DataError naming the file (and the line, for metric files and YAML).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

import yaml

from dbmigrate.converters import assessment_aggregate, token_count
from dbmigrate.readers import batched
from dbmigrate.errors import ConfigError, DataError, SchemaError
from dbmigrate.mlflow_schema import RELEASE_HEAD, load_rank
from dbmigrate.model import Column, Part, Table

log = logging.getLogger(__name__)

RELEASE = "3.17.2"          # the MLflow release whose SQL schema the rows follow
MAX_DOUBLE = 1.7976931348623157e308
TRASH, META, MODELS = ".trash", "meta.yaml", "models"
_RESERVED = {"tags", "datasets", "traces", "models", TRASH}
_NS = uuid.UUID("2f1d7a64-3c1b-4f0e-9d52-7b0c9e8a1f35")  # uuid5 namespace of output links
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# mlflow.entities: RunStatus, SourceType, LoggedModelStatus (numbers as the files store them)
RUN_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
SOURCE_TYPE = {1: "NOTEBOOK", 2: "JOB", 3: "PROJECT", 4: "LOCAL", 1000: "UNKNOWN"}
LOGGED_MODEL_STATUS = {"LOGGED_MODEL_STATUS_UNSPECIFIED": 0, "UNSPECIFIED": 0, "PENDING": 1,
                       "LOGGED_MODEL_PENDING": 1, "READY": 2, "LOGGED_MODEL_READY": 2, "FAILED": 3,
                       "LOGGED_MODEL_UPLOAD_FAILED": 3}
# mlflow.tracing.constant / mlflow.store.tracking.utils.trace_analytics
TRACE_NAME, SESSION, TOKEN_USAGE, COST = ("mlflow.traceName", "mlflow.trace.session",
                                          "mlflow.trace.tokenUsage", "mlflow.trace.cost")
MAX_TRACE_NAME, MAX_SESSION = 4096, 250
TOKEN_COLUMNS = ["input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens",
                 "cache_creation_input_tokens", "cache_creation_input_tokens_above_1hr"]
COST_COLUMNS = ["input_cost", "output_cost", "total_cost"]


def _t(cols: str, pk: str) -> tuple[list[tuple[str, str, bool]], list[str]]:
    """'name:type[?]' items (? = nullable) -> columns; pk: space-separated."""
    out = []
    for item in cols.split():
        name, typ = item.split(":")
        out.append((name, typ.rstrip("?"), typ.endswith("?")))
    return out, pk.split()


# The columns of MLflow's tables at RELEASE's head, as this reader fills them (checked against a
# schema MLflow made, in tests/test_filestore_reader.py).
_SPEC = {
    "experiments": _t("experiment_id:int name:str artifact_location:str? lifecycle_stage:str? "
                      "creation_time:int? last_update_time:int? workspace:str", "experiment_id"),
    "experiment_tags": _t("key:str value:str? experiment_id:int", "key experiment_id"),
    "runs": _t("run_uuid:str name:str? source_type:str? source_name:str? entry_point_name:str? "
               "user_id:str? status:str? start_time:int? end_time:int? source_version:str? "
               "lifecycle_stage:str? artifact_uri:str? experiment_id:int? deleted_time:int?", "run_uuid"),
    "params": _t("key:str value:str run_uuid:str", "key run_uuid"),
    "tags": _t("key:str value:str? run_uuid:str", "key run_uuid"),
    "metrics": _t("key:str value:float timestamp:int run_uuid:str step:int is_nan:bool",
                  "key timestamp step run_uuid value is_nan"),
    "latest_metrics": _t("key:str value:float timestamp:int? step:int is_nan:bool run_uuid:str",
                         "key run_uuid"),
    "datasets": _t("dataset_uuid:str experiment_id:int name:str digest:str dataset_source_type:str "
                   "dataset_source:str dataset_schema:str? dataset_profile:str?", "experiment_id name digest"),
    "inputs": _t("input_uuid:str source_type:str source_id:str destination_type:str destination_id:str "
                 "step:int", "source_type source_id destination_type destination_id"),
    "input_tags": _t("input_uuid:str name:str value:str", "input_uuid name"),
    "logged_models": _t("model_id:str experiment_id:int name:str artifact_location:str "
                        "creation_timestamp_ms:int last_updated_timestamp_ms:int status:int "
                        "lifecycle_stage:str? model_type:str? source_run_id:str? status_message:str?",
                        "model_id"),
    "logged_model_params": _t("model_id:str experiment_id:int param_key:str param_value:str",
                              "model_id param_key"),
    "logged_model_tags": _t("model_id:str experiment_id:int tag_key:str tag_value:str", "model_id tag_key"),
    "logged_model_metrics": _t("model_id:str metric_name:str metric_timestamp_ms:int metric_step:int "
                               "metric_value:float? experiment_id:int run_id:str dataset_uuid:str? "
                               "dataset_name:str? dataset_digest:str?",
                               "model_id metric_name metric_timestamp_ms metric_step run_id"),
    "trace_info": _t("request_id:str experiment_id:int timestamp_ms:int execution_time_ms:int? status:str "
                     "client_request_id:str? request_preview:str? response_preview:str? "
                     "db_payload_generation:int trace_name:str? session_id:str? "
                     + " ".join(f"{c}:int?" for c in TOKEN_COLUMNS) + " "
                     + " ".join(f"{c}:float?" for c in COST_COLUMNS), "request_id"),
    "trace_tags": _t("key:str value:str? request_id:str", "key request_id"),
    "trace_request_metadata": _t("key:str value:str? request_id:str", "key request_id"),
    "assessments": _t("assessment_id:str trace_id:str name:str assessment_type:str value:str error:str? "
                      "created_timestamp:int last_updated_timestamp:int source_type:str source_id:str? "
                      "run_id:str? span_id:str? rationale:str? overrides:str? valid:bool "
                      "assessment_metadata:str? experiment_id:int? trace_timestamp_ms:int? "
                      "aggregate_value:float? is_numeric_value:bool", "assessment_id"),
    "registered_models": _t("name:str creation_time:int? last_updated_time:int? description:str? "
                            "workspace:str", "workspace name"),
    "registered_model_tags": _t("key:str value:str? name:str workspace:str", "workspace key name"),
    "model_versions": _t("name:str version:int creation_time:int? last_updated_time:int? description:str? "
                         "user_id:str? current_stage:str? source:str? run_id:str? status:str? "
                         "status_message:str? run_link:str? storage_location:str? workspace:str",
                         "workspace name version"),
    "model_version_tags": _t("key:str value:str? name:str version:int workspace:str",
                             "workspace key name version"),
    "registered_model_aliases": _t("alias:str version:int name:str workspace:str", "workspace name alias"),
    "workspaces": _t("name:str description:str? default_artifact_root:str? trace_archival_location:str? "
                     "trace_archival_retention:str?", "name"),
}
# The row MLflow's migration 1b5f0d9ad7c1 (3.10) puts in every SQL store: a FileStore has no
# workspaces of its own, so its SQL copy gets exactly what `mlflow db upgrade` gives a new one.
DEFAULT_WORKSPACE_ROW = ("default", "Default workspace for legacy resources", None, None, None)
SCHEMA: dict[str, Table] = {name: Table(name, [Column(c, t, n) for c, t, n in cols], pk)
                            for name, (cols, pk) in _SPEC.items()}


# ---------------------------------------------------------------------------- file helpers
def read_yaml(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = _simple_yaml(raw)
        if data is None:  # anything beyond flat `key: scalar` lines: the YAML parser itself
            data = yaml.load(raw, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" line {mark.line + 1}" if mark else ""
        raise DataError(f"{path}{line} is not valid YAML: {exc.problem or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path} cannot be read: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DataError(f"{path} holds a YAML {type(data).__name__}, not a mapping")
    return data


# meta.yaml as MLflow writes it (yaml.safe_dump of a flat dict) is lines of `key: scalar`. PyYAML
# takes ~0.5 ms to build such a file in Python, and a store has one per run, read for every
# table of runs; these lines are read here, with PyYAML's own resolver deciding what a plain
# scalar is, and anything else (quotes with escapes, nesting, comments, floats, booleans, odd
# characters) goes to PyYAML, so the result is always what yaml.load gives.
_SIMPLE_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*): (.+)")
_SIMPLE_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_PLAIN_START = frozenset("-?:,[]{}#&*!|>'\"%@` \t")
_RESOLVER = yaml.resolver.Resolver()
_STR, _INT, _NULL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:null"
_SAFE_TEXT = re.compile(r"[\x20-\x7e\n\u00a0-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]*")


def _plain(text: str) -> str | None:
    return _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))


def _simple_yaml(raw: bytes) -> dict | None:
    """The mapping of a document of `key: scalar` lines, or None to leave it to PyYAML."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not _SAFE_TEXT.fullmatch(text):
        return None
    out: dict = {}
    for line in text.split("\n"):
        if not line:
            continue
        m = _SIMPLE_LINE.fullmatch(line)
        if m is None:
            return None
        key, v = m.groups()
        if _plain(key) != _STR:
            return None
        if v == "''":
            out[key] = ""
        elif v == "[]":
            out[key] = []
        elif v == "{}":
            out[key] = {}
        elif len(v) >= 2 and v[0] == "'" and v[-1] == "'" and "'" not in v[1:-1]:
            out[key] = v[1:-1]
        elif v[0] in _PLAIN_START or v[-1] in " \t:" or " #" in v or ": " in v or "\t" in v:
            return None
        else:
            tag = _plain(v)
            if tag == _STR:
                out[key] = v
            elif tag == _INT and _SIMPLE_INT.fullmatch(v):
                out[key] = int(v)
            elif tag == _NULL:
                out[key] = None
            else:
                return None
    return out or None


def read_text(path: str) -> str:
    """A tag/param file's whole value, as MLflow reads it (UTF-8, newlines kept as written)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc}") from None


def key_files(folder: str) -> Iterator[tuple[str, str]]:
    """(key, path) of every file under `folder`, keys with '/' for nested names, sorted (as
    os.walk finds them: a symlink to a directory is not followed)."""
    found: list[tuple[str, str]] = []

    def walk(d: str, prefix: str) -> None:
        try:
            it = os.scandir(d)
        except (FileNotFoundError, NotADirectoryError):
            return
        with it:
            for e in it:
                if e.is_dir():
                    if not e.is_symlink():
                        walk(e.path, prefix + e.name + "/")
                else:
                    found.append((prefix + e.name, e.path))
    walk(folder, "")
    found.sort()
    return iter(found)


def count_files(folder: str) -> int:
    """How many (key, path) key_files(folder) gives, without naming or sorting them."""
    try:
        it = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    n = 0
    with it:
        for e in it:
            if not e.is_dir():
                n += 1
            elif not e.is_symlink():
                n += count_files(e.path)
    return n


def key_values(folder: str) -> Iterator[tuple[str, str]]:
    for key, path in key_files(folder):
        yield key, read_text(path)


def subdirs(folder: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_dir())
    except FileNotFoundError:
        return []


def sql_metric(v: float) -> tuple[float, bool]:
    """(value, is_nan) as MLflow's SqlAlchemyStore stores a metric value."""
    if math.isnan(v):
        return 0.0, True
    if math.isinf(v):
        return (MAX_DOUBLE if v > 0 else -MAX_DOUBLE), False
    return v, False


def metric_lines(path: str, fields: tuple[int, ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a metric file, streamed; a line with another number of fields
    than `fields` allows is a DataError naming file and line."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc}") from None
    with f:
        for n, raw in enumerate(f, 1):
            try:
                parts = raw.decode("utf-8").strip().split(" ")
            except UnicodeDecodeError:
                raise DataError(f"{path} line {n} is not UTF-8 text") from None
            if len(parts) not in fields:
                raise DataError(f"{path} line {n} has {len(parts)} fields ({raw[:80]!r}); a metric line "
                                f"has {' or '.join(map(str, fields))}")
            yield n, parts


def _num(path: str, n: int, conv, text: str):
    try:
        return conv(text)
    except ValueError:
        raise DataError(f"{path} line {n}: {text[:40]!r} is not a {conv.__name__}") from None


def _line_error(path: str, n: int, raw: bytes, fields: tuple[int, ...]) -> DataError:
    """The error a metric line that cannot be read gets (the slow path's exact words)."""
    try:
        parts = raw.decode("utf-8").strip().split(" ")
    except UnicodeDecodeError:
        return DataError(f"{path} line {n} is not UTF-8 text")
    if len(parts) not in fields:
        return DataError(f"{path} line {n} has {len(parts)} fields ({raw[:80]!r}); a metric line "
                         f"has {' or '.join(map(str, fields))}")
    for conv, text in ((int, parts[0]), (float, parts[1]), (int, parts[2] if len(parts) >= 3 else "0")):
        _num(path, n, conv, text)
    return DataError(f"{path} line {n} cannot be read")


def run_metric_points(path: str) -> Iterator[tuple[int, int, float, bool]]:
    """(timestamp, step, value, is_nan) of a run's metric file, SQL values, repeated lines once.
    Lines are appended in time, so a repeat has the timestamp of the lines just before it; only
    when a file goes back in time are the earlier points re-read into a set. (The hot loop of a
    FileStore: ASCII lines are converted from bytes directly, anything else the slow way.)"""
    seen: set | None = None
    cur: set = set()
    last_ts = None
    inf, max_double = math.inf, MAX_DOUBLE
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc}") from None
    with f:
        for n, raw in enumerate(f, 1):
            if raw.isascii():  # int() and float() read ASCII bytes as they read the same text
                parts = raw.strip().split(b" ")
            else:
                try:
                    parts = raw.decode("utf-8").strip().split(" ")
                except UnicodeDecodeError:
                    raise DataError(f"{path} line {n} is not UTF-8 text") from None
            k = len(parts)
            try:
                if k == 3 or k == 5:
                    ts, v, step = int(parts[0]), float(parts[1]), int(parts[2])
                elif k == 2:
                    ts, v, step = int(parts[0]), float(parts[1]), 0
                else:
                    raise ValueError
            except ValueError:
                raise _line_error(path, n, raw, (2, 3, 5)) from None
            if v != v:
                value, is_nan = 0.0, True
            elif v == inf:
                value, is_nan = max_double, False
            elif v == -inf:
                value, is_nan = -max_double, False
            else:
                value, is_nan = v, False
            point = (ts, step, value, is_nan)
            if seen is None and last_ts is not None and ts < last_ts:
                seen = set()
                for m, p in metric_lines(path, (2, 3, 5)):
                    if m >= n:
                        break
                    seen.add((int(p[0]), int(p[2]) if len(p) >= 3 else 0, *sql_metric(float(p[1]))))
            if seen is not None:
                if point in seen:
                    continue
                seen.add(point)
            else:
                if ts != last_ts:
                    cur.clear()
                    last_ts = ts
                if point in cur:
                    continue
                cur.add(point)
            yield point


_PROTO_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def proto_ms(text, where: str) -> int | None:
    """'2026-11-29T15:11:12.822Z' (a protobuf Timestamp's JSON) -> epoch ms, as
    Timestamp.ToMilliseconds gives it; ints pass through."""
    if text is None or isinstance(text, int):
        return text
    m = _PROTO_TS.match(str(text))
    if not m:
        raise DataError(f"{where}: {text!r} is not a timestamp")
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    secs = int(base.timestamp())
    if m.group(3) != "Z":
        sign = 1 if m.group(3)[0] == "+" else -1
        secs -= sign * (int(m.group(3)[1:3]) * 3600 + int(m.group(3)[4:6]) * 60)
    nanos = int((m.group(2) or "").ljust(9, "0"))
    return secs * 1000 + nanos // 1_000_000


def _finite(v):
    if v is None or isinstance(v, bool):
        return None
    try:
        v = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def _json_object(text) -> dict:
    try:
        v = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


# ---------------------------------------------------------------------------- the reader
class FileStoreSource:
    """A Reader (dbmigrate.model) of an mlruns directory, and the source surface
    the SQL end (dbmigrate.ends.sql) asks of a non-SQL source (produce, count, tables, revision,
    plan_experiment_ids, layout, target_has_analytics, clamped, notes, close).

        src = FileStoreSource("/path/mlruns").open()     # or "file:///path/mlruns"
        columns, batches = src.produce("metrics", 10_000)
    """

    layout = "mlflow filestore"

    def __init__(self, path: str):
        if path.startswith("file://"):
            from urllib.parse import unquote, urlparse
            path = unquote(urlparse(path).path)
        self.path = os.path.abspath(path)
        self.root = self.path
        self.revision: str | None = None
        self.target_has_analytics = True  # trace name/session/tokens/cost as trace_info columns
        self.remapped: dict = {}          # experiment id -> new id (plan_experiment_ids)
        self.clamped: dict[str, int] = {}  # table -> infinite metric values clamped to +-max double
        self.notes: list[str] = []
        self._counts: dict[str, int] = {}
        self._noted: set[str] = set()
        # Listings read once (the directory must not change while it is read): experiments with
        # their meta, runs as (experiment id, run uuid, directory); latest metric rows, one per
        # metric file, from the reading that counts the metrics.
        self._exp_list: list | None = None
        self._run_list: list | None = None
        self._latest: list | None = None

    # ------------------------------------------------------------------ Reader protocol
    def open(self) -> "FileStoreSource":
        if not os.path.exists(self.path):  # as for a SQLite path that does not exist: bad configuration
            raise ConfigError(f"{self.path} does not exist: no MLflow FileStore there",
                              hint="name the mlruns directory MLflow wrote, as file:///absolute/path/mlruns")
        if not os.path.isdir(self.path):
            raise SchemaError(f"{self.path} is a file, not an MLflow FileStore (an mlruns directory)",
                              hint="a SQLite database is read as sqlite:////absolute/path.db")
        root = self.path
        if os.path.isdir(os.path.join(root, "mlruns")) and not self._looks_like_store(root):
            root = os.path.join(root, "mlruns")
        if not self._looks_like_store(root):
            raise SchemaError(f"{self.path} is not an MLflow FileStore: no experiment directories "
                              "(<id>/meta.yaml), .trash or models/ in it")
        self.root = root
        self.revision = RELEASE_HEAD[RELEASE]
        return self

    @staticmethod
    def _looks_like_store(d: str) -> bool:
        return any((n.isdigit() and os.path.isfile(os.path.join(d, n, META))) or n in (TRASH, MODELS)
                   for n in subdirs(d))

    def tables(self) -> list[str]:
        return sorted(SCHEMA, key=load_rank)

    def table(self, name: str) -> Table:
        return SCHEMA[name]

    def count(self, table: str, part: Part = None) -> int:
        if table not in SCHEMA:
            return 0
        if part is not None:
            return sum(len(b) for b in self.rows(table, [part[0]], 50_000, part))
        if table not in self._counts:
            if table == "latest_metrics":  # one row per metric file (an empty one is refused when read)
                self.count("metrics")  # the reading that counts the metrics keeps each file's latest point
                self._counts[table] = len(self._latest)
            elif table in ("params", "tags"):  # one row per file
                self._counts[table] = sum(count_files(os.path.join(d, table)) for _e, _r, d in self._runs())
            elif table == "runs":
                self._counts[table] = sum(1 for _ in self._runs())
            elif table == "metrics":  # parsed: a point repeated in a file is one row
                self._counts[table] = self._scan_metrics()
            else:
                self._counts[table] = sum(1 for _ in _GENERATORS[table](self))
        return self._counts[table]

    def _scan_metrics(self) -> int:
        """Every run's metric files read once to count their rows; the latest point of each file
        is kept (one row per file, not per point), so latest_metrics needs no second reading."""
        n, latest = 0, []
        for _e, run_uuid, d in self._runs():
            for key, path in key_files(os.path.join(d, "metrics")):
                best = None
                for ts, step, value, is_nan in run_metric_points(path):
                    n += 1
                    if best is None or (step, ts, value) > best[:3]:
                        best = (step, ts, value, is_nan)
                latest.append((key, best[2], best[1], best[0], best[3], run_uuid) if best else path)
        self._latest = latest
        return n

    def rows(self, table: str, columns: Sequence[str], batch_size: int,
             part: Part = None) -> Iterator[list[tuple]]:
        names = SCHEMA[table].column_names
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise DataError(f"No column {unknown[0]!r} in the FileStore's rows", table=table, column=unknown[0])
        idx = [names.index(c) for c in columns]
        gen = _GENERATORS[table](self)
        if part:
            k, lo, hi = names.index(part[0]), part[1], part[2]
            gen = (r for r in gen if (lo is None or r[k] >= lo) and (hi is None or r[k] < hi))
        if idx != list(range(len(names))):
            gen = (tuple(r[i] for i in idx) for r in gen)
        return batched(gen, batch_size)

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ what the SQL end asks
    def produce(self, table: str, batch_size: int) -> tuple[list[str], Iterator[list[tuple]]]:
        """(columns, batches) of a whole table; ([], empty) for a table this source has not."""
        if table not in SCHEMA:
            return [], iter(())
        columns = SCHEMA[table].column_names
        return columns, self.rows(table, columns, batch_size)

    def plan_experiment_ids(self, max_id: int) -> dict:
        """Experiment ids the target cannot hold (FileStore ids have 18-19 digits; INTEGER holds
        2**31-1) -> the next free ids after the largest that fits, in creation order (then id), as
        dbmigrate.sql_rows.sql_experiment_map does. The caller rewrites every experiment_id column
        (dbmigrate.sql_rows.IdMap); rows from produce() keep the FileStore's ids."""
        exps = [(e, (m.get("creation_time") or 0)) for e, _d, m in self._experiments()]
        fits = [e for e, _ in exps if 0 <= e <= max_id]
        nxt = max(fits, default=0) + 1
        self.remapped = {}
        for exp_id, _ in sorted((x for x in exps if not 0 <= x[0] <= max_id), key=lambda x: (x[1], x[0])):
            self.remapped[exp_id] = nxt
            nxt += 1
        if self.remapped:
            self._note("remap", "experiment ids inside values are not rewritten: artifact locations keep their "
                       "paths, and a prompt's `_mlflow_experiment_ids` tag keeps the FileStore ids")
        return self.remapped

    def _note(self, key: str, text: str) -> None:
        if key not in self._noted:
            self._noted.add(key)
            self.notes.append(text)
            log.warning("%s", text)

    # ------------------------------------------------------------------ walking the directory
    def _experiments(self) -> Iterator[tuple[int, str, dict]]:
        """(experiment id, directory, meta) of every experiment, active then deleted (.trash)."""
        if self._exp_list is None:
            self._exp_list = list(self._walk_experiments())
        return iter(self._exp_list)

    def _walk_experiments(self) -> Iterator[tuple[int, str, dict]]:
        seen: dict[int, str] = {}
        for parent in (self.root, os.path.join(self.root, TRASH)):
            for name in subdirs(parent):
                if not name.isdigit():
                    continue
                d = os.path.join(parent, name)
                path = os.path.join(d, META)
                if not os.path.isfile(path):
                    self._note(f"nometa:{d}", f"{d} has no {META}: skipped, as MLflow skips it")
                    continue
                meta = read_yaml(path)
                if str(meta.get("experiment_id")) != name:
                    self._note(f"mismatch:{d}", f"{path} names experiment {meta.get('experiment_id')!r}, not "
                               f"{name}: skipped, as MLflow ignores it")
                    continue
                exp_id = int(name)
                if exp_id in seen:
                    raise DataError(f"experiment {exp_id} is both {seen[exp_id]} and {d}", table="experiments",
                                    key=exp_id)
                seen[exp_id] = d
                yield exp_id, d, meta

    def _runs(self) -> Iterator[tuple[int, str, str]]:
        """(experiment id, run uuid, run directory) of every run."""
        if self._run_list is None:
            self._run_list = [(e, r, d) for e, r, d, _m in self._run_metas()]
        return iter(self._run_list)

    def _run_metas(self) -> Iterator[tuple[int, str, str, dict]]:
        """(experiment id, run uuid, run directory, meta) of every run, read now."""
        for exp_id, exp_dir, _ in self._experiments():
            for name in subdirs(exp_dir):
                if name in _RESERVED:
                    continue
                d = os.path.join(exp_dir, name)
                path = os.path.join(d, META)
                if not os.path.isfile(path):
                    continue  # not a run (MLflow lists only directories with a meta.yaml)
                meta = read_yaml(path)
                run_uuid = meta.get("run_uuid") or meta.get("run_id")
                if run_uuid != name:
                    self._note(f"run:{d}", f"{path} names run {run_uuid!r}, not {name}: skipped, as MLflow "
                               "ignores it")
                    continue
                yield exp_id, run_uuid, d, meta

    def _traces(self) -> Iterator[tuple[int, str, str, dict]]:
        """(experiment id, trace id, trace directory, trace_info.yaml) of every trace."""
        for exp_id, exp_dir, _ in self._experiments():
            tdir = os.path.join(exp_dir, "traces")
            for name in subdirs(tdir):
                d = os.path.join(tdir, name)
                path = os.path.join(d, "trace_info.yaml")
                if not os.path.isfile(path):
                    continue
                info = read_yaml(path)
                yield exp_id, info.get("trace_id") or info.get("request_id") or name, d, info

    def _logged_models(self) -> Iterator[tuple[int, str, str, dict]]:
        for exp_id, exp_dir, _ in self._experiments():
            mdir = os.path.join(exp_dir, MODELS)
            for name in subdirs(mdir):
                d = os.path.join(mdir, name)
                if os.path.isfile(os.path.join(d, META)):
                    meta = read_yaml(os.path.join(d, META))
                    yield exp_id, meta.get("model_id") or name, d, meta

    def _registered(self) -> Iterator[tuple[str, str, dict]]:
        mdir = os.path.join(self.root, MODELS)
        for name in subdirs(mdir):
            d = os.path.join(mdir, name)
            if os.path.isfile(os.path.join(d, META)):
                meta = read_yaml(os.path.join(d, META))
                yield meta.get("name") or name, d, meta

    def _versions(self) -> Iterator[tuple[str, str, int, str, dict]]:
        for name, d, meta in self._registered():
            ws = meta.get("workspace") or "default"
            for v in subdirs(d):
                vd = os.path.join(d, v)
                if v.startswith("version-") and os.path.isfile(os.path.join(vd, META)):
                    vm = read_yaml(os.path.join(vd, META))
                    try:
                        version = int(vm.get("version", v[len("version-"):]))
                    except (TypeError, ValueError):
                        raise DataError(f"{os.path.join(vd, META)}: version {vm.get('version')!r} is not a "
                                        "number", table="model_versions") from None
                    yield name, ws, version, vd, vm


# ---------------------------------------------------------------------------- table rows
def _experiment_rows(src):
    for exp_id, _d, m in src._experiments():
        yield (exp_id, m.get("name"), m.get("artifact_location"), m.get("lifecycle_stage") or "active",
               m.get("creation_time"), m.get("last_update_time"), m.get("workspace") or "default")


def _experiment_tags(src):
    for exp_id, d, _m in src._experiments():
        for key, value in key_values(os.path.join(d, "tags")):
            yield (key, value, exp_id)


def _enum(value, names: dict, path: str, what: str):
    if value is None or isinstance(value, str):
        return value
    if value in names:
        return names[value]
    raise DataError(f"{path}: {what} {value!r} is not one MLflow knows")


def _run_rows(src):
    for exp_id, run_uuid, d, m in src._run_metas():
        path = os.path.join(d, META)
        name = m.get("run_name")
        if name is None and os.path.isfile(os.path.join(d, "tags", "mlflow.runName")):
            name = read_text(os.path.join(d, "tags", "mlflow.runName"))  # runs of MLflow < 1.29
        yield (run_uuid, name, _enum(m.get("source_type"), SOURCE_TYPE, path, "source_type"),
               m.get("source_name"), m.get("entry_point_name"), m.get("user_id"),
               _enum(m.get("status", 1), RUN_STATUS, path, "status"), m.get("start_time"), m.get("end_time"),
               m.get("source_version"), m.get("lifecycle_stage") or "active", m.get("artifact_uri"), exp_id,
               m.get("deleted_time"))


def _run_kv(folder):
    def gen(src):
        for _e, run_uuid, d in src._runs():
            for key, value in key_values(os.path.join(d, folder)):
                yield (key, value, run_uuid)
    return gen


def _metric_rows(src):
    clamped = 0
    for _e, run_uuid, d in src._runs():
        for key, path in key_files(os.path.join(d, "metrics")):
            for ts, step, value, is_nan in run_metric_points(path):
                if abs(value) == MAX_DOUBLE:
                    clamped += 1
                yield (key, value, ts, run_uuid, step, is_nan)
    _set_clamped(src, "metrics", clamped)


def _set_clamped(src, table, n):
    if n:
        src.clamped[table] = n
    else:
        src.clamped.pop(table, None)


def _latest_metric_rows(src):
    if src._latest is not None:  # kept when the metrics were counted
        for row in src._latest:
            if isinstance(row, str):
                raise DataError(f"{row} is empty: MLflow cannot read a metric without points", table="latest_metrics")
            yield row
        return
    for _e, run_uuid, d in src._runs():
        for key, path in key_files(os.path.join(d, "metrics")):
            best = None
            for ts, step, value, is_nan in run_metric_points(path):
                cand = (step, ts, value, is_nan)
                if best is None or cand[:3] > best[:3]:
                    best = cand
            if best is None:
                raise DataError(f"{path} is empty: MLflow cannot read a metric without points",
                                table="latest_metrics")
            yield (key, best[2], best[1], best[0], best[3], run_uuid)


def _dataset_rows(src):
    for exp_id, exp_dir, _m in src._experiments():
        ddir = os.path.join(exp_dir, "datasets")
        for ds_id in subdirs(ddir):
            path = os.path.join(ddir, ds_id, META)
            if not os.path.isfile(path):
                continue
            m = read_yaml(path)
            yield (ds_id, exp_id, m.get("name"), m.get("digest"), m.get("source_type"), m.get("source"),
                   m.get("schema"), m.get("profile"))


def _run_links(src):
    """(input row, tags, input yaml path) of every run input and output, SQL form."""
    for exp_id, run_uuid, d in src._runs():
        exp_dir = os.path.dirname(d)
        idir = os.path.join(d, "inputs")
        for input_id in subdirs(idir):
            path = os.path.join(idir, input_id, META)
            if not os.path.isfile(path):
                continue
            m = read_yaml(path)
            kind, source_id = m.get("source_type"), m.get("source_id")
            if kind == "DATASET":
                if not os.path.isfile(os.path.join(exp_dir, "datasets", str(source_id), META)):
                    src._note(f"ds:{path}", f"{path} names dataset {source_id!r}, which its experiment does "
                              "not hold: left out, as MLflow shows no such input")
                    continue
                row = (input_id, "DATASET", source_id, "RUN", run_uuid, 0)
            elif kind == "MODEL":
                row = (input_id, "RUN_INPUT", run_uuid, "MODEL_INPUT", source_id, 0)
            else:
                raise DataError(f"{path}: source_type {kind!r} is neither DATASET nor MODEL", table="inputs")
            yield row, m.get("tags") or {}
        odir = os.path.join(d, "outputs")
        for model_id in subdirs(odir):
            path = os.path.join(odir, model_id, META)
            if os.path.isfile(path):
                m = read_yaml(path)
                yield (uuid.uuid5(_NS, f"{run_uuid}/{model_id}").hex, "RUN_OUTPUT", run_uuid, "MODEL_OUTPUT",
                       model_id, int(m.get("step") or 0)), {}


def _input_rows(src):
    for row, _tags in _run_links(src):
        yield row


def _input_tag_rows(src):
    for row, tags in _run_links(src):
        for k, v in tags.items():
            yield (row[0], str(k), v if isinstance(v, str) else str(v))


def _logged_model_rows(src):
    for exp_id, model_id, d, m in src._logged_models():
        status = m.get("status", 1)
        if isinstance(status, str):
            if status not in LOGGED_MODEL_STATUS:
                raise DataError(f"{os.path.join(d, META)}: status {status!r} is not one MLflow knows",
                                table="logged_models")
            status = LOGGED_MODEL_STATUS[status]
        yield (model_id, exp_id, m.get("name"), m.get("artifact_location"), m.get("creation_timestamp"),
               m.get("last_updated_timestamp"), int(status), m.get("lifecycle_stage") or "active",
               m.get("model_type"), m.get("source_run_id"), m.get("status_message"))


def _logged_model_kv(folder):
    def gen(src):
        for exp_id, model_id, d, _m in src._logged_models():
            for key, value in key_values(os.path.join(d, folder)):
                yield (model_id, exp_id, key, value)
    return gen


def _logged_model_metric_rows(src):
    clamped = 0
    for exp_id, model_id, d, _m in src._logged_models():
        for key, path in key_files(os.path.join(d, "metrics")):
            seen = set()  # the primary key; a model's metric files are small
            for n, p in metric_lines(path, (4, 6)):
                ts, step = _num(path, n, int, p[0]), _num(path, n, int, p[2])
                value, _nan = sql_metric(_num(path, n, float, p[1]))
                if (ts, step, p[3]) in seen:
                    continue
                seen.add((ts, step, p[3]))
                clamped += abs(value) == MAX_DOUBLE
                yield (model_id, key, ts, step, value, exp_id, p[3], None,
                       p[4] if len(p) == 6 else None, p[5] if len(p) == 6 else None)
    _set_clamped(src, "logged_model_metrics", clamped)


def _trace_parts(src, d):
    """(tags, metadata, analytics columns) of a trace directory, as MLflow's SQL store splits them."""
    tags = dict(key_values(os.path.join(d, "tags")))
    meta = dict(key_values(os.path.join(d, "request_metadata")))
    cols: dict = {}
    if src.target_has_analytics:
        name = tags.pop(TRACE_NAME, None)
        cols["trace_name"] = name[:MAX_TRACE_NAME] if name is not None else None
        if SESSION in meta:
            cols["session_id"] = meta.pop(SESSION)[:MAX_SESSION]
        if TOKEN_USAGE in meta:
            usage = _json_object(meta.pop(TOKEN_USAGE))
            cols.update({c: token_count(usage[c]) for c in TOKEN_COLUMNS if c in usage})
        if COST in meta:
            cost = _json_object(meta.pop(COST))
            cols.update({c: _finite(cost[c]) for c in COST_COLUMNS if c in cost})
    return tags, meta, cols


def _trace_ts(info: dict, path: str) -> int:
    if info.get("timestamp_ms") is not None:
        return int(info["timestamp_ms"])
    return proto_ms(info.get("request_time"), path) or 0


def _trace_rows(src):
    for exp_id, trace_id, d, info in src._traces():
        path = os.path.join(d, "trace_info.yaml")
        _tags, _meta, cols = _trace_parts(src, d)
        exec_ms = info.get("execution_time_ms", info.get("execution_duration_ms"))
        status = info.get("state") or info.get("status") or "STATE_UNSPECIFIED"
        if status == "UNSPECIFIED":  # TraceStatus (V2) -> TraceState (V3)
            status = "STATE_UNSPECIFIED"
        yield (trace_id, exp_id, _trace_ts(info, path), exec_ms, status, info.get("client_request_id"),
               info.get("request_preview"), info.get("response_preview"), 0, cols.get("trace_name"),
               cols.get("session_id"), *(cols.get(c) for c in TOKEN_COLUMNS),
               *(cols.get(c) for c in COST_COLUMNS))


def _trace_kv(which):
    def gen(src):
        for _e, trace_id, d, _info in src._traces():
            tags, meta, _cols = _trace_parts(src, d)
            for k, v in (tags if which == "tags" else meta).items():
                yield (k, v, trace_id)
    return gen


def _assessment_value(kind: str, body: dict, path: str):
    if "value" in body:
        return body["value"]
    ser = body.get("serialized_value")
    if ser is not None:
        fmt = ser.get("serialization_format")
        if fmt in ("JSON_FORMAT", None):
            try:
                return json.loads(ser.get("value"))
            except (TypeError, ValueError):
                raise DataError(f"{path}: the {kind}'s serialized value is not JSON") from None
        raise DataError(f"{path}: serialization format {fmt!r} is not one MLflow knows")
    return None


def _assessment_rows(src):
    for exp_id, trace_id, d, info in src._traces():
        adir = os.path.join(d, "assessments")
        if not os.path.isdir(adir):
            continue
        trace_ts = _trace_ts(info, os.path.join(d, "trace_info.yaml"))
        for fname in sorted(os.listdir(adir)):
            if not fname.endswith(".yaml"):
                continue
            path = os.path.join(adir, fname)
            a = read_yaml(path)
            error = None
            if a.get("feedback") is not None:
                kind = "feedback"
                value = _assessment_value(kind, a["feedback"], path)
                err = a["feedback"].get("error")
                if err:
                    error = json.dumps({"error_code": err.get("error_code"), "error_message": err.get("error_message"),
                                        "stack_trace": err.get("stack_trace")})
            elif a.get("expectation") is not None:
                kind = "expectation"
                value = _assessment_value(kind, a["expectation"], path)
            elif a.get("issue") is not None:
                kind, value = "issue", a["issue"]
            else:
                raise DataError(f"{path} holds no feedback, expectation or issue", table="assessments")
            source = a.get("source") or {}
            stype = source.get("source_type") or "SOURCE_TYPE_UNSPECIFIED"
            stype = {"AI_JUDGE": "LLM_JUDGE"}.get(stype, stype)
            created = proto_ms(a.get("create_time", a.get("create_time_ms")), path)
            updated = proto_ms(a.get("last_update_time", a.get("last_update_time_ms")), path)
            agg, numeric = assessment_aggregate(value)
            yield (a.get("assessment_id") or fname[:-5], a.get("trace_id") or trace_id,
                   a.get("assessment_name") or a.get("name"), kind, json.dumps(value), error, created,
                   updated if updated is not None else created, stype, source.get("source_id"), a.get("run_id"),
                   a.get("span_id"), a.get("rationale"), a.get("overrides"), bool(a.get("valid", True)),
                   json.dumps(a["metadata"]) if a.get("metadata") else None, exp_id, trace_ts, agg, numeric)


def _registered_model_rows(src):
    for name, _d, m in src._registered():
        yield (name, m.get("creation_timestamp"), m.get("last_updated_timestamp"), m.get("description"),
               m.get("workspace") or "default")


def _registered_model_tags(src):
    for name, d, m in src._registered():
        for k, v in key_values(os.path.join(d, "tags")):
            yield (k, v, name, m.get("workspace") or "default")


def _alias_rows(src):
    for name, d, m in src._registered():
        for alias, path in key_files(os.path.join(d, "aliases")):
            text = read_text(path).strip()
            if not text.isdigit():
                raise DataError(f"{path}: alias {alias!r} points at {text[:40]!r}, not a version number",
                                table="registered_model_aliases")
            yield (alias, int(text), name, m.get("workspace") or "default")


def _version_rows(src):
    for name, ws, version, _vd, m in src._versions():
        yield (name, version, m.get("creation_timestamp"), m.get("last_updated_timestamp"), m.get("description"),
               m.get("user_id"), m.get("current_stage") or "None", m.get("source"), m.get("run_id"),
               m.get("status") or "READY", m.get("status_message"), m.get("run_link"), m.get("storage_location"),
               m.get("workspace") or ws)


def _version_tags(src):
    for name, ws, version, vd, m in src._versions():
        for k, v in key_values(os.path.join(vd, "tags")):
            yield (k, v, name, version, m.get("workspace") or ws)


def _workspace_rows(src):
    yield DEFAULT_WORKSPACE_ROW
    named = {m.get("workspace") or "default" for _e, _d, m in src._experiments()}
    named |= {m.get("workspace") or "default" for _n, _d, m in src._registered()}
    for ws in sorted(named - {"default"}):
        yield (ws, None, None, None, None)  # (a FileStore that names another workspace: it exists)


_GENERATORS = {
    "workspaces": _workspace_rows,
    "experiments": _experiment_rows, "experiment_tags": _experiment_tags, "runs": _run_rows,
    "params": _run_kv("params"), "tags": _run_kv("tags"), "metrics": _metric_rows,
    "latest_metrics": _latest_metric_rows, "datasets": _dataset_rows, "inputs": _input_rows,
    "input_tags": _input_tag_rows, "logged_models": _logged_model_rows,
    "logged_model_params": _logged_model_kv("params"), "logged_model_tags": _logged_model_kv("tags"),
    "logged_model_metrics": _logged_model_metric_rows, "trace_info": _trace_rows,
    "trace_tags": _trace_kv("tags"), "trace_request_metadata": _trace_kv("metadata"),
    "assessments": _assessment_rows, "registered_models": _registered_model_rows,
    "registered_model_tags": _registered_model_tags, "model_versions": _version_rows,
    "model_version_tags": _version_tags, "registered_model_aliases": _alias_rows,
}
assert set(_GENERATORS) == set(SCHEMA)
