"""The dbmigrate benchmark: limits and end-to-end runs on the same seeded data, in one command.

    python -m benchmarks.run --metrics 1000000 [--reuse-db] \
        [--scenarios pg-null,pg-pg,pg-sqlite,sqlite-pg,pg-mysql,pg-mongo,pg-mongo-tables,mongo-pg,
                     parquet-write,parquet-restore,small-sqlite,small-pg] \
        [--workers N] [--batch-size N] [--out benchmarks/results]
    python -m benchmarks.run --smoke [--metrics N]   # 100k metric rows by default, every scenario; the tests use 20k

One run:

1. Source: the seeded MLflow-shaped PostgreSQL database ``bench_<scale>`` (``bench_100k``,
   ``bench_1m``, ``bench_10m``, ...) made by :mod:`benchmarks.generate` (replaced; with
   ``--reuse-db`` an existing one is used after its row counts are checked against the scale).
2. A private SecantusDB (MongoDB wire) server on a free port when a scenario needs MongoDB.
3. Limits, measured on the same data with :mod:`benchmarks.limits`: the source read limit
   (``COPY <table> TO STDOUT`` into a byte counter, every non-empty table), the MongoDB raw ingest
   limit (pre-built documents shaped like dbmigrate's, ``insert_many(ordered=False)`` through the
   same pymongo driver in dbmigrate's batch size; a sample of ``--mongo-limit-docs`` documents, the
   rate is what counts), ``bson.encode`` into nothing, PostgreSQL ``COPY FROM`` into MLflow's own
   schema (indexes live, and bare + rebuild), SQLite ``executemany`` into MLflow's schema.
4. Scenarios, each ``python -m dbmigrate.cli migrate ... --verify none --no-progress`` as a
   subprocess into a fresh target (PostgreSQL database, SQLite file, MongoDB database) that is
   dropped afterwards. Wall time is measured around the process; the peak RSS of the whole
   process tree (dbmigrate and its worker processes) is sampled from /proc every 50 ms; the
   per-table rows and seconds come from dbmigrate's ``--report-json``.

   ==================  =========================================================================
   pg-mongo            PostgreSQL -> MongoDB, mlflow-mongodb layout (run_metrics documents)
   pg-mongo-tables     PostgreSQL -> MongoDB, tables layout (one collection per table)
   pg-pg               PostgreSQL -> PostgreSQL (empty database; MLflow's schema made by dbmigrate)
   pg-sqlite           PostgreSQL -> SQLite (a new file)
   pg-mysql            PostgreSQL -> MySQL/MariaDB (empty database, utf8mb4_bin)
   sqlite-pg           SQLite (pg-sqlite's target, or copied untimed first) -> PostgreSQL
   mongo-pg            MongoDB (tables layout, copied untimed from the source first) -> PostgreSQL
   parquet-write       PostgreSQL -> Parquet snapshot (``parquet:///dir``)
   parquet-restore     Parquet snapshot (parquet-write's, or written untimed first) -> PostgreSQL
   pg-null             PostgreSQL -> null sink: ``--dry-run`` into MongoDB runs the real plan
                       (read, convert, BSON-encode every document) and sends nothing: the rate a
                       real MongoDB server would be offered
   ==================  =========================================================================

5. Writes ``<out>/<UTC timestamp>-<scale>.json`` (every figure, machine information) and
   ``<out>/latest-<scale>.md`` (the tables printed at the end).

Targets (reported PASS/MISS, never an error): PostgreSQL -> MongoDB metrics rows/s at least 90 %
of the MongoDB raw ingest limit; SQL -> SQL metrics rows/s at least 70 % of the target's ingest
limit (PostgreSQL COPY FROM into MLflow's schema, best of indexes live and bare + rebuild; SQLite
executemany); peak RSS of the process tree under 400 MB. The exit code is non-zero only when the
harness could not measure something (a failed generation, limit or dbmigrate run).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import psycopg2
from psycopg2 import sql

from benchmarks import limits as L
from benchmarks.generate import REPO_ROOT, Sizes, drop_database, generate, pg_dsn

ADMIN_URI = "postgresql://postgres@127.0.0.1:5432/postgres"
MYSQL_ADMIN_URI = "mysql://root@127.0.0.1:3306/"
SMALL_TARGET_SECONDS = 3.0
RSS_TARGET_MB = 400.0
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CPU_PROGRESS_TICKS = max(1, CLK_TCK // 5)  # 0.2 s of CPU counts as progress
MB = 1024 * 1024


# ----------------------------------------------------------------------------- scenarios
@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    source: str                # "pg" | "mongo" | "sqlite" | "parquet"
    target: str                # "mongo" | "pg" | "sqlite" | "mysql" | "parquet" | "null"
    layout: str | None         # MongoDB layout (targets) or None
    metrics_dest: str          # where the metrics rows land (collection / table)
    limit_key: str             # the limit the metrics rate is compared with
    target_ratio: float | None  # the stated target (None: informational)


SCENARIOS = [  # canonical order: mongo-pg reuses pg-mongo-tables' target as its source
    Scenario("pg-null", "PostgreSQL -> null sink (dry run: read + convert + BSON encode, nothing sent)",
             "pg", "null", "mlflow-mongodb", "run_metrics", "read.metrics", None),
    Scenario("pg-pg", "PostgreSQL -> PostgreSQL", "pg", "pg", None, "metrics", "pg_copy_in.best", 0.70),
    Scenario("pg-sqlite", "PostgreSQL -> SQLite", "pg", "sqlite", None, "metrics", "sqlite.executemany", 0.70),
    Scenario("sqlite-pg", "SQLite (pg-sqlite's result, or copied untimed) -> PostgreSQL", "sqlite", "pg", None,
             "metrics", "sqlite_pg.limit", 0.70),
    Scenario("pg-mysql", "PostgreSQL -> MySQL/MariaDB", "pg", "mysql", None, "metrics", "mysql.load_data", 0.70),
    Scenario("pg-mongo", "PostgreSQL -> MongoDB (mlflow-mongodb layout)", "pg", "mongo", "mlflow-mongodb",
             "run_metrics", "mongo.run_metrics.dict", 0.90),
    Scenario("pg-mongo-tables", "PostgreSQL -> MongoDB (tables layout)", "pg", "mongo", "tables",
             "metrics", "mongo.tables_metrics.dict", 0.90),
    Scenario("mongo-pg", "MongoDB (tables layout) -> PostgreSQL", "mongo", "pg", None, "metrics",
             "mongo_pg.limit", 0.70),
    Scenario("parquet-write", "PostgreSQL -> Parquet snapshot", "pg", "parquet", None, "metrics",
             "pg_parquet.limit", None),
    Scenario("parquet-restore", "Parquet snapshot (parquet-write's, or written untimed) -> PostgreSQL", "parquet",
             "pg", None, "metrics", "parquet_pg.limit", 0.70),
]
# A scenario whose source is another scenario's target reuses that target when both run.
SOURCE_FROM = {"sqlite-pg": "pg-sqlite", "parquet-restore": "parquet-write", "mongo-pg": "pg-mongo-tables"}
BY_NAME = {s.name: s for s in SCENARIOS}
# Small migrations: the tests' MLflow 3.17.2 source (~300 rows in 65 tables) -> a new target, wall
# clock of the whole process with verification (dbmigrate's default), one cold run (empty schema
# cache: MLflow's migrations) then --small-runs warm ones (the median counts).
SMALL = {"small-sqlite": "sqlite", "small-pg": "pg"}


def scale_name(n: int) -> str:
    if n and n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def sizes_for(metrics: int, runs: int | None = None) -> Sizes:
    """The generator's sizes at a scale: 1M metrics -> 10k runs, 50k tags, 100k params (bench_1m);
    fewer runs below 1M (at least 1000), the same 10k runs above (longer metric histories)."""
    runs = runs or min(10_000, max(1_000, metrics // 100))
    return Sizes(experiments=20, runs=runs, tags=5 * runs, params=10 * runs, metrics=metrics)


# ----------------------------------------------------------------------------- process-tree RSS
def _scan_proc() -> dict[int, tuple[int, int]]:
    """{pid: (ppid, utime + stime in clock ticks)} of every process."""
    out: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rpartition(b")")[2].split()  # fields[0] is field 3 (state)
        out[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return out


def process_tree(root: int, procs: dict[int, tuple[int, int]] | None = None) -> list[int]:
    procs = _scan_proc() if procs is None else procs
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _status_kb(pid: int, field: str = "VmRSS:") -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(field.encode()):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Samples the RSS of a process and all its descendants every `interval` seconds.

    peak_tree: the largest sum of VmRSS over the tree seen in one sample (shared pages -- the
    interpreter, shared libraries -- count once per process, so this over-states real use a
    little; a child that is still a copy of its parent, forked and not yet exec'd, is left out); peak_single: the largest VmRSS of any one process; peak_pss_tree: the largest sum of
    proportional set sizes (shared pages split between their users; sampled every 5th tick).
    """

    def __init__(self, root: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_tree = self.peak_single = self.peak_pss_tree = 0
        self.max_procs = 0
        self.samples = 0
        self.pids_seen: set[int] = set()
        self.fork_samples = 0
        self._ticks: dict[int, int] = {}  # CPU ticks per pid ever seen (dead ones keep theirs)
        self._last_cpu = 0
        self._last_progress = time.monotonic()
        self.timeline: list[tuple[float, float, int]] = []  # (s, tree RSS MB, processes), ~1/s
        self._stop_evt = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        next_mark = 0.0
        tick = 0
        while not self._stop_evt.is_set():
            procs = _scan_proc()
            pids = process_tree(self.root, procs)
            for p in pids:
                if p in procs:
                    self._ticks[p] = procs[p][1]
            self.pids_seen.update(pids)
            cpu = sum(self._ticks.values())
            if cpu - self._last_cpu >= CPU_PROGRESS_TICKS:
                self._last_cpu = cpu
                self._last_progress = time.monotonic()
            rss = [_status_kb(p) for p in pids]
            # A child forked but not yet exec'd (multiprocessing "spawn" = fork + exec) still maps its
            # parent's pages: counting it would add the parent's RSS twice for a moment.
            cmd = {p: _cmdline(p) for p in pids}
            forks = sum(r for p, r in zip(pids, rss)
                        if p != self.root and p in procs and cmd[p] and cmd[p] == cmd.get(procs[p][0]))
            total = sum(rss) - forks
            if total:
                self.samples += 1
                self.peak_tree = max(self.peak_tree, total)
                self.peak_single = max(self.peak_single, max(rss))
                self.max_procs = max(self.max_procs, sum(1 for r in rss if r))
                self.fork_samples += bool(forks)
                if tick % 5 == 0:
                    self.peak_pss_tree = max(self.peak_pss_tree, sum(_pss_kb(p) for p in pids))
                now = time.perf_counter() - t0
                if now >= next_mark:
                    self.timeline.append((round(now, 2), round(total / 1024, 1), len(pids)))
                    next_mark = now + 1.0
            tick += 1
            self._stop_evt.wait(self.interval)

    @property
    def idle_seconds(self) -> float:
        """Seconds since the tree last used CPU (CPU_PROGRESS_TICKS of it)."""
        return time.monotonic() - self._last_progress

    @property
    def cpu_seconds(self) -> float:
        return sum(self._ticks.values()) / CLK_TCK

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=5)


