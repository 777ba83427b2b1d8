"""Generate an MLflow-shaped tracking database at scale on PostgreSQL, deterministic from a seed.

    python -m benchmarks.generate --pg-uri postgresql://postgres@127.0.0.1:5432/postgres \
        --database bench_1m --metrics 1000000 --runs 10000 --params 100000 --tags 50000 \
        --seed 42 [--experiments 20] [--drop-existing] [--check]

What it does:

1. Creates the database and lets MLflow itself create the schema (one
   ``MlflowClient(...).search_experiments()`` in a subprocess of the main virtualenv, which runs
   MLflow's ``_initialize_tables``: alembic head dc11669786a5, 64 tables). The schema is never
   written by hand, so the benchmark data sits in exactly the tables, types, constraints and
   indexes MLflow uses.
2. Bulk-loads generated rows with ``COPY ... FROM STDIN`` (text format) fed by generators
   through a small file-like adapter: only about one megabyte of any table is ever held in memory.
   experiments (+ experiment_tags) and runs are loaded with every constraint live. For the big
   child tables (tags, params, metrics, latest_metrics) the primary key, secondary indexes and
   foreign keys are dropped first and rebuilt from their recorded definitions after the load
   (the usual bulk-load order: it is several times faster than maintaining three B-trees and a
   foreign-key trigger per row). The rebuild re-validates every primary key and foreign key, and
   the schema signature (every constraint and index definition) is compared before and after.
   Those tables are truncated and loaded in one transaction with ``COPY ... (FREEZE)``, so later
   benchmark reads find rows already frozen and all-visible (no hint-bit writes on first read).
3. ``VACUUM (ANALYZE)`` at the end, then prints the row count of every loaded table and the
   seconds each phase took.

The data follows MLflow's rules:

* runs: run_uuid is 32 lowercase hex digits from the seeded RNG; status FINISHED / FAILED /
  RUNNING / KILLED (RUNNING runs have no end_time); ~5 % are lifecycle_stage 'deleted' with a
  deleted_time; source_type in NOTEBOOK/JOB/LOCAL/UNKNOWN/PROJECT; artifact_uri is
  ``<experiment artifact_location>/<run_uuid>/artifacts``.
* tags: every run has exactly one ``mlflow.runName`` tag equal to runs.name, plus MLflow's
  system tags (mlflow.user, mlflow.source.*, a multi-line mlflow.note.content, a JSON
  mlflow.log-model.history) and user tags; keys unique per run (primary key (key, run_uuid)).
* params: keys unique per run; values are short strings, with ~1 % long ones (up to 6000 chars).
* metrics: each run logs 1-8 keys (loss, acc, lr, ...); per (run, key) the step grows by a
  per-run stride (5 % of runs log without steps: step 0, timestamps still increasing), timestamps
  are epoch milliseconds and strictly increase per series. Values are random doubles; about
  0.1 % of rows are NaN, stored as MLflow stores them (value 0, is_nan true), and about 0.02 %
  are +/-1.7976931348623157e308 (MLflow's clamped infinities). How many metric rows each run
  gets is skewed (log-normal), like real tracking servers where a few long trainings dominate.
* latest_metrics: per (run_uuid, key) the row MLflow keeps, i.e. the greatest
  (step, timestamp, value) with NaN counted as 0. Because a series is strictly increasing in
  (step, timestamp) that is its last row; it is recorded while the series is generated.
  ``--check`` recomputes it in SQL with DISTINCT ON and compares.

Same seed and sizes give byte-identical table contents (the ``Default`` experiment MLflow creates
gets fixed times and artifact location too).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

REPO_ROOT = Path(__file__).resolve().parent.parent
MLFLOW_ALEMBIC_HEAD = "dc11669786a5"
MAX_DOUBLE = 1.7976931348623157e308
BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z: every generated time is after this
DAY_MS = 86_400_000
CHUNK_ROWS = 20_000  # rows per text chunk handed to COPY
READ_SIZE = 1 << 20  # bytes psycopg2 asks the stream for per read()

# The tables whose keys and indexes are dropped during the load and rebuilt afterwards.
DEFERRED_TABLES = ("tags", "params", "metrics", "latest_metrics")

METRIC_KEYS: dict[str, tuple[float, float]] = {  # key -> (offset, scale) of its values
    "loss": (0.0, 5.0), "acc": (0.0, 1.0), "lr": (0.0, 1e-3), "val_loss": (0.0, 5.0),
    "val_acc": (0.0, 1.0), "precision": (0.0, 1.0), "recall": (0.0, 1.0), "f1": (0.0, 1.0),
    "auc": (0.0, 1.0), "rmse": (0.0, 100.0), "mae": (0.0, 50.0), "grad_norm": (0.0, 20.0),
    "epoch_time_s": (0.0, 600.0), "throughput": (0.0, 1e4), "reward": (-100.0, 200.0),
    "train/loss": (0.0, 5.0), "eval/accuracy": (0.0, 1.0),
    "system/gpu_0_utilization_percentage": (0.0, 100.0),
}
PARAM_KEYS = [
    "learning_rate", "batch_size", "epochs", "optimizer", "momentum", "weight_decay", "dropout",
    "num_layers", "hidden_size", "activation", "seed", "model_type", "max_depth", "n_estimators",
    "min_samples_leaf", "subsample", "colsample_bytree", "gamma", "alpha", "lambda",
    "warmup_steps", "scheduler", "loss_fn", "dataset", "dataset_version", "train_split",
    "val_split", "tokenizer", "max_seq_len", "precision", "gradient_accumulation", "clip_norm",
    "early_stopping", "patience", "augmentation", "image_size", "num_workers", "device",
    "framework_version", "config_path",
]
USER_TAG_KEYS = ["team", "project", "stage", "owner", "dataset", "framework", "priority",
                 "ticket", "git_branch", "release", "notes", "experiment_group"]
SYSTEM_TAG_KEYS = ["mlflow.user", "mlflow.source.name", "mlflow.source.type",
                   "mlflow.source.git.commit", "mlflow.note.content", "mlflow.log-model.history"]
USERS = [f"{n}@example.com" for n in (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoé")]
ADJECTIVES = ["bold", "calm", "clever", "dapper", "eager", "fancy", "gentle", "happy", "jolly",
              "kind", "lively", "merry", "nimble", "polite", "quick", "shy", "silly", "wise"]
NOUNS = ["ant", "bat", "cat", "deer", "eel", "fox", "gnu", "hen", "ibis", "jay", "koi", "lynx",
         "mole", "newt", "owl", "puma", "ram", "seal", "toad", "wolf", "yak", "zebra"]
STATUSES = (["FINISHED"] * 75) + (["FAILED"] * 10) + (["RUNNING"] * 10) + (["KILLED"] * 5)
SOURCE_TYPES = (["LOCAL"] * 60) + (["NOTEBOOK"] * 20) + (["JOB"] * 10) + (["PROJECT"] * 5) + (["UNKNOWN"] * 5)

# The snippet run in a subprocess of the main virtualenv to let MLflow create its schema.
_MLFLOW_INIT = """
import logging, sys, warnings
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
from mlflow import MlflowClient
MlflowClient(tracking_uri=sys.argv[1]).search_experiments()
"""


# ----------------------------------------------------------------------------- URIs
def pg_dsn(uri: str, database: str | None = None) -> str:
    """libpq URI (postgresql://...) of `uri`, optionally pointing at another database."""
    uri = uri.replace("postgresql+psycopg2://", "postgresql://", 1).replace("postgres://", "postgresql://", 1)
    if database is None:
        return uri
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def sqlalchemy_uri(uri: str) -> str:
    return pg_dsn(uri).replace("postgresql://", "postgresql+psycopg2://", 1)


def database_name(uri: str) -> str:
    return urlsplit(pg_dsn(uri)).path.lstrip("/") or "postgres"


# ----------------------------------------------------------------------------- MLflow schema
def mlflow_python() -> str:
    """The main virtualenv's interpreter (MLflow lives there), else the current one."""
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def init_mlflow_schema(tracking_uri: str) -> None:
    """Let MLflow create its own schema at `tracking_uri` (any SQLAlchemy URI MLflow accepts)."""
    env = dict(os.environ, GIT_PYTHON_REFRESH="quiet", MLFLOW_TRACKING_URI=tracking_uri)
    proc = subprocess.run([mlflow_python(), "-c", _MLFLOW_INIT, tracking_uri], env=env,
                          cwd=REPO_ROOT / "benchmarks", capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"MLflow schema initialisation failed:\n{proc.stderr[-4000:]}")


def create_database(admin_uri: str, name: str, drop_existing: bool = False) -> None:
    conn = psycopg2.connect(pg_dsn(admin_uri))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                if not drop_existing:
                    raise SystemExit(f"database {name!r} exists; pass --drop-existing to replace it")
                cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()


def drop_database(admin_uri: str, name: str) -> None:
    conn = psycopg2.connect(pg_dsn(admin_uri))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


# ----------------------------------------------------------------------------- constraints
def schema_signature(cur) -> list[tuple]:
    """Every constraint and index definition of the public schema, sorted."""
    cur.execute("""
        SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'index', tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        ORDER BY 1, 2, 3""")
    return cur.fetchall()


@dataclass
class DeferredIndexes:
    """Keys, unique constraints, foreign keys and indexes of one table, dropped for a bulk load."""
    table: str
    keys: list[tuple[str, str]] = field(default_factory=list)          # (name, definition) p/u
    foreign_keys: list[tuple[str, str]] = field(default_factory=list)  # (name, definition)
    indexes: list[tuple[str, str]] = field(default_factory=list)       # (name, CREATE INDEX ...)

    @classmethod
    def drop(cls, cur, table: str) -> "DeferredIndexes":
        """Record and drop them (in the caller's transaction)."""
        d = cls(table)
        cur.execute("""SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint
                        WHERE conrelid = %s::regclass AND contype IN ('p', 'u', 'f')
                        ORDER BY conname""", (table,))
        for name, kind, definition in cur.fetchall():
            (d.foreign_keys if kind == "f" else d.keys).append((name, definition))
        cur.execute("""SELECT i.relname, pg_get_indexdef(i.oid)
                         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                        WHERE x.indrelid = %s::regclass
                          AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                                           WHERE c.conrelid = x.indrelid AND c.conindid = x.indexrelid
                                             AND c.contype IN ('p', 'u', 'x'))
                        ORDER BY i.relname""", (table,))
        d.indexes = cur.fetchall()
        t = sql.Identifier(table)
        for name, _ in d.foreign_keys + d.keys:
            cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(t, sql.Identifier(name)))
        for name, _ in d.indexes:
            cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        return d

    def restore(self, cur) -> None:
        """Rebuild keys, then indexes, then foreign keys (each validated against the data)."""
        t = sql.Identifier(self.table)
        for name, definition in self.keys:
            cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(t, sql.Identifier(name))
                        + sql.SQL(definition))
        for _, definition in self.indexes:
            cur.execute(definition)
        for name, definition in self.foreign_keys:
            cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(t, sql.Identifier(name))
                        + sql.SQL(definition))