# ----------------------------------------------------------------------------- helpers
def log(msg: str = "") -> None:
    print(msg, flush=True)


def pg_exec(uri: str, statement, autocommit: bool = True):
    conn = psycopg2.connect(pg_dsn(uri))
    conn.autocommit = autocommit
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def pg_database_exists(admin: str, name: str) -> bool:
    conn = psycopg2.connect(pg_dsn(admin))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def pg_create_database(admin: str, name: str) -> str:
    drop_database(admin, name)
    pg_exec(admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return pg_dsn(admin, name)


def pg_table_counts(uri: str) -> dict[str, int]:
    """Exact row counts of every table of the public schema that has rows."""
    conn = psycopg2.connect(pg_dsn(uri))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            out = {}
            for (t,) in cur.fetchall():
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t)))
                out[t] = cur.fetchone()[0]
            return out
    finally:
        conn.close()


def mongo_with_db(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def measure(name: str, cmd: list[str], workdir: Path, timeout: float = 7200, env: dict | None = None) -> dict:
    """Run `cmd` (benchmarks.filestore, benchmarks.sync): wall time, peak RSS of its process tree,
    CPU seconds, exit code, output tails."""
    out_path, err_path = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = f"killed: timeout after {timeout:.0f} s"
            proc.wait()
        wall = time.perf_counter() - t0
        sampler.stop()
    return {"command": " ".join(cmd), "exit_code": rc, "wall_seconds": round(wall, 2),
            "peak_rss_tree_mb": round(sampler.peak_tree / 1024, 1),
            "peak_rss_single_mb": round(sampler.peak_single / 1024, 1),
            "cpu_seconds": round(sampler.cpu_seconds, 2), "max_processes": sampler.max_procs,
            "rss_timeline": sampler.timeline,
            "stdout_tail": out_path.read_text(errors="replace").splitlines()[-30:],
            "stderr_tail": err_path.read_text(errors="replace").splitlines()[-30:]}


def machine_info(pg_uri: str, mongo_version: str | None) -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001 - no git: leave it empty
            return ""
    pg_version = pg_exec(pg_uri, "SHOW server_version")[0][0]
    import hashlib
    h = hashlib.sha256()
    for f in sorted(list((REPO_ROOT / "dbmigrate").rglob("*.py")) + list((REPO_ROOT / "schema_maps").glob("*.json"))):
        h.update(str(f.relative_to(REPO_ROOT)).encode() + b"\0" + f.read_bytes())
    try:
        import dbmigrate
        dbm_version = dbmigrate.__version__
    except Exception:  # noqa: BLE001
        dbm_version = "?"
    import pymongo
    return {
        "cpu_model": cpu, "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gib": round(mem_kb / 1024 / 1024, 1), "kernel": platform.release(),
        "python": platform.python_version(), "postgresql": pg_version,
        "mongodb": f"SecantusDB (MongoDB wire {mongo_version})" if mongo_version else None,
        "pymongo": pymongo.version, "psycopg2": psycopg2.__version__.split()[0],
        "dbmigrate_version": dbm_version, "dbmigrate_commit": git("rev-parse", "HEAD"),
        "dbmigrate_dirty": bool(git("status", "--porcelain", "--", "dbmigrate", "schema_maps")),
        "dbmigrate_modified": git("status", "--porcelain", "--", "dbmigrate", "schema_maps").splitlines(),
        "dbmigrate_source_sha256": h.hexdigest(),  # of dbmigrate/*.py + schema_maps/*.json as run
        "hostname": platform.node(),
    }


def tables_metric_documents(rows) -> list[dict]:
    """The tables layout's metrics documents for metrics rows: every column as a field (integers
    as int64, is_nan as bool) and _id the primary key (key, timestamp, step, run_uuid, value,
    is_nan) as a sub-document. Checked byte for byte against what dbmigrate wrote."""
    from bson.int64 import Int64
    out = []
    for key, value, ts, run, step, is_nan in rows:
        ts, step, is_nan = Int64(ts), Int64(step), bool(is_nan)
        out.append({"_id": {"key": key, "timestamp": ts, "step": step, "run_uuid": run, "value": value,
                            "is_nan": is_nan},
                    "key": key, "value": value, "timestamp": ts, "run_uuid": run, "step": step,
                    "is_nan": is_nan})
    return out


def mongo_read_limit(mongo_uri: str, database: str, collection: str, n: int, batch_size: int,
                     raw: bool = True) -> L.Measurement:
    """Time ``find()`` over a collection (first `n` documents): RawBSONDocument = the server and
    wire alone; dict = plus pymongo's decoding (what any Python reader pays at least)."""
    import pymongo
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000, socketTimeoutMS=600_000)
    try:
        opts = CodecOptions(document_class=RawBSONDocument) if raw else CodecOptions()
        coll = client[database].get_collection(collection, codec_options=opts)
        count = size = 0
        t0 = time.perf_counter()
        for doc in coll.find({}, batch_size=batch_size).limit(n):
            count += 1
            if raw:
                size += len(doc.raw)
        seconds = time.perf_counter() - t0
    finally:
        client.close()
    kind = "RawBSONDocument" if raw else "dict (pymongo decodes)"
    return L.Measurement(f"mongo find {collection} ({kind})", count, seconds, size if raw else None,
                         f"batch {batch_size}")


def check_limit_shape(mongo_uri: str, database: str, collection: str, docs: list[dict]) -> dict:
    """Is the limit's first document byte-identical to the one dbmigrate stored under its _id?"""
    import bson
    import pymongo
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument
    if not docs:
        return {"checked": False, "detail": "no documents"}
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    try:
        coll = client[database].get_collection(collection, codec_options=CodecOptions(document_class=RawBSONDocument))
        stored = coll.find_one({"_id": docs[0]["_id"]})
    finally:
        client.close()
    if stored is None:
        return {"checked": True, "match": False, "detail": f"_id {docs[0]['_id']!r} not found in {collection}"}
    mine = bson.encode(docs[0])
    return {"checked": True, "match": stored.raw == mine,
            "detail": f"stored {len(stored.raw)} B, limit document {len(mine)} B"}


# ----------------------------------------------------------------------------- limits
def named(m: L.Measurement, name: str) -> L.Measurement:
    m.name = name
    return m


class Limits:
    def __init__(self):
        self.by_key: dict[str, L.Measurement] = {}
        self.order: list[str] = []
        self.errors: list[str] = []

    def add(self, key: str, m: L.Measurement) -> L.Measurement:
        self.by_key[key] = m
        if key not in self.order:
            self.order.append(key)
        log(f"  {m.name}: {m.rows:,} rows in {m.seconds:.3f} s = {m.rows_per_s:,.0f} rows/s")
        return m

    def rate(self, key: str) -> float | None:
        m = self.by_key.get(key)
        return m.rows_per_s if m else None

    def guarded(self, what: str, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on, the exit code says so
            self.errors.append(f"{what}: {exc!r}")
            log(f"  LIMIT FAILED {what}: {exc!r}")
            traceback.print_exc()


def measure_limits(args, src_uri: str, counts: dict[str, int], selected: list[Scenario], mongo_uri: str | None,
                   workdir: Path, batch: int) -> Limits:
    lim = Limits()
    need = {s.name for s in selected}
    n_metrics = counts.get("metrics", 0)

    log("\nlimits: source read (COPY <table> TO STDOUT into a byte counter)")
    for table, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        if n:
            lim.guarded(f"COPY {table} TO", lambda t=table: lim.add(f"read.{t}", L.pg_copy_out(src_uri, t, "text")))
    lim.guarded("COPY metrics TO (binary)",
                lambda: lim.add("read.metrics.binary", L.pg_copy_out(src_uri, "metrics", "binary")))
    lim.guarded("fetch metrics", lambda: lim.add("fetch.metrics", L.pg_fetch_rows(src_uri, "metrics", batch)))
    read = [lim.by_key[f"read.{t}"] for t, n in counts.items() if n and f"read.{t}" in lim.by_key]
    if read:
        lim.add("read.all", L.Measurement("pg COPY TO STDOUT, all tables (sum)", sum(m.rows for m in read),
                                          sum(m.seconds for m in read), sum(m.bytes or 0 for m in read),
                                          f"{len(read)} tables"))

    mongo_targets = need & {"pg-mongo", "pg-mongo-tables", "pg-null"}
    if mongo_targets:
        log("\nlimits: documents (built untimed with dbmigrate's converters)")
        n_enc = min(n_metrics, args.encode_limit_docs)
        n_mongo = min(n_metrics, args.mongo_limit_docs)

        def docs_limits():
            rows = L.metric_rows(src_uri, max(n_enc, n_mongo))
            run_docs = L.metric_documents(rows)
            lim.add("encode.run_metrics", named(L.null_sink_encode(run_docs[:n_enc]),
                                                "bson.encode run_metrics docs (null sink)"))
            tab_docs = tables_metric_documents(rows) if "pg-mongo-tables" in need else None
            if tab_docs is not None:
                lim.add("encode.tables_metrics", named(L.null_sink_encode(tab_docs[:n_enc]),
                                                       "bson.encode tables-layout metrics docs (null sink)"))
            del rows
            if mongo_uri and need & {"pg-mongo", "pg-mongo-tables"}:
                log(f"\nlimits: MongoDB raw ingest, {n_mongo:,} pre-built documents, batch {batch}")
                if "pg-mongo" in need:
                    for raw in (False, True):
                        m = L.mongo_insert_limit(mongo_uri, run_docs[:n_mongo], batch, raw,
                                                 database=f"bench_limits_{os.getpid()}")
                        lim.add(f"mongo.run_metrics.{'raw' if raw else 'dict'}",
                                named(m, m.name + " [run_metrics docs]"))
                if tab_docs is not None:
                    m = L.mongo_insert_limit(mongo_uri, tab_docs[:n_mongo], batch, False,
                                             database=f"bench_limits_{os.getpid()}")
                    lim.add("mongo.tables_metrics.dict", named(m, m.name + " [tables-layout metrics docs]"))
            lim.shape_docs = {"run_metrics": run_docs[:1], "metrics": (tab_docs or [])[:1]}
        lim.guarded("documents / MongoDB ingest", docs_limits)
        gc.collect()

    if need & {"pg-pg", "mongo-pg", "sqlite-pg", "parquet-restore"}:
        log(f"\nlimits: PostgreSQL COPY FROM into MLflow's schema ({', '.join(args.copy_formats)})")

        def copy_in():
            ms = L.pg_copy_in(args.pg_admin, "metrics", src_uri, formats=args.copy_formats,
                              scratch_name=f"bench_scratch_copyin_{os.getpid()}")
            best = None
            for m in ms:
                kind = "live" if "live" in m.name else "rebuild" if "rebuild" in m.name else "bare"
                fmt = "binary" if "(binary)" in m.name else "text"
                key = f"pg_copy_in.{kind}" + ("" if fmt == "text" else ".binary")
                lim.add(key, m)
                if kind in ("live", "rebuild") and (best is None or m.rows_per_s > best.rows_per_s):
                    best = m
            if best:
                lim.add("pg_copy_in.best", L.Measurement(
                    "pg COPY FROM -> metrics, best of live / bare+rebuild", best.rows, best.seconds,
                    best.bytes, f"= {best.name}"))
        lim.guarded("pg COPY FROM", copy_in)

    if need & {"parquet-write", "parquet-restore"}:
        log("\nlimits: pyarrow writing / reading the metrics table (rows fetched untimed)")

        def parquet_limits():
            path = str(workdir / "limit.parquet")
            rows = L.metric_rows(src_uri)
            try:
                w = lim.add("parquet.write", L.parquet_write_limit(path, rows, batch))
                del rows
                r = lim.add("parquet.read", L.parquet_read_limit(path, batch))
            finally:
                Path(path).unlink(missing_ok=True)
            if "fetch.metrics" in lim.by_key:
                lim.add("pg_parquet.limit", L.serial("pg fetch (tuples) + pyarrow write", w.rows,
                                                     lim.by_key["fetch.metrics"], w))
            if "pg_copy_in.best" in lim.by_key:
                lim.add("parquet_pg.limit", L.serial("pyarrow read (tuples) + pg COPY FROM best", r.rows, r,
                                                     lim.by_key["pg_copy_in.best"]))
        lim.guarded("parquet write / read", parquet_limits)
        gc.collect()

    if "pg-mysql" in need:
        log("\nlimits: MySQL/MariaDB LOAD DATA LOCAL INFILE into MLflow's schema")

        def mysql_limit():
            rows = L.metric_rows(src_uri)
            parents = L.sqlite_parents(src_uri)
            for m in L.mysql_load_data_limit(args.mysql_admin, rows, parents, f"bench_scratch_mysql_{os.getpid()}",
                                             insert_rows=args.mysql_insert_limit_rows, chunk=batch):
                lim.add("mysql.load_data" if "LOAD DATA" in m.name else "mysql.executemany", m)
        lim.guarded("mysql LOAD DATA", mysql_limit)
        gc.collect()

    if "pg-sqlite" in need:
        log("\nlimits: SQLite executemany into MLflow's schema")

        def sqlite_limit():
            rows = L.metric_rows(src_uri, args.sqlite_limit_rows or None)
            parents = L.sqlite_parents(src_uri)
            lim.add("sqlite.executemany", L.sqlite_executemany_limit(str(workdir / "limit.sqlite"), rows, parents,
                                                                     chunk=batch))
        lim.guarded("sqlite executemany", sqlite_limit)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(workdir / "limit.sqlite") + suffix).unlink(missing_ok=True)
        gc.collect()
    return lim