# ----------------------------------------------------------------------------- COPY plumbing
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def esc(value) -> str:
    """One value in COPY text format: NULL is \\N; backslash, tab, newline and CR escaped."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        return repr(value)
    return str(value).translate(_COPY_ESCAPES)


def rows_to_chunks(rows: Iterable[tuple], chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """Tuples -> COPY text lines, joined into chunks of `chunk_rows` lines."""
    buf: list[str] = []
    for row in rows:
        buf.append("\t".join(map(esc, row)) + "\n")
        if len(buf) >= chunk_rows:
            yield "".join(buf)
            buf.clear()
    if buf:
        yield "".join(buf)


class ChunkStream:
    """A read()-able file over an iterator of text chunks, for ``cursor.copy_expert``.

    COPY pulls ``read(size)``; the generator behind it produces the next chunk only when the
    buffer runs dry, so memory stays at about one chunk whatever the table size.
    """

    def __init__(self, chunks: Iterable[str]):
        self._chunks = iter(chunks)
        self._buf = bytearray()
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk.encode("utf-8")
        if size < 0 or size >= len(self._buf):
            out = bytes(self._buf)
            self._buf.clear()
        else:
            out = bytes(self._buf[:size])
            del self._buf[:size]
        self.bytes += len(out)
        return out


def copy_in(cur, table: str, columns: list[str], chunks: Iterable[str], freeze: bool = False) -> int:
    """COPY chunks of text lines into table(columns); returns the number of rows."""
    stmt = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(" WITH (FREEZE)") if freeze else sql.SQL(""))
    cur.copy_expert(stmt.as_string(cur), ChunkStream(chunks), size=READ_SIZE)
    return cur.rowcount


# ----------------------------------------------------------------------------- the plan
@dataclass
class Sizes:
    experiments: int = 20
    runs: int = 10_000
    tags: int = 50_000
    params: int = 100_000
    metrics: int = 1_000_000
    nan_fraction: float = 0.001
    max_fraction: float = 0.0002


@dataclass
class Experiment:
    experiment_id: int
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int


@dataclass
class RunPlan:
    """Everything about one run the child tables need; a few hundred bytes per run."""
    run_uuid: str
    name: str
    experiment_id: int
    user_id: str
    source_type: str
    source_name: str
    source_version: str
    start_time: int
    interval_ms: int           # time between two steps of its metrics
    stride: int                # step increment; 0 when the run logs without steps
    series: list[tuple[str, int]]  # (metric key, rows), longest first
    n_tags: int                # tags besides mlflow.runName
    n_params: int

    @property
    def metric_span(self) -> int:
        longest = self.series[0][1] if self.series else 0
        return longest * self.interval_ms + len(self.series)


def split_budget(total: int, n: int, rng: random.Random, sigma: float) -> list[int]:
    """`total` split over `n` buckets with log-normal weights; exact sum, deterministic."""
    if n <= 0:
        return []
    weights = [rng.lognormvariate(0.0, sigma) for _ in range(n)]
    scale = total / sum(weights)
    shares = [w * scale for w in weights]
    counts = [int(s) for s in shares]
    remainder = total - sum(counts)
    for i in sorted(range(n), key=lambda i: counts[i] - shares[i])[:remainder]:
        counts[i] += 1
    return counts


def make_experiments(sizes: Sizes, seed: int) -> list[Experiment]:
    rng = random.Random(f"{seed}:experiments")
    out = []
    for i in range(1, sizes.experiments + 1):
        created = BASE_MS + i * DAY_MS + rng.randrange(DAY_MS)
        deleted = rng.random() < 0.1
        out.append(Experiment(i, f"bench/{rng.choice(USER_TAG_KEYS)}-{i:04d}", f"mlflow-artifacts:/{i}",
                              "deleted" if deleted else "active", created,
                              created + rng.randrange(200 * DAY_MS) if deleted else created))
    return out


def make_run_plans(sizes: Sizes, experiments: list[Experiment], seed: int) -> list[RunPlan]:
    rng = random.Random(f"{seed}:runs")
    exp_ids = [0] + [e.experiment_id for e in experiments]
    created = {0: BASE_MS, **{e.experiment_id: e.creation_time for e in experiments}}
    exp_weights = [rng.lognormvariate(0.0, 1.0) for _ in exp_ids]
    metric_budget = split_budget(sizes.metrics, sizes.runs, random.Random(f"{seed}:metric-budget"), 1.0)
    tag_budget = split_budget(sizes.tags - sizes.runs, sizes.runs, random.Random(f"{seed}:tag-budget"), 0.5)
    param_budget = split_budget(sizes.params, sizes.runs, random.Random(f"{seed}:param-budget"), 0.5)
    keys = list(METRIC_KEYS)
    seen: set[str] = set()
    plans = []
    for i in range(sizes.runs):
        run_uuid = f"{rng.getrandbits(128):032x}"
        while run_uuid in seen:
            run_uuid = f"{rng.getrandbits(128):032x}"
        seen.add(run_uuid)
        exp = rng.choices(exp_ids, exp_weights)[0]
        n = metric_budget[i]
        k = min(n, rng.randint(1, 8))
        series = [(key, n // k + (1 if j < n % k else 0)) for j, key in enumerate(rng.sample(keys, k))]
        source_type = rng.choice(SOURCE_TYPES)
        plans.append(RunPlan(
            run_uuid=run_uuid,
            name=f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}-{rng.randrange(1000):03d}",
            experiment_id=exp,
            user_id=rng.choice(USERS),
            source_type=source_type,
            source_name={"NOTEBOOK": "/Users/team/notebooks/train", "JOB": "jobs/nightly-train",
                         "PROJECT": "https://github.com/example/ml-project"}.get(source_type, "train.py"),
            source_version=f"{rng.getrandbits(160):040x}" if rng.random() < 0.6 else "",
            start_time=created[exp] + rng.randrange(1, 300 * DAY_MS),
            interval_ms=rng.randint(50, 5000),
            stride=0 if rng.random() < 0.05 else rng.choice((1, 1, 1, 10, 100)),
            series=series,
            n_tags=tag_budget[i],
            n_params=param_budget[i]))
    return plans


# ----------------------------------------------------------------------------- rows
def experiment_rows(experiments: list[Experiment]) -> Iterator[tuple]:
    for e in experiments:
        yield (e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage, e.creation_time,
               e.last_update_time, "default")


def experiment_tag_rows(experiments: list[Experiment], seed: int) -> Iterator[tuple]:
    rng = random.Random(f"{seed}:experiment-tags")
    for e in [Experiment(0, "Default", "", "active", BASE_MS, BASE_MS)] + experiments:
        yield ("mlflow.note.content", f"Experiment {e.name}\nOwner: {rng.choice(USERS)}\n\tsee wiki",
               e.experiment_id)
        for key in rng.sample(USER_TAG_KEYS, rng.randint(1, 3)):
            yield (key, f"{key}-{rng.randrange(100)}", e.experiment_id)


def run_rows(plans: list[RunPlan], experiments: list[Experiment], seed: int) -> Iterator[tuple]:
    rng = random.Random(f"{seed}:run-rows")
    location = {0: "mlflow-artifacts:/0", **{e.experiment_id: e.artifact_location for e in experiments}}
    for p in plans:
        status = rng.choice(STATUSES)
        finished = p.start_time + p.metric_span + rng.randint(1_000, 600_000)
        end_time = None if status == "RUNNING" else finished
        deleted = rng.random() < 0.05
        yield (p.run_uuid, p.name, p.source_type, p.source_name, "", p.user_id, status, p.start_time,
               end_time, p.source_version, "deleted" if deleted else "active",
               f"{location[p.experiment_id]}/{p.run_uuid}/artifacts", p.experiment_id,
               finished + rng.randrange(1, 30 * DAY_MS) if deleted else None)


def tag_rows(plans: list[RunPlan], seed: int) -> Iterator[tuple]:
    rng = random.Random(f"{seed}:tags")
    pool = SYSTEM_TAG_KEYS + USER_TAG_KEYS
    for p in plans:
        yield ("mlflow.runName", p.name, p.run_uuid)
        keys = rng.sample(pool, min(p.n_tags, len(pool))) + [f"tag_{j:04d}" for j in range(p.n_tags - len(pool))]
        for key in keys:
            if key == "mlflow.user":
                value = p.user_id
            elif key == "mlflow.source.name":
                value = p.source_name
            elif key == "mlflow.source.type":
                value = p.source_type
            elif key == "mlflow.source.git.commit":
                value = p.source_version or f"{rng.getrandbits(160):040x}"
            elif key == "mlflow.note.content":
                value = f"Run {p.name}: tried {rng.choice(PARAM_KEYS)}={rng.random():.4g}\nRésumé:\tok \\o/"
            elif key == "mlflow.log-model.history":
                value = ('[{"run_id": "%s", "artifact_path": "model", "utc_time_created": '
                         '"2024-05-01 12:00:00.%06d", "flavors": {"python_function": {"loader_module": '
                         '"mlflow.sklearn", "python_version": "3.11.7"}, "sklearn": {"pickled_model": '
                         '"model.pkl", "sklearn_version": "1.4.2"}}, "model_uuid": "%032x"}]'
                         % (p.run_uuid, rng.randrange(10**6), rng.getrandbits(128)))
            else:
                value = f"{key}-{rng.randrange(1000)}"
            yield (key, value, p.run_uuid)


def param_rows(plans: list[RunPlan], seed: int) -> Iterator[tuple]:
    rng = random.Random(f"{seed}:params")
    for p in plans:
        keys = rng.sample(PARAM_KEYS, min(p.n_params, len(PARAM_KEYS)))
        keys += [f"param_{j:04d}" for j in range(p.n_params - len(keys))]
        for key in keys:
            r = rng.random()
            if r < 0.01:
                value = ("config:" + "abcdefghij" * 600)[: rng.randint(500, 6000)]
            elif r < 0.5:
                value = repr(rng.random() * 10 ** rng.randint(-5, 3))
            elif r < 0.8:
                value = str(rng.randrange(1, 4096))
            else:
                value = rng.choice(("adam", "sgd", "relu", "gelu", "True", "False", "None", "cuda", "cpu"))
            yield (key, value, p.run_uuid)


def metric_chunks(plans: list[RunPlan], sizes: Sizes, seed: int, latest: list[tuple],
                  chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """COPY text of metrics (key, value, timestamp, run_uuid, step, is_nan), chunk by chunk.

    Appends the latest_metrics row of every series to `latest` as it goes. Lines are formatted
    inline (not via `esc`): keys are fixed safe strings and this loop is the generator's hot path.
    """
    rng = random.Random(f"{seed}:metrics")
    rand = rng.random
    nan_fraction = sizes.nan_fraction
    special = sizes.nan_fraction + sizes.max_fraction
    buf: list[str] = []
    append = buf.append
    for p in plans:
        if not p.series:
            continue
        run, start, interval, stride = p.run_uuid, p.start_time, p.interval_ms, p.stride
        series = [(key, n, *METRIC_KEYS[key]) for key, n in p.series]
        last: list[float] = [0.0] * len(series)  # last value (NaN as 0) of each series
        last_nan: list[bool] = [False] * len(series)
        for i in range(series[0][1]):
            step = i * stride
            ts = start + i * interval
            for j, (key, n, offset, scale) in enumerate(series):
                if i >= n:
                    break  # series are longest first
                r = rand()
                if r >= special:
                    v = offset + scale * rand()
                    append(f"{key}\t{v!r}\t{ts + j}\t{run}\t{step}\tf\n")
                    last[j] = v
                    last_nan[j] = False
                elif r < nan_fraction:
                    append(f"{key}\t0\t{ts + j}\t{run}\t{step}\tt\n")
                    last[j] = 0.0
                    last_nan[j] = True
                else:
                    v = MAX_DOUBLE if rand() < 0.5 else -MAX_DOUBLE
                    append(f"{key}\t{v!r}\t{ts + j}\t{run}\t{step}\tf\n")
                    last[j] = v
                    last_nan[j] = False
        for j, (key, n, _, _) in enumerate(series):
            latest.append((key, last[j], start + (n - 1) * interval + j, (n - 1) * stride, last_nan[j], run))
        if len(buf) >= chunk_rows:
            yield "".join(buf)
            buf.clear()
    if buf:
        yield "".join(buf)


# ----------------------------------------------------------------------------- main
def count_rows(cur, tables: Iterable[str]) -> dict[str, int]:
    out = {}
    for t in tables:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t)))
        out[t] = cur.fetchone()[0]
    return out


def check(cur) -> list[str]:
    """Consistency checks of the loaded data; returns the failures (empty when all hold)."""
    failures = []
    cur.execute("""
        WITH expected AS (
            SELECT DISTINCT ON (run_uuid, key) key, value, timestamp, step, is_nan, run_uuid
              FROM metrics ORDER BY run_uuid, key, step DESC, timestamp DESC, value DESC)
        SELECT (SELECT count(*) FROM (SELECT * FROM expected EXCEPT
                                      SELECT key, value, timestamp, step, is_nan, run_uuid FROM latest_metrics) a),
               (SELECT count(*) FROM (SELECT key, value, timestamp, step, is_nan, run_uuid FROM latest_metrics
                                      EXCEPT SELECT * FROM expected) b)""")
    missing, extra = cur.fetchone()
    if missing or extra:
        failures.append(f"latest_metrics differs from MLflow's rule: {missing} missing, {extra} extra")
    cur.execute("""SELECT count(*) FROM runs r LEFT JOIN tags t
                     ON t.run_uuid = r.run_uuid AND t.key = 'mlflow.runName'
                    WHERE t.value IS DISTINCT FROM r.name""")
    if (n := cur.fetchone()[0]):
        failures.append(f"{n} runs without an mlflow.runName tag equal to runs.name")
    cur.execute("SELECT count(*) FROM runs WHERE (lifecycle_stage = 'deleted') <> (deleted_time IS NOT NULL)")
    if (n := cur.fetchone()[0]):
        failures.append(f"{n} runs whose deleted_time does not match lifecycle_stage")
    return failures


def generate(admin_uri: str, database: str, sizes: Sizes, seed: int = 42, drop_existing: bool = False,
             run_check: bool = False, log: Callable[[str], None] = print) -> dict:
    """Create and fill `database`; returns {'counts': {...}, 'seconds': {...}, 'uri': ...}."""
    if sizes.tags < sizes.runs:
        raise ValueError(f"--tags ({sizes.tags}) must be at least --runs ({sizes.runs}): every run "
                         "has an mlflow.runName tag")
    if sizes.metrics and not sizes.runs:
        raise ValueError("metrics need at least one run")
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()

    def phase(name: str, t0: float) -> None:
        seconds[name] = time.perf_counter() - t0
        log(f"  {name:<28} {seconds[name]:8.2f} s")

    t0 = time.perf_counter()
    create_database(admin_uri, database, drop_existing)
    uri = pg_dsn(admin_uri, database)
    init_mlflow_schema(sqlalchemy_uri(uri))
    phase("create db + MLflow schema", t0)

    conn = psycopg2.connect(uri)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version")
            head = cur.fetchone()[0]
            if head != MLFLOW_ALEMBIC_HEAD:
                log(f"  note: MLflow schema is at alembic {head}, not {MLFLOW_ALEMBIC_HEAD}")
            cur.execute("SET maintenance_work_mem = '1GB'")
            cur.execute("SET synchronous_commit = off")
            before = schema_signature(cur)

            t0 = time.perf_counter()
            experiments = make_experiments(sizes, seed)
            plans = make_run_plans(sizes, experiments, seed)
            phase("plan runs", t0)

            t0 = time.perf_counter()
            # MLflow's own Default experiment: fixed times and location, so output is reproducible.
            cur.execute("UPDATE experiments SET creation_time = %s, last_update_time = %s, "
                        "artifact_location = 'mlflow-artifacts:/0' WHERE experiment_id = 0",
                        (BASE_MS, BASE_MS))
            copy_in(cur, "experiments", ["experiment_id", "name", "artifact_location", "lifecycle_stage",
                                         "creation_time", "last_update_time", "workspace"],
                    rows_to_chunks(experiment_rows(experiments)))
            cur.execute("SELECT setval('experiments_experiment_id_seq', "
                        "(SELECT max(experiment_id) FROM experiments))")
            copy_in(cur, "experiment_tags", ["key", "value", "experiment_id"],
                    rows_to_chunks(experiment_tag_rows(experiments, seed)))
            copy_in(cur, "runs", ["run_uuid", "name", "source_type", "source_name", "entry_point_name",
                                  "user_id", "status", "start_time", "end_time", "source_version",
                                  "lifecycle_stage", "artifact_uri", "experiment_id", "deleted_time"],
                    rows_to_chunks(run_rows(plans, experiments, seed)))
            conn.commit()
            phase("experiments + runs", t0)

            deferred = []
            latest: list[tuple] = []  # filled while metrics are generated, then loaded
            for table, columns, chunks in (
                    ("tags", ["key", "value", "run_uuid"], lambda: rows_to_chunks(tag_rows(plans, seed))),
                    ("params", ["key", "value", "run_uuid"], lambda: rows_to_chunks(param_rows(plans, seed))),
                    ("metrics", ["key", "value", "timestamp", "run_uuid", "step", "is_nan"],
                     lambda: metric_chunks(plans, sizes, seed, latest)),
                    ("latest_metrics", ["key", "value", "timestamp", "step", "is_nan", "run_uuid"],
                     lambda: rows_to_chunks(latest))):
                t0 = time.perf_counter()
                deferred.append(DeferredIndexes.drop(cur, table))
                cur.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
                copy_in(cur, table, columns, chunks(), freeze=True)
                conn.commit()
                phase(f"load {table}", t0)
            latest.clear()

            t0 = time.perf_counter()
            for d in deferred:
                d.restore(cur)
            conn.commit()
            phase("rebuild keys/indexes/FKs", t0)
            if schema_signature(cur) != before:
                raise RuntimeError("constraint/index definitions differ from MLflow's after the rebuild")
            conn.commit()

        t0 = time.perf_counter()
        conn.autocommit = True
        with conn.cursor() as cur:
            for table in ("experiments", "experiment_tags", "runs") + DEFERRED_TABLES:
                cur.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
        phase("vacuum analyze", t0)

        with conn.cursor() as cur:
            counts = count_rows(cur, ("experiments", "experiment_tags", "runs", "tags", "params",
                                      "metrics", "latest_metrics"))
            if run_check:
                t0 = time.perf_counter()
                failures = check(cur)
                phase("check", t0)
                if failures:
                    raise RuntimeError("; ".join(failures))
            cur.execute("SELECT pg_database_size(current_database())")
            size = cur.fetchone()[0]
    finally:
        conn.close()
    seconds["total"] = time.perf_counter() - t_all - seconds.get("check", 0.0)
    return {"uri": uri, "counts": counts, "seconds": seconds, "bytes": size, "alembic": head}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-uri", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="any database on the server (used to create the new one)")
    ap.add_argument("--database", default="bench_1m", help="name of the database to create")
    ap.add_argument("--experiments", type=int, default=20)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--tags", type=int, default=50_000, help="run tags, mlflow.runName included")
    ap.add_argument("--params", type=int, default=100_000)
    ap.add_argument("--metrics", type=int, default=1_000_000)
    ap.add_argument("--nan-fraction", type=float, default=0.001)
    ap.add_argument("--max-fraction", type=float, default=0.0002,
                    help="fraction of metric values that are +/-1.7976931348623157e308")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--drop-existing", action="store_true", help="replace the database if it exists")
    ap.add_argument("--check", action="store_true",
                    help="afterwards, verify latest_metrics against MLflow's rule in SQL (and more)")
    args = ap.parse_args(argv)
    sizes = Sizes(args.experiments, args.runs, args.tags, args.params, args.metrics,
                  args.nan_fraction, args.max_fraction)
    print(f"generating {args.database}: {sizes}, seed {args.seed}")
    result = generate(args.pg_uri, args.database, sizes, args.seed, args.drop_existing, args.check)
    print(f"\n{result['uri']}  (MLflow alembic {result['alembic']}, "
          f"{result['bytes'] / 2**20:.0f} MiB)")
    for table, n in result["counts"].items():
        print(f"  {table:<16} {n:>12,} rows")
    print(f"  total {result['seconds']['total']:.1f} s"
          + (" (checks passed)" if args.check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