# ----------------------------------------------------------------------------- dbmigrate runs
def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the session dbmigrate was started in (it and its worker processes only)."""
    import signal
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _py_spy(pid: int) -> str:
    """Stacks of a stuck run (py-spy, when installed), for the record."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        return ""
    out = []
    for p in process_tree(pid):
        try:
            out.append(subprocess.run([exe, "dump", "--pid", str(p)], capture_output=True, text=True,
                                      timeout=30).stdout)
        except Exception:  # noqa: BLE001 - diagnostics only
            pass
    return "\n".join(out)


def run_dbmigrate(name: str, source: str, target: str, extra: list[str], workdir: Path, args,
                  timeout: float, verify: str | None = "none", env_extra: dict | None = None) -> dict:
    stall = args.stall_timeout
    report_path = workdir / f"{name}.report.json"
    report_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "dbmigrate.cli", "migrate", "--source", source, "--target", target,
           "--report-json", str(report_path), "--no-progress", *(["--verify", verify] if verify else []),
           "--state-dir", str(workdir / f"state-{name}"), *extra]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBMIGRATE_")}
    env.update(env_extra or {})
    out_path, err_path = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    load_before = loadavg()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        # Its own session, so a timeout or stall can end exactly this run and its workers.
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        rc: int | str | None = None
        try:
            while rc is None:
                try:
                    rc = proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    elapsed = time.perf_counter() - t0
                    if elapsed > timeout:
                        rc = f"killed: timeout after {timeout:.0f} s"
                    elif stall and sampler.idle_seconds > stall:
                        rc = (f"killed: stalled (dbmigrate's processes used no CPU for {stall:.0f} s; "
                              f"{len(sampler.pids_seen)} processes seen)")
                    if rc is not None:
                        stack = _py_spy(proc.pid)
                        _kill_session(proc)
                        if stack:
                            err.write(b"\n--- py-spy dump before the kill ---\n" + stack.encode())
        except BaseException:
            _kill_session(proc)
            raise
        wall = time.perf_counter() - t0
        sampler.stop()
    stderr = err_path.read_text(errors="replace")
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    m = re.search(r"\((\d+) to do, (\d+) workers?\)", stderr)
    return {
        "command": " ".join(cmd), "exit_code": rc, "wall_seconds": wall, "report": report,
        "peak_rss_tree_mb": sampler.peak_tree / 1024, "peak_rss_single_mb": sampler.peak_single / 1024,
        "peak_pss_tree_mb": sampler.peak_pss_tree / 1024, "max_processes": sampler.max_procs,
        "rss_samples": sampler.samples, "rss_timeline": sampler.timeline,
        "cpu_seconds": sampler.cpu_seconds, "processes_seen": len(sampler.pids_seen),
        "rss_samples_with_unexeced_forks": sampler.fork_samples,
        "workers": int(m.group(2)) if m else None, "loadavg_before": load_before, "loadavg_after": loadavg(),
        "stderr_tail": stderr.splitlines()[-40:], "stdout_tail": out_path.read_text(errors="replace").splitlines()[-60:],
    }


def target_count(kind: str, uri: str, dest: str) -> int | None:
    if kind == "pg":
        return pg_exec(uri, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(dest)))[0][0]
    if kind == "mysql":
        conn = L._mysql_connect(uri, uri.rpartition("/")[2])
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT count(*) FROM `{dest}`")
                return cur.fetchone()[0]
        finally:
            conn.close()
    if kind == "parquet":
        import pyarrow.parquet as pq
        return sum(pq.ParquetFile(f).metadata.num_rows
                   for f in sorted(Path(uri.removeprefix("parquet://"), dest).glob("**/*.parquet")))
    if kind == "sqlite":
        import sqlite3
        conn = sqlite3.connect(uri.removeprefix("sqlite:///"))
        try:
            return conn.execute(f'SELECT count(*) FROM "{dest}"').fetchone()[0]
        finally:
            conn.close()
    if kind == "mongo":
        import pymongo
        base, _, db = uri.rpartition("/")
        client = pymongo.MongoClient(base, serverSelectionTimeoutMS=10_000)
        try:
            return client[db][dest].estimated_document_count()
        finally:
            client.close()
    return None


def summarise(sc: Scenario, res: dict, lim: Limits, source_metrics: int, source_read: float | None) -> dict:
    """Per-table figures from the report; the metrics headline, totals, ratios, targets."""
    rep = res.get("report") or {}
    tables = []
    for t in rep.get("tables", []):
        if not (t.get("total") or t.get("migrated")):
            continue
        read = lim.rate(f"read.{t['table']}") if sc.source == "pg" else \
            (source_read if t["table"] == "metrics" else None)
        rps = t.get("rows_per_s") or 0.0
        tables.append({"table": t["table"], "destination": t.get("destination"), "total": t.get("total"),
                       "migrated": t.get("migrated"), "skipped": t.get("skipped"), "errors": t.get("errors"),
                       "seconds": t.get("seconds"), "rows_per_s": rps,
                       "source_read_rows_per_s": read, "ratio_to_source_read": rps / read if read and rps else None})
    metrics = next((t for t in tables if t["table"] == "metrics"), None)
    head = None
    if metrics:
        rows, secs = metrics["migrated"], metrics["seconds"]
        rps = rows / secs if secs else None
        limit = lim.by_key.get(sc.limit_key)
        ratio = rps / limit.rows_per_s if rps and limit else None
        result = "info" if sc.target_ratio is None else ("n/a" if ratio is None else
                                                          "PASS" if ratio >= sc.target_ratio else "MISS")
        head = {"rows": rows, "seconds": secs, "rows_per_s": rps,
                "s_per_million_rows": secs / (rows / 1e6) if rows else None,
                "limit_key": sc.limit_key, "limit_name": limit.name if limit else None,
                "limit_rows_per_s": limit.rows_per_s if limit else None, "ratio": ratio,
                "target_ratio": sc.target_ratio, "result": result,
                "ratio_to_source_read": metrics["ratio_to_source_read"]}
    total_rows = sum(t["migrated"] or 0 for t in tables)
    wall = res["wall_seconds"]
    read_all = lim.rate("read.all") if sc.source == "pg" else None
    total = {"rows": total_rows, "wall_seconds": wall, "report_seconds": rep.get("seconds"),
             "rows_per_s": total_rows / wall if wall else None,
             "s_per_million_rows": wall / (total_rows / 1e6) if total_rows else None,
             "source_read_rows_per_s": read_all,
             "ratio_to_source_read": (total_rows / wall) / read_all if read_all and wall else None}
    rss = res["peak_rss_tree_mb"]
    return {"scenario": sc.name, "title": sc.title, "exit_code": res["exit_code"],
            "status": rep.get("status"), "error": rep.get("error"), "metrics": head, "total": total,
            "tables": tables, "peak_rss_tree_mb": rss, "peak_rss_single_mb": res["peak_rss_single_mb"],
            "peak_pss_tree_mb": res["peak_pss_tree_mb"], "max_processes": res["max_processes"],
            "rss_result": "PASS" if rss and rss < RSS_TARGET_MB else "MISS",
            "workers": res["workers"], "source_metrics": source_metrics,
            "notes": rep.get("notes", []), "problems": rep.get("problems", []),
            "run": {k: v for k, v in res.items() if k != "report"}}


# ----------------------------------------------------------------------------- small migrations
def small_source(pg_admin: str, database: str) -> str:
    """The tests' small MLflow source (tests/conftest.py's mlflow_source at MLflow 3.17.2: MLflow's
    client, then tests/support/fill_all_tables.py giving every table rows), made once and kept."""
    uri = pg_dsn(pg_admin, database)
    if pg_database_exists(pg_admin, database):
        try:
            if pg_exec(uri, "SELECT count(*) FROM alembic_version")[0][0] == 1 and \
                    pg_exec(uri, "SELECT count(*) FROM model_version_tags")[0][0] > 0:
                return uri
        except Exception:  # noqa: BLE001 - half made: made again
            pass
        drop_database(pg_admin, database)
    log(f"source: making {database} with MLflow's client (tests/support/make_source.py + fill_all_tables.py)")
    pg_create_database(pg_admin, database)
    code = ("import json, sys; from tests.support.make_source import populate; "
            "from tests.support.fill_all_tables import fill; populate(sys.argv[1]); fill(sys.argv[1])")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DBMIGRATE_"))}
    env.update(GIT_PYTHON_REFRESH="quiet", MLFLOW_ENABLE_ASYNC_TRACE_LOGGING="false")
    res = subprocess.run([sys.executable, "-c", code, "postgresql+psycopg2://" + uri.split("://", 1)[1]],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    if res.returncode:
        drop_database(pg_admin, database)
        raise RuntimeError(f"making the small source failed:\n{res.stderr[-3000:]}")
    return uri


def run_small_scenarios(names: list[str], args, workdir: Path, tag: str, failures: list[str]) -> list[dict]:
    """Each small-* scenario: one cold run (a new, empty schema cache: the schema is made by MLflow's
    migrations in a child process, and recorded), then args.small_runs warm runs (the schema from
    the cache); every run into a new target, verification on (dbmigrate's default)."""
    out = []
    try:
        src = small_source(args.pg_admin, args.small_database)
    except Exception as exc:  # noqa: BLE001
        failures.append(f"small source: {exc!r}")
        return [{"scenario": n, "harness_error": repr(exc)} for n in names]
    counts = pg_table_counts(src)
    for name in names:
        kind = SMALL[name]
        log(f"\nscenario {name}: MLflow 3.17.2 test source ({sum(counts.values())} rows in "
            f"{sum(1 for n in counts.values() if n)} non-empty tables) -> {kind}, verification on")
        cache = workdir / f"schema-cache-{name}"
        runs = []
        for i in range(1 + max(1, args.small_runs)):
            tgt = None
            try:
                if kind == "pg":
                    db = f"bench_t{tag}_{name.replace('-', '_')}_{i}"
                    tgt = pg_create_database(args.pg_admin, db)
                else:
                    tgt = f"sqlite:///{workdir / f'{name}-{i}.sqlite'}"
                res = run_dbmigrate(f"{name}-{i}", src, tgt, [], workdir, args, 600, verify=None,
                                    env_extra={"DBMIGRATE_SCHEMA_CACHE": str(cache)})
            finally:
                if kind == "pg" and tgt:
                    drop_database(args.pg_admin, tgt.rpartition("/")[2])
                elif tgt:
                    for suffix in ("", "-wal", "-shm", "-journal"):
                        Path(tgt.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
            rep = res.get("report") or {}
            run = {"cold": i == 0, "exit_code": res["exit_code"], "wall_seconds": res["wall_seconds"],
                   "report_seconds": rep.get("seconds"), "phases": rep.get("phases"),
                   "verification": (rep.get("settings") or {}).get("verify"),
                   "rows": sum(t.get("migrated") or 0 for t in rep.get("tables", [])),
                   "peak_rss_tree_mb": res["peak_rss_tree_mb"], "status": rep.get("status"),
                   "loadavg": [res["loadavg_before"], res["loadavg_after"]]}
            runs.append(run)
            log(f"  {'cold' if i == 0 else 'warm'} run: exit {res['exit_code']}, wall {res['wall_seconds']:.2f} s, "
                f"phases {run['phases']}")
            if res["exit_code"] != 0:
                failures.append(f"{name} run {i}: dbmigrate exit {res['exit_code']}")
                log("  stderr tail:\n    " + "\n    ".join(res["stderr_tail"][-15:]))
        warm = sorted((r for r in runs[1:] if r["exit_code"] == 0), key=lambda r: r["wall_seconds"])
        median = warm[len(warm) // 2] if warm else None
        out.append({"scenario": name, "target": kind, "source_rows": sum(counts.values()),
                    "source_tables": len(counts), "runs": runs, "cold": runs[0], "warm_median": median,
                    "target_seconds": SMALL_TARGET_SECONDS,
                    "result": "n/a" if median is None else
                    "PASS" if median["wall_seconds"] < SMALL_TARGET_SECONDS else "MISS"})
    return out


def render_small(small: list[dict]) -> list[str]:
    out = ["## Small migrations (wall clock of the whole process, verification included)", "",
           "| scenario | rows | cold: wall s | warm: wall s (median) | target | result | warm phases (s) "
           "| cold phases (s) | peak RSS tree (MB) | load average (1 min, warm runs) |",
           "|---|---:|---:|---:|---:|---|---|---|---:|---|"]
    for s in small:
        if s.get("harness_error"):
            out.append(f"| {s['scenario']} | FAILED: {s['harness_error'][:120]} |" + " |" * 8)
            continue
        w, c = s.get("warm_median") or {}, s["cold"]

        def ph(p):
            return ", ".join(f"{k} {v:.2f}" for k, v in (p or {}).items())
        walls = ", ".join(format(r["wall_seconds"], ".2f") for r in s["runs"][1:])
        out.append(f"| {s['scenario']} | {_n(w.get('rows'))} | {c['wall_seconds']:.2f} | "
                   f"{_n(w.get('wall_seconds'), '.2f')} ({walls}) "
                   f"| < {s['target_seconds']:.0f} s | {s['result']} | {ph(w.get('phases'))} | {ph(c.get('phases'))} "
                   f"| {_n(w.get('peak_rss_tree_mb'), '.0f')} | "
                   f"{', '.join(str(r['loadavg'][0]).split()[0] for r in s['runs'][1:] if r.get('loadavg'))} |")
    out += ["", "cold: the first run, with an empty schema cache (MLflow's migrations make the target schema in a "
            "child process and it is recorded); warm: the schema replayed from the cache and checked. Phases "
            "are dbmigrate's own (report JSON `phases`); the rest of the wall clock is process start, imports "
            "and the report.", ""]
    return out


# ----------------------------------------------------------------------------- rendering
def _n(v, fmt=",.0f", none="–"):
    return none if v is None else format(v, fmt)


def _pct(v):
    return "–" if v is None else f"{100 * v:.0f} %"


def render_markdown(doc: dict) -> str:
    m, cfg = doc["machine"], doc["config"]
    if not doc["scenarios"]:
        return "\n".join(["# dbmigrate benchmark: small migrations", "",
                          f"{doc['started']} (UTC). dbmigrate at `{(m['dbmigrate_commit'] or '?')[:12]}`"
                          f"{' + uncommitted changes' if m['dbmigrate_dirty'] else ''}. Machine: {m['cpu_model']}, "
                          f"{m['cpu_count']} CPUs; PostgreSQL {m['postgresql']}; Python {m['python']}.", "",
                          *render_small(doc.get("small") or [])])
    out = [f"# dbmigrate benchmark: {cfg['scale']} ({cfg['metrics']:,} metric rows)", ""]
    out.append(f"{doc['started']} (UTC), {doc['seconds']:.0f} s. dbmigrate {m['dbmigrate_version']} at "
               f"`{(m['dbmigrate_commit'] or '?')[:12]}`"
               f"{' + uncommitted changes (source sha256 ' + m['dbmigrate_source_sha256'][:12] + ')' if m['dbmigrate_dirty'] else ''}; "
               f"workers {cfg['workers'] or 'default'}, batch size {cfg['batch_size'] or 'default'}.  ")
    out.append(f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs, {m['ram_gib']} GiB RAM, Linux {m['kernel']}; "
               f"PostgreSQL {m['postgresql']}; {m['mongodb'] or 'no MongoDB'}; Python {m['python']}, "
               f"pymongo {m['pymongo']}, psycopg2 {m['psycopg2']}.  ")
    src = doc["source"]
    out.append(f"Source: `{src['database']}` ({', '.join(f'{t} {n:,}' for t, n in src['counts'].items() if n)}).")
    out.append("")
    out.append("## Summary (metrics table = headline)")
    out.append("")
    out.append("| scenario | metrics rows | seconds | rows/s | limit | limit rows/s | ratio | target | result "
               "| s / M rows | peak RSS tree (MB) | max 1 proc (MB) | RSS < 400 MB | all rows | wall s "
               "| rows/s (all) | s / M rows (all) |")
    out.append("|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for s in doc["scenarios"]:
        h, t = s.get("metrics") or {}, s["total"]
        if s.get("harness_error") or s["exit_code"] != 0:
            err = s.get("harness_error") or s.get("error") or f"exit {s['exit_code']}"
            out.append(f"| {s['scenario']} | FAILED: {str(err)[:120].replace('|', '/')} |" + " |" * 15)
            continue
        out.append(
            f"| {s['scenario']} | {_n(h.get('rows'))} | {_n(h.get('seconds'), '.2f')} | {_n(h.get('rows_per_s'))} "
            f"| {h.get('limit_key') or '–'} | {_n(h.get('limit_rows_per_s'))} | {_pct(h.get('ratio'))} "
            f"| {_pct(h.get('target_ratio')) if h.get('target_ratio') else '–'} | {h.get('result', '–')} "
            f"| {_n(h.get('s_per_million_rows'), '.2f')} | {s['peak_rss_tree_mb']:.0f} | {s['peak_rss_single_mb']:.0f} "
            f"| {s['rss_result']} | {_n(t['rows'])} | {t['wall_seconds']:.2f} | {_n(t['rows_per_s'])} "
            f"| {_n(t['s_per_million_rows'], '.2f')} |")
    out.append("")
    out.append("ratio = dbmigrate metrics rows/s / limit rows/s. Targets: PostgreSQL -> MongoDB >= 90 % of "
               "the MongoDB raw ingest limit; SQL -> SQL >= 70 % of the target's ingest limit; peak RSS of "
               "the process tree < 400 MB (sqlite-pg, mongo-pg, parquet-restore: the limit is the source read "
               "limit plus COPY FROM one after the other, see Limits). pg-null and parquet-write have no stated "
               "target (info). Per-table seconds "
               "are wall-clock spans of the table's parts (parts of other tables may run in between); "
               "'all' columns use the wall time of the whole dbmigrate process (start-up, schema, plan, "
               "copy, indexes/sequences; `--verify none`).")
    out.append("")
    if doc.get("small"):
        out += render_small(doc["small"])
    out.append("## Limits (same data, same machine, same run)")
    out.append("")
    out.append("| key | measurement | rows | seconds | rows/s | MB/s | note |")
    out.append("|---|---|---:|---:|---:|---:|---|")
    for lm in doc["limits"]:
        out.append(f"| {lm['key']} | {lm['name']} | {lm['rows']:,} | {lm['seconds']:.3f} | {lm['rows_per_s']:,.0f} "
                   f"| {_n(lm['mb_per_s'], '.1f')} | {lm['note'].replace('|', '/')} |")
    if doc.get("limit_errors"):
        out.append("")
        out.extend(f"- limit failed: {e}" for e in doc["limit_errors"])
    out.append("")
    out.append("## Per scenario")
    for s in doc["scenarios"]:
        out.append("")
        out.append(f"### {s['scenario']}: {s['title']}")
        out.append("")
        if s.get("harness_error") or s["exit_code"] != 0:
            out.append(f"FAILED: {s.get('harness_error') or s.get('error') or s['exit_code']}")
            continue
        out.append("| table | destination | rows | seconds | rows/s | source read rows/s | ratio to read |")
        out.append("|---|---|---:|---:|---:|---:|---:|")
        for t in s["tables"]:
            out.append(f"| {t['table']} | {t['destination'] or ''} | {_n(t['migrated'])} | {_n(t['seconds'], '.2f')} "
                       f"| {_n(t['rows_per_s'])} | {_n(t['source_read_rows_per_s'])} | {_pct(t['ratio_to_source_read'])} |")
        t = s["total"]
        out.append(f"| **all tables (process wall clock)** | | **{_n(t['rows'])}** | **{t['wall_seconds']:.2f}** "
                   f"| **{_n(t['rows_per_s'])}** | {_n(t['source_read_rows_per_s'])} | {_pct(t['ratio_to_source_read'])} |")
        out.append("")
        extra = [f"dbmigrate's own total {t['report_seconds']:.2f} s" if t.get("report_seconds") is not None else "",
                 f"workers {s['workers']} logged by dbmigrate" if s.get("workers") else "",
                 f"{s['run'].get('processes_seen', '?')} processes seen, {s['run'].get('cpu_seconds', 0):.1f} CPU s",
                 f"peak RSS tree {s['peak_rss_tree_mb']:.0f} MB (PSS {s['peak_pss_tree_mb']:.0f} MB, "
                 f"largest process {s['peak_rss_single_mb']:.0f} MB, up to {s['max_processes']} processes)",
                 f"target check: {s['target_check']}" if s.get("target_check") else "",
                 f"limit documents vs stored: {s['limit_shape']}" if s.get("limit_shape") else "",
                 f"load average {s['run']['loadavg_before']} -> {s['run']['loadavg_after']}"]
        out.append("; ".join(x for x in extra if x) + ".")
        for n in s.get("notes", []):
            out.append(f"- note: {n}")
    if doc.get("scaling"):
        out.append("")
        out.append("## Scaling (newest result per scale in this directory)")
        out.append("")
        out.append("| scenario | scale | metrics rows | s / M metric rows | metrics rows/s | peak RSS tree (MB) | file |")
        out.append("|---|---|---:|---:|---:|---:|---|")
        for r in doc["scaling"]:
            out.append(f"| {r['scenario']} | {r['scale']} | {r['rows']:,} | {_n(r['s_per_million_rows'], '.2f')} "
                       f"| {_n(r['rows_per_s'])} | {_n(r['peak_rss_tree_mb'], '.0f')} | {r['file']} |")
    out.append("")
    return "\n".join(out)


def scaling_rows(out_dir: Path, current: dict, current_file: str) -> list[dict]:
    newest: dict[str, tuple[str, dict]] = {}
    for p in sorted(out_dir.glob("*-*.json")):
        if p.name.startswith("latest"):
            continue
        try:
            d = json.loads(p.read_text())
            newest[d["config"]["scale"]] = (p.name, d)
        except Exception:  # noqa: BLE001 - not one of ours
            continue
    newest[current["config"]["scale"]] = (current_file, current)
    rows = []
    for scale, (fname, d) in sorted(newest.items(), key=lambda kv: kv[1][1]["config"]["metrics"]):
        for s in d.get("scenarios", []):
            h = s.get("metrics")
            if h and s.get("exit_code") == 0:
                rows.append({"scenario": s["scenario"], "scale": scale, "rows": h["rows"],
                             "s_per_million_rows": h["s_per_million_rows"], "rows_per_s": h["rows_per_s"],
                             "peak_rss_tree_mb": s["peak_rss_tree_mb"], "file": fname})
    order = {s.name: i for i, s in enumerate(SCENARIOS)}
    rows.sort(key=lambda r: (order.get(r["scenario"], 99), r["rows"]))
    return rows if len({r["scale"] for r in rows}) > 1 else []


def print_summary(doc: dict) -> None:
    log("")
    for s in doc.get("small") or []:
        w = s.get("warm_median") or {}
        log(f"{s['scenario']:<16} cold {s.get('cold', {}).get('wall_seconds', float('nan')):.2f} s, warm (median) "
            f"{_n(w.get('wall_seconds'), '.2f')} s, target < {SMALL_TARGET_SECONDS:.0f} s: {s.get('result')}")
    hdr = (f"{'scenario':<16} {'metrics':>11} {'sec':>8} {'rows/s':>10} {'limit r/s':>10} {'ratio':>6} "
           f"{'target':>6} {'':4} {'s/M':>6} {'RSS tree':>8} {'max1':>6} {'all rows':>10} {'wall s':>8} "
           f"{'all r/s':>9} {'s/M all':>7}")
    log(hdr)
    log("-" * len(hdr))
    for s in doc["scenarios"]:
        h, t = s.get("metrics") or {}, s["total"]
        if s.get("harness_error") or s["exit_code"] != 0:
            log(f"{s['scenario']:<16} FAILED: {s.get('harness_error') or s.get('error') or s['exit_code']}")
            continue
        log(f"{s['scenario']:<16} {_n(h.get('rows')):>11} {_n(h.get('seconds'), '.2f'):>8} "
            f"{_n(h.get('rows_per_s')):>10} {_n(h.get('limit_rows_per_s')):>10} {_pct(h.get('ratio')):>6} "
            f"{_pct(h.get('target_ratio')) if h.get('target_ratio') else '–':>6} {h.get('result', '–'):4} "
            f"{_n(h.get('s_per_million_rows'), '.2f'):>6} {s['peak_rss_tree_mb']:>6.0f}MB {s['peak_rss_single_mb']:>4.0f}MB "
            f"{_n(t['rows']):>10} {t['wall_seconds']:>8.2f} {_n(t['rows_per_s']):>9} {_n(t['s_per_million_rows'], '.2f'):>7}")


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metrics", type=int, default=None,
                    help="metric rows in the source (the scale; default 1000000, with --smoke 100000)")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs in the source (default: metrics/100 within 1000..10000; tags 5x, params 10x)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--scenarios", default=",".join([*(s.name for s in SCENARIOS), *SMALL]),
                    help="comma list of: " + ", ".join([*(s.name for s in SCENARIOS), *SMALL]))
    ap.add_argument("--mysql-admin", default=MYSQL_ADMIN_URI, help="the MySQL/MariaDB server used (pg-mysql)")
    ap.add_argument("--mysql-insert-limit-rows", type=int, default=100_000,
                    help="rows for the MySQL multi-row INSERT comparison (a rate; 0: not measured)")
    ap.add_argument("--small-runs", type=int, default=3,
                    help="warm runs of each small-* scenario (the median counts); one cold run comes first")
    ap.add_argument("--small-database", default="bench_small",
                    help="the small MLflow-made source of the small-* scenarios (made when missing)")
    ap.add_argument("--workers", type=int, default=None, help="passed to dbmigrate (default: its own)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="passed to dbmigrate and used for the MongoDB limit (default: dbmigrate's 10000)")
    ap.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    ap.add_argument("--reuse-db", action="store_true",
                    help="use an existing bench_<scale> source (row counts checked) instead of regenerating it")
    ap.add_argument("--database", default=None, help="source database name (default bench_<scale>)")
    ap.add_argument("--keep-source", action="store_true", help="--smoke: keep the generated source database")
    ap.add_argument("--pg-admin", default=ADMIN_URI, help="any database of the PostgreSQL server used")
    ap.add_argument("--mongo-limit-docs", type=int, default=200_000,
                    help="documents for the MongoDB insert/find limits (a rate; SecantusDB takes ~15k/s)")
    ap.add_argument("--encode-limit-docs", type=int, default=1_000_000, help="documents for the bson.encode limit")
    ap.add_argument("--sqlite-limit-rows", type=int, default=0, help="rows for the SQLite limit (default all)")
    ap.add_argument("--copy-formats", default="text,binary",
                    help="COPY FROM limit formats, the best counts: text (dbmigrate from MongoDB, SQLite, MySQL), "
                         "binary (dbmigrate PostgreSQL -> PostgreSQL)")
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per dbmigrate run")
    ap.add_argument("--stall-timeout", type=float, default=None,
                    help="kill a dbmigrate run whose processes used no CPU for this long (default 1800 s, "
                         "--smoke 300 s; 0: never). Index builds on a slow server legitimately idle a while")
    ap.add_argument("--smoke", action="store_true",
                    help="smoke test that the harness works: 100k metrics (unless --metrics), every scenario, small limit samples, source dropped after")
    args = ap.parse_args(argv)
    if args.metrics is None:
        args.metrics = 100_000 if args.smoke else 1_000_000
    if args.smoke:
        args.mongo_limit_docs = min(args.mongo_limit_docs, 20_000)
        args.encode_limit_docs = min(args.encode_limit_docs, 100_000)
    if args.stall_timeout is None:
        args.stall_timeout = 300.0 if args.smoke else 1800.0
    args.copy_formats = [f.strip() for f in args.copy_formats.split(",") if f.strip()]
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME and n not in SMALL]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; choose from {', '.join([*BY_NAME, *SMALL])}")
    selected = [s for s in SCENARIOS if s.name in names]
    small = [n for n in names if n in SMALL]
    scale = scale_name(args.metrics) if selected else "small"
    database = args.database or f"bench_{scale}"
    batch = args.batch_size or L.DEFAULT_BATCH
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()
    failures: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix=f"dbm-bench-{scale}-"))
    server = None
    generated = False
    tag = f"{os.getpid()}"
    created_pg: list[str] = []
    doc: dict = {}
    try:
        sizes = sizes_for(args.metrics, args.runs)
        counts: dict[str, int] = {}
        gen_info = None
        lim = Limits()
        results: list[dict] = []
        mongo_version = None
        if selected:  # the small-* scenarios need no generated source, limits or MongoDB
            # ---------------------------------------------------------------- source
            sizes = sizes_for(args.metrics, args.runs)
            src_uri = pg_dsn(args.pg_admin, database)
            gen_info = None
            if args.reuse_db and pg_database_exists(args.pg_admin, database):
                log(f"source: reusing {database}")
            else:
                log(f"source: generating {database}: {sizes}, seed {args.seed}")
                gen_info = generate(args.pg_admin, database, sizes, args.seed, drop_existing=True,
                                    log=lambda s: log("  " + s.strip()))
                generated = True
            counts = pg_table_counts(src_uri)
            want = {"metrics": sizes.metrics, "runs": sizes.runs, "params": sizes.params, "tags": sizes.tags}
            wrong = {t: (counts.get(t), n) for t, n in want.items() if counts.get(t) != n}
            if wrong:
                raise SystemExit(f"{database} does not hold the expected rows (table: (has, expected)) {wrong}; "
                                 "run without --reuse-db to regenerate it")
            log("  " + ", ".join(f"{t} {n:,}" for t, n in counts.items() if n))

            # ---------------------------------------------------------------- MongoDB server
            mongo_uri = mongo_version = None
            if any(s.target in ("mongo", "null") or s.source == "mongo" for s in selected):
                L._repo_on_path()
                from tests.support.servers import SecantusServer
                server = SecantusServer().start()
                mongo_uri = server.uri
                import pymongo
                c = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
                mongo_version = c.server_info().get("version")
                c.close()
                log(f"SecantusDB {mongo_version} at {mongo_uri} (storage {server.storage})")
            machine = machine_info(args.pg_admin, mongo_version)
            log(f"machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, {machine['ram_gib']} GiB; "
                f"PostgreSQL {machine['postgresql']}; commit {machine['dbmigrate_commit'][:12]}"
                f"{' (dirty)' if machine['dbmigrate_dirty'] else ''}")

            # ---------------------------------------------------------------- limits
            lim = measure_limits(args, src_uri, counts, selected, mongo_uri, workdir, batch)
            failures += lim.errors
            shape_docs = getattr(lim, "shape_docs", {})

            # ---------------------------------------------------------------- scenarios
            results = []
            mongo_tables_db = None  # pg-mongo-tables' target, kept as mongo-pg's source
            mongo_dbs: list[str] = []
            mongo_source_read = None
            kept: dict[str, str] = {}  # "sqlite" / "parquet": a source kept from pg-sqlite / parquet-write
            for sc in selected:
                log(f"\nscenario {sc.name}: {sc.title}")
                entry: dict = {"scenario": sc.name, "title": sc.title, "exit_code": None, "total": {}}
                tgt = None
                src_read = None
                try:
                    extra: list[str] = []
                    source = src_uri
                    if sc.source == "mongo":
                        if mongo_tables_db is None:
                            mongo_tables_db = f"bench_s{tag}_tables"
                            mongo_dbs.append(mongo_tables_db)
                            log(f"  untimed: PostgreSQL -> MongoDB (tables layout) into {mongo_tables_db} as the source")
                            pre = run_dbmigrate("mongo-source", src_uri, mongo_with_db(mongo_uri, mongo_tables_db),
                                                ["--layout", "tables"], workdir, args, args.timeout)
                            if pre["exit_code"] != 0:
                                raise RuntimeError(f"preparing the MongoDB source failed (exit {pre['exit_code']}): "
                                                   + "\n".join(pre["stderr_tail"][-10:]))
                        source = mongo_with_db(mongo_uri, mongo_tables_db)
                    elif sc.source in ("sqlite", "parquet"):
                        if kept.get(sc.source) is None:
                            path = workdir / f"source.{sc.source}"
                            uri = f"{sc.source}://{'/' if sc.source == 'sqlite' else ''}{path}"
                            log(f"  untimed: PostgreSQL -> {sc.source} into {path} as the source")
                            pre = run_dbmigrate(f"{sc.source}-source", src_uri, uri, [], workdir, args, args.timeout)
                            if pre["exit_code"] != 0:
                                raise RuntimeError(f"preparing the {sc.source} source failed (exit {pre['exit_code']}): "
                                                   + "\n".join(pre["stderr_tail"][-10:]))
                            kept[sc.source] = str(path)
                        source = f"{sc.source}://{'/' if sc.source == 'sqlite' else ''}{kept[sc.source]}"
                        if sc.source == "sqlite":
                            log("  limits: SQLite source read (sqlite3, the same file)")
                            lim.guarded("sqlite read", lambda: lim.add("sqlite.read.metrics", L.sqlite_read_limit(
                                kept["sqlite"], "metrics", batch)))
                            if "sqlite.read.metrics" in lim.by_key and "pg_copy_in.best" in lim.by_key:
                                lim.add("sqlite_pg.limit", L.serial(
                                    "sqlite3 read (tuples) + pg COPY FROM best", counts["metrics"],
                                    lim.by_key["sqlite.read.metrics"], lim.by_key["pg_copy_in.best"]))
                        src_read = lim.rate("sqlite.read.metrics" if sc.source == "sqlite" else "parquet.read")
                    if sc.target == "pg":
                        name = f"bench_t{tag}_{sc.name.replace('-', '_')}"
                        tgt = pg_create_database(args.pg_admin, name)
                        created_pg.append(name)
                    elif sc.target == "sqlite":
                        tgt = f"sqlite:///{workdir / (sc.name + '.sqlite')}"
                    elif sc.target == "parquet":
                        tgt = f"parquet://{workdir / (sc.name + '.snapshot')}"
                    elif sc.target == "mysql":
                        tgt = L.mysql_create_database(args.mysql_admin, f"bench_t{tag}_{sc.name.replace('-', '_')}")
                    else:
                        name = f"bench_t{tag}_{sc.name.replace('-', '_')}"
                        mongo_dbs.append(name)
                        tgt = mongo_with_db(mongo_uri, name)
                        extra += ["--layout", sc.layout]
                        if sc.target == "null":
                            extra.append("--dry-run")
                    res = run_dbmigrate(sc.name, source, tgt, extra, workdir, args, args.timeout)
                    if sc.source == "mongo":
                        # Measured after dbmigrate read the collection (warm server cache): a ceiling.
                        n = min(counts["metrics"], args.mongo_limit_docs)
                        log("  limits: MongoDB source read (after the run, cache warm)")
                        lim.guarded("mongo find", lambda: lim.add("mongo.read.metrics.raw", mongo_read_limit(
                            mongo_uri, mongo_tables_db, "metrics", n, batch, True)))
                        lim.guarded("mongo find", lambda: lim.add("mongo.read.metrics.dict", mongo_read_limit(
                            mongo_uri, mongo_tables_db, "metrics", n, batch, False)))
                        mongo_source_read = src_read = lim.rate("mongo.read.metrics.raw")
                        if "mongo.read.metrics.dict" in lim.by_key and "pg_copy_in.best" in lim.by_key:
                            lim.add("mongo_pg.limit", L.serial(
                                "pymongo find (dicts) + pg COPY FROM best", counts["metrics"],
                                lim.by_key["mongo.read.metrics.dict"], lim.by_key["pg_copy_in.best"]))
                    entry = summarise(sc, res, lim, counts["metrics"], src_read)
                    ok = res["exit_code"] == 0 and entry["metrics"] is not None
                    if res["exit_code"] != 0:
                        failures.append(f"{sc.name}: dbmigrate exit {res['exit_code']}: {entry.get('error')}")
                        log("  dbmigrate FAILED, stderr tail:\n    " + "\n    ".join(res["stderr_tail"][-15:]))
                    elif entry["metrics"] is None:
                        failures.append(f"{sc.name}: no metrics row in dbmigrate's report")
                    if ok and sc.target != "null":
                        n = target_count(sc.target, tgt, sc.metrics_dest)
                        entry["target_check"] = f"{sc.metrics_dest} holds {n:,} of {counts['metrics']:,}" + \
                            ("" if n == counts["metrics"] else " -- MISMATCH")
                        if sc.target == "mongo" and shape_docs.get(sc.metrics_dest):
                            entry["limit_shape"] = check_limit_shape(mongo_uri, tgt.rpartition("/")[2], sc.metrics_dest,
                                                                     shape_docs[sc.metrics_dest])
                    elif ok:
                        entry["target_check"] = f"dry run: {entry['metrics']['rows']:,} metrics rows converted"
                    h = entry.get("metrics") or {}
                    log(f"  exit {res['exit_code']}, wall {res['wall_seconds']:.2f} s; metrics {_n(h.get('rows'))} rows "
                        f"in {_n(h.get('seconds'), '.2f')} s = {_n(h.get('rows_per_s'))} rows/s, "
                        f"ratio {_pct(h.get('ratio'))} of {h.get('limit_key')} ({h.get('result')}); "
                        f"peak RSS tree {res['peak_rss_tree_mb']:.0f} MB (largest process {res['peak_rss_single_mb']:.0f} MB)")
                except Exception as exc:  # noqa: BLE001 - recorded, next scenario
                    traceback.print_exc()
                    failures.append(f"{sc.name}: {exc!r}")
                    entry["harness_error"] = repr(exc)
                finally:
                    if sc.target == "pg" and tgt:
                        drop_database(args.pg_admin, tgt.rpartition("/")[2])
                        created_pg.remove(tgt.rpartition("/")[2])
                    elif sc.target == "sqlite" and tgt:
                        if "sqlite-pg" in names and entry.get("exit_code") == 0 and "sqlite" not in kept:
                            kept["sqlite"] = tgt.removeprefix("sqlite:///")
                        else:
                            for suffix in ("", "-wal", "-shm", "-journal"):
                                Path(tgt.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
                    elif sc.target == "parquet" and tgt:
                        if "parquet-restore" in names and entry.get("exit_code") == 0 and "parquet" not in kept:
                            kept["parquet"] = tgt.removeprefix("parquet://")
                        else:
                            shutil.rmtree(tgt.removeprefix("parquet://"), ignore_errors=True)
                    elif sc.target == "mysql" and tgt:
                        L.mysql_drop_database(args.mysql_admin, tgt.rpartition("/")[2])
                    elif sc.target in ("mongo", "null") and tgt:
                        name = tgt.rpartition("/")[2]
                        keep = sc.name == "pg-mongo-tables" and "mongo-pg" in names and entry.get("exit_code") == 0
                        if keep:
                            mongo_tables_db = name
                        else:
                            _mongo_drop(mongo_uri, name)
                            mongo_dbs.remove(name)
                results.append(entry)
            for name in list(mongo_dbs):
                _mongo_drop(mongo_uri, name)
        if not selected:
            machine = machine_info(args.pg_admin, None)
        small_results = run_small_scenarios(small, args, workdir, tag, failures) if small else []

        # ---------------------------------------------------------------- write
        doc = {
            "started": started.isoformat(timespec="seconds"), "seconds": time.perf_counter() - t_start,
            "config": {"scale": scale, "metrics": args.metrics, "smoke": args.smoke, "seed": args.seed,
                       "scenarios": [s.name for s in selected], "workers": args.workers,
                       "batch_size": args.batch_size, "limit_batch_size": batch,
                       "mongo_limit_docs": args.mongo_limit_docs, "encode_limit_docs": args.encode_limit_docs,
                       "copy_formats": args.copy_formats, "reuse_db": args.reuse_db},
            "machine": machine,
            "source": {"database": database, "counts": counts, "generated": generated,
                       "generation": gen_info and {"seconds": gen_info["seconds"], "bytes": gen_info["bytes"],
                                                   "alembic": gen_info["alembic"]},
                       "sizes": asdict(sizes)},
            "limits": [{"key": k, **lim.by_key[k].as_dict()} for k in lim.order],
            "limit_errors": lim.errors,
            "scenarios": results,
            "small": small_results,
            "failures": failures,
        }
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        json_path = out_dir / f"{stamp}-{scale}.json"
        doc["scaling"] = scaling_rows(out_dir, doc, json_path.name)
        json_path.write_text(json.dumps(doc, indent=2, default=str, allow_nan=False))
        md = render_markdown(doc)
        md_path = out_dir / f"latest-{scale}.md"
        md_path.write_text(md)
        (out_dir / f"{stamp}-{scale}.md").write_text(md)  # latest-<scale> is replaced by any run of that scale
        print_summary(doc)
        log("")
        log(md)
        log(f"wrote {json_path} and {md_path}")
    except SystemExit:
        raise
    except BaseException as exc:
        traceback.print_exc()
        failures.append(f"harness: {exc!r}")
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        for name in created_pg:
            drop_database(args.pg_admin, name)
        if server:
            server.stop()
            shutil.rmtree(server.storage, ignore_errors=True)
            Path(server.storage).with_suffix(".log").unlink(missing_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)
        if args.smoke and generated and not args.keep_source:
            drop_database(args.pg_admin, database)
    if failures:
        log("\nHARNESS FAILURES:\n  " + "\n  ".join(failures))
        return 1
    return 0


def _mongo_drop(mongo_uri: str, name: str) -> None:
    import pymongo
    c = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    try:
        c.drop_database(name)
    finally:
        c.close()


if __name__ == "__main__":
    sys.exit(main())
