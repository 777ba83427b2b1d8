"""Measure the hardware/server limits dbmigrate is compared against, on the benchmark data.

    python -m benchmarks.limits --pg-uri postgresql://postgres@127.0.0.1:5432/bench_1m \
        (--mongo-uri mongodb://127.0.0.1:PORT | --start-secantus) --mongo-docs 200000 \
        --sqlite /tmp/bench_limits.sqlite [--repeat 3] [--json limits.json]

Every measurement reports rows, seconds and rows/s (and MB/s where bytes are known). With
``--repeat N`` each one runs N times and the fastest run is reported: these are ceilings, so the
least-disturbed run is the one that counts. Only the operation named is timed; preparing its input
(reading rows, building documents, creating scratch schemas, loading parent rows) is not.

What each number means:

* ``pg COPY TO (text|binary)`` -- :func:`pg_copy_out`. ``COPY metrics TO STDOUT`` through
  psycopg2 into a sink that only counts bytes: how fast the source server can hand over the whole
  table in bulk. No reader can get rows out of PostgreSQL faster than this.
* ``pg fetch via psycopg2`` -- :func:`pg_fetch_rows`. ``SELECT *`` through a server-side cursor
  (10,000 rows per fetch), rows turned into Python tuples and dropped: the floor for any reader
  that wants Python objects (dbmigrate's SQL reader does at least this much work).
* ``pg COPY FROM ...`` -- :func:`pg_copy_in`. The PostgreSQL ingest limit: the metrics rows
  (dumped once to a temporary file, untimed) are COPYed into the metrics table of a scratch
  database that MLflow itself created (runs and experiments copied in first, so foreign keys hold).
  "indexes live" keeps MLflow's primary key, two secondary indexes and the foreign key during the
  COPY; "bare table" drops them first and times the COPY alone; "bare + rebuild" adds the time
  to rebuild the primary key, indexes and foreign key (the server's maintenance_work_mem, as dbmigrate), i.e. the best
  total a bulk loader into MLflow's schema can reach. The scratch database is dropped at the end.
* ``mongo insert_many`` -- :func:`mongo_insert_limit`. Documents shaped exactly like dbmigrate's
  ``run_metrics`` documents (built from the same metrics rows with dbmigrate's own converters:
  deterministic ``_id``, ``run_id``, ``k``, ``v``, ``timestamp``, ``step`` and null
  model_id/dataset fields) are built in memory first; only ``insert_many(ordered=False)`` in
  batches is timed, into an empty collection with just the ``_id`` index. That is the target's
  raw ingest limit through the same pymongo driver, encoding included. The ``RawBSONDocument``
  variant pre-encodes the documents, so it times the server (and the wire) alone; the difference
  between the two is pymongo's encoding cost. The scratch database is dropped afterwards.
* ``bson.encode`` -- :func:`null_sink_encode`. ``bson.encode`` of the same documents into
  nothing: the client-side cost of producing what a real mongod would be offered, i.e. the
  ceiling of a single Python process feeding any MongoDB server.
* ``mysql LOAD DATA LOCAL INFILE`` -- :func:`mysql_load_data_limit`. The metrics rows, written to
  a file first (untimed), loaded into MLflow's own MySQL/MariaDB schema (made by MLflow; keys,
  indexes and foreign key live) through PyMySQL in one statement and transaction: the MySQL
  target's bulk ingest limit. Optionally the multi-row INSERT of a sample, for comparison.
* ``sqlite executemany`` -- :func:`sqlite_executemany_limit`. ``executemany`` of the metrics
  rows into MLflow's own SQLite schema (created by MLflow; indexes and foreign keys live,
  ``PRAGMA foreign_keys=ON`` as MLflow sets it, journal_mode=WAL, synchronous=OFF), one
  transaction, 10,000 rows per call: the SQLite target's ingest limit from Python.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import psycopg2
from psycopg2 import sql

from benchmarks.generate import (REPO_ROOT, DeferredIndexes, database_name, drop_database,
                                 init_mlflow_schema, pg_dsn, sqlalchemy_uri)

METRIC_COLUMNS = ["key", "value", "timestamp", "run_uuid", "step", "is_nan"]
DEFAULT_BATCH = 10_000  # dbmigrate's default batch_size


@dataclass
class Measurement:
    name: str
    rows: int
    seconds: float
    bytes: int | None = None
    note: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    @property
    def mb_per_s(self) -> float | None:
        return None if self.bytes is None or self.seconds <= 0 else self.bytes / self.seconds / 1e6

    def as_dict(self) -> dict:
        return {**asdict(self), "rows_per_s": self.rows_per_s, "mb_per_s": self.mb_per_s}


def best_of(repeat: int, run: Callable[[], Measurement]) -> Measurement:
    """Run a measurement `repeat` times; keep the fastest (a limit is what the hardware can do)."""
    results = [run() for _ in range(max(1, repeat))]
    best = min(results, key=lambda m: m.seconds)
    if len(results) > 1:
        runs = ", ".join(f"{m.seconds:.2f}" for m in results)
        best.note = (best.note + "; " if best.note else "") + f"best of {len(results)}: {runs} s"
    return best


class CountingSink:
    """A writable file that keeps nothing: COPY TO data goes here to be counted and dropped."""

    def __init__(self):
        self.bytes = 0

    def write(self, data) -> int:
        self.bytes += len(data)
        return len(data)


def _repo_on_path() -> None:
    """dbmigrate and tests.support are imported from the checkout this file lives in."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def _connect(uri: str):
    return psycopg2.connect(pg_dsn(uri))


def _copy_stmt(cur, table: str, direction: str, fmt: str, columns: Sequence[str] | None = None) -> str:
    cols = sql.SQL("") if columns is None else \
        sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
    stmt = sql.SQL("COPY {}{} {} STDOUT WITH (FORMAT {})" if direction == "TO"
                   else "COPY {}{} {} STDIN WITH (FORMAT {})").format(
        sql.Identifier(table), cols, sql.SQL(direction), sql.SQL(fmt))
    return stmt.as_string(cur)


# ----------------------------------------------------------------------------- PostgreSQL out
def pg_copy_out(uri: str, table: str = "metrics", fmt: str = "text") -> Measurement:
    """Time ``COPY table TO STDOUT`` (text or binary) into a byte-counting sink."""
    conn = _connect(uri)
    try:
        with conn.cursor() as cur:
            sink = CountingSink()
            t0 = time.perf_counter()
            cur.copy_expert(_copy_stmt(cur, table, "TO", fmt), sink, size=1 << 20)
            seconds = time.perf_counter() - t0
            rows = cur.rowcount
    finally:
        conn.close()
    return Measurement(f"pg COPY {table} TO STDOUT ({fmt})", rows, seconds, sink.bytes)


def pg_fetch_rows(uri: str, table: str = "metrics", itersize: int = 10_000) -> Measurement:
    """Time ``SELECT *`` through a psycopg2 server-side cursor, rows built and dropped."""
    conn = _connect(uri)
    try:
        with conn.cursor(name="bench_fetch") as cur:
            t0 = time.perf_counter()
            cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            rows = 0
            while batch := cur.fetchmany(itersize):
                rows += len(batch)
            seconds = time.perf_counter() - t0
        conn.rollback()
    finally:
        conn.close()
    return Measurement(f"pg SELECT * FROM {table} via psycopg2", rows, seconds,
                       note=f"server-side cursor, {itersize} rows/fetch")


# ----------------------------------------------------------------------------- PostgreSQL in
def _dump(cur, table: str, fmt: str, path: str, where: str = "") -> int:
    query = sql.SQL("(SELECT * FROM {}{})").format(sql.Identifier(table), sql.SQL(where))
    with open(path, "wb") as f:
        cur.copy_expert(sql.SQL("COPY {} TO STDOUT WITH (FORMAT {})").format(query, sql.SQL(fmt))
                        .as_string(cur), f, size=1 << 20)
    return cur.rowcount


def _load(cur, table: str, fmt: str, path: str, columns: Sequence[str] | None = None) -> int:
    with open(path, "rb") as f:
        cur.copy_expert(_copy_stmt(cur, table, "FROM", fmt, columns), f, size=1 << 20)
    return cur.rowcount


def pg_copy_in(uri: str, table_like: str = "metrics", rows_source_uri: str | None = None,
               formats: Iterable[str] = ("text", "binary"), repeat: int = 1,
               scratch_name: str | None = None) -> list[Measurement]:
    """The PostgreSQL COPY FROM ingest limit for `table_like`'s rows, into MLflow's own schema.

    `uri` names the server the scratch database is created on (any database of it);
    `rows_source_uri` holds the rows (default: `uri`). For each format: indexes live, bare table,
    and bare table plus the rebuild of its keys, indexes and foreign keys.
    """
    source = rows_source_uri or uri
    scratch = scratch_name or f"bench_scratch_copyin_{os.getpid()}"
    scratch_uri = pg_dsn(uri, scratch)
    tmp = tempfile.mkdtemp(prefix="bench-copyin-")
    formats = list(formats)
    out: list[Measurement] = []
    drop_database(uri, scratch)
    admin = _connect(uri)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        init_mlflow_schema(sqlalchemy_uri(scratch_uri))
        src = _connect(source)
        dst = _connect(scratch_uri)
        try:
            with src.cursor() as s, dst.cursor() as d:
                # Parents first (untimed) so the foreign keys of MLflow's schema hold.
                d.execute("DELETE FROM experiments")
                for parent in ("experiments", "runs"):
                    path = os.path.join(tmp, f"{parent}.bin")
                    _dump(s, parent, "binary", path)
                    _load(d, parent, "binary", path)
                files = {}
                for fmt in formats:
                    files[fmt] = os.path.join(tmp, f"{table_like}.{fmt}")
                    rows = _dump(s, table_like, fmt, files[fmt])
                dst.commit()
                src.rollback()

                def once(fmt: str, deferred_keys: bool) -> tuple[int, float, float]:
                    """One load; returns (rows, COPY seconds, rebuild seconds or 0)."""
                    d.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table_like)))
                    deferred = DeferredIndexes.drop(d, table_like) if deferred_keys else None
                    dst.commit()
                    dst.autocommit = True
                    d.execute("CHECKPOINT")  # every run starts without dirty buffers to flush
                    # maintenance_work_mem stays the server's (as in dbmigrate's rebuild): 1GB was
                    # measured slower here (1M rows: primary key 0.90 s vs 0.79 s with 64MB; 10M:
                    # the whole rebuild 27.2 s, which dbmigrate beat with the default).
                    dst.autocommit = False
                    t0 = time.perf_counter()
                    n = _load(d, table_like, fmt, files[fmt])
                    dst.commit()
                    t_copy = time.perf_counter() - t0
                    t_build = 0.0
                    if deferred:
                        t0 = time.perf_counter()
                        deferred.restore(d)
                        dst.commit()
                        t_build = time.perf_counter() - t0
                    if n != rows:
                        raise RuntimeError(f"dumped {rows} rows of {table_like} but loaded {n}")
                    return n, t_copy, t_build

                for fmt in formats:
                    size = os.path.getsize(files[fmt])
                    live = [once(fmt, False) for _ in range(max(1, repeat))]
                    after = [once(fmt, True) for _ in range(max(1, repeat))]
                    def runs(times: list[float]) -> str:
                        return f"best of {len(times)}: " + ", ".join(f"{t:.2f}" for t in times) + " s" \
                            if len(times) > 1 else ""

                    def note(*parts: str) -> str:
                        return "; ".join(p for p in parts if p)

                    live_times = [t for _, t, _ in live]
                    out.append(Measurement(f"pg COPY FROM ({fmt}) -> {table_like}, indexes+FK live",
                                           rows, min(live_times), size, runs(live_times)))
                    bare_times = [t for _, t, _ in after]
                    out.append(Measurement(f"pg COPY FROM ({fmt}) -> {table_like}, bare table",
                                           rows, min(bare_times), size, note("COPY only", runs(bare_times))))
                    _, t_copy, t_build = min(after, key=lambda r: r[1] + r[2])
                    out.append(Measurement(f"pg COPY FROM ({fmt}) -> {table_like}, bare + rebuild",
                                           rows, t_copy + t_build, size, note(
                                               f"copy {t_copy:.2f} s + keys/indexes/FK {t_build:.2f} s",
                                               runs([c + b for _, c, b in after]))))
        finally:
            src.close()
            dst.close()
    finally:
        admin.close()
        drop_database(uri, scratch)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- documents
def metric_rows(uri: str, limit: int | None = None, table: str = "metrics") -> list[tuple]:
    """Metrics rows (key, value, timestamp, run_uuid, step, is_nan), heap order, first `limit`."""
    conn = _connect(uri)
    try:
        with conn.cursor(name="bench_rows") as cur:
            cur.itersize = 50_000
            cur.execute(sql.SQL("SELECT {} FROM {}{}").format(
                sql.SQL(", ").join(map(sql.Identifier, METRIC_COLUMNS)), sql.Identifier(table),
                sql.SQL(" LIMIT {}").format(sql.Literal(limit)) if limit else sql.SQL("")))
            return list(cur)
    finally:
        conn.close()


def metric_documents(rows: Iterable[tuple]) -> list[dict]:
    """dbmigrate's run_metrics documents for metrics rows, built with its own converters."""
    _repo_on_path()
    from dbmigrate.converters import metric_object_id, metric_value

    return [{"_id": metric_object_id(key, ts, step, run, value, is_nan), "run_id": run, "k": key,
             "v": metric_value(value, is_nan), "timestamp": ts, "step": step, "model_id": None,
             "dataset_name": None, "dataset_digest": None}
            for key, value, ts, run, step, is_nan in rows]


def null_sink_encode(docs: Sequence[dict] | int, rows_source_uri: str | None = None) -> Measurement:
    """Time ``bson.encode`` of each document, output dropped (bytes counted).

    `docs` is the documents, or a count of metrics rows to read from `rows_source_uri` first.
    """
    import bson

    if isinstance(docs, int):
        docs = metric_documents(metric_rows(rows_source_uri, docs))
    encode = bson.encode
    total = 0
    t0 = time.perf_counter()
    for doc in docs:
        total += len(encode(doc))
    seconds = time.perf_counter() - t0
    return Measurement("bson.encode run_metrics docs (null sink)", len(docs), seconds, total,
                       f"{total / len(docs):.0f} B/doc" if docs else "")


def mongo_insert_limit(mongo_uri: str, n_docs: int | Sequence[dict], batch_size: int = DEFAULT_BATCH,
                       raw: bool = False, rows_source_uri: str | None = None,
                       database: str | None = None) -> Measurement:
    """Time ``insert_many(ordered=False)`` of pre-built run_metrics documents in batches.

    `n_docs` is a count of metrics rows to read from `rows_source_uri`, or the documents
    themselves. With `raw`, documents are pre-encoded ``RawBSONDocument``s (encoding untimed).
    Writes into an empty scratch database (dropped before and after).
    """
    import bson
    import pymongo
    from bson.raw_bson import RawBSONDocument

    docs = metric_documents(metric_rows(rows_source_uri, n_docs)) if isinstance(n_docs, int) else n_docs
    payload = [RawBSONDocument(bson.encode(d)) for d in docs] if raw else docs
    size = sum(len(bson.encode(d)) for d in docs) if not raw else sum(len(d.raw) for d in payload)
    name = database or f"bench_limits_{os.getpid()}"
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000, socketTimeoutMS=600_000)
    try:
        client.drop_database(name)
        coll = client[name]["run_metrics"]
        coll.insert_one({"_id": "warm-up"})  # creates the collection outside the timing
        coll.delete_one({"_id": "warm-up"})
        t0 = time.perf_counter()
        for i in range(0, len(payload), batch_size):
            coll.insert_many(payload[i:i + batch_size], ordered=False)
        seconds = time.perf_counter() - t0
        stored = coll.count_documents({})
        if stored != len(payload):
            raise RuntimeError(f"inserted {len(payload)} documents but the server holds {stored}")
        version = client.server_info().get("version", "?")
    finally:
        try:
            client.drop_database(name)
        finally:
            client.close()
    kind = "RawBSONDocument (pre-encoded)" if raw else "dict (driver encodes)"
    return Measurement(f"mongo insert_many {kind}", len(payload), seconds, size,
                       f"batch {batch_size}, ordered=False, _id index only, server {version}")


# ----------------------------------------------------------------------------- SQLite
def sqlite_executemany_limit(path: str, rows: Sequence[tuple], parents: dict[str, tuple[list, list]] | None = None,
                             chunk: int = DEFAULT_BATCH, fresh_schema: bool = True) -> Measurement:
    """Time ``executemany`` INSERT of metrics rows into MLflow's SQLite schema.

    `rows`: (key, value, timestamp, run_uuid, step, is_nan) tuples. `parents`: {table: (columns,
    rows)} inserted first, untimed (experiments, runs), so MLflow's foreign keys hold. With
    `fresh_schema` the file is recreated and MLflow creates its schema in it.
    """
    if fresh_schema:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(path + suffix).unlink(missing_ok=True)
        init_mlflow_schema(f"sqlite:///{os.path.abspath(path)}")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA foreign_keys=ON")  # as MLflow's sessions do
        conn.execute("BEGIN")
        conn.execute("DELETE FROM metrics")
        for table, (columns, prows) in (parents or {}).items():
            if table == "experiments":
                conn.execute("DELETE FROM experiment_tags")
                conn.execute("DELETE FROM experiments")
            conn.executemany(f'INSERT INTO {table} ({", ".join(columns)}) VALUES '
                             f'({", ".join("?" * len(columns))})', prows)
        conn.execute("COMMIT")
        insert = f'INSERT INTO metrics ({", ".join(METRIC_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)'
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        for i in range(0, len(rows), chunk):
            conn.executemany(insert, rows[i:i + chunk])
        conn.execute("COMMIT")
        seconds = time.perf_counter() - t0
        n = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
    finally:
        conn.close()
    if n != len(rows):
        raise RuntimeError(f"inserted {len(rows)} rows but the file holds {n}")
    return Measurement("sqlite executemany -> metrics (MLflow schema)", len(rows), seconds, None,
                       f"WAL, synchronous=OFF, foreign_keys=ON, indexes live, {chunk} rows/call, "
                       f"1 transaction; file {os.path.getsize(path) / 1e6:.0f} MB")


def serial(name: str, rows: int, *parts: Measurement) -> Measurement:
    """Two steps one after the other (read, then load): the time per row is the sum of each step's
    time per row (the parts may be measured on samples of different sizes; each is a rate)."""
    per_row = sum(1.0 / m.rows_per_s for m in parts)
    return Measurement(name, rows, rows * per_row, None,
                       " + ".join(f"{m.name} {m.rows_per_s:,.0f}/s" for m in parts))


def sqlite_read_limit(path: str, table: str = "metrics", chunk: int = DEFAULT_BATCH) -> Measurement:
    """``SELECT <metrics columns>`` through sqlite3 (fetchmany in batch-size chunks), rows built as
    tuples and dropped: the floor of any Python reader of a SQLite source."""
    import sqlite3
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        n = 0
        t0 = time.perf_counter()
        cur = conn.execute("SELECT " + ", ".join(f'"{c}"' for c in METRIC_COLUMNS) + f' FROM "{table}"')
        while True:
            rows = cur.fetchmany(chunk)
            if not rows:
                break
            n += len(rows)
        seconds = time.perf_counter() - t0
    finally:
        conn.close()
    return Measurement(f"sqlite3 SELECT {table} (tuples)", n, seconds, os.path.getsize(path), f"fetchmany {chunk}")


def _metrics_table_model():
    _repo_on_path()
    from dbmigrate.model import Column, Table
    types = {"key": "str", "value": "float", "timestamp": "int", "run_uuid": "str", "step": "int", "is_nan": "bool"}
    return Table("metrics", [Column(c, types[c], c == "value") for c in METRIC_COLUMNS],
                 ["key", "timestamp", "step", "run_uuid", "value"])


def parquet_write_limit(path: str, rows: Sequence[tuple], chunk: int = DEFAULT_BATCH,
                        row_group: int = 128 * 1024) -> Measurement:
    """pyarrow writing the metrics rows (Python tuples, as any reader yields them) to one Parquet
    file: ``pa.array`` per column of each batch, row groups of 128k rows, zstd (dbmigrate's
    snapshot settings), file closed and fsynced. The rows are fetched untimed."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    _repo_on_path()
    from dbmigrate.arrow_rows import arrow_schema
    schema = arrow_schema(_metrics_table_model(), METRIC_COLUMNS)
    t0 = time.perf_counter()
    out = pq.ParquetWriter(path, schema, compression="zstd")
    buf, buffered = [], 0
    for i in range(0, len(rows), chunk):
        cols = list(zip(*rows[i:i + chunk]))
        buf.append(pa.RecordBatch.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, schema)], schema=schema))
        buffered += len(cols[0])
        if buffered >= row_group:
            out.write_table(pa.Table.from_batches(buf))
            buf, buffered = [], 0
    if buf:
        out.write_table(pa.Table.from_batches(buf))
    out.close()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - t0
    return Measurement("pyarrow write metrics (pa.array per column, zstd, 128k row groups)", len(rows), seconds,
                       os.path.getsize(path), f"batches of {chunk}")


def parquet_read_limit(path: str, chunk: int = DEFAULT_BATCH) -> Measurement:
    """pyarrow reading that file back into Python tuples (``iter_batches`` + ``to_pylist`` per
    column, zipped): the floor of any Python reader of a Parquet snapshot."""
    import pyarrow.parquet as pq
    n = 0
    t0 = time.perf_counter()
    for b in pq.ParquetFile(path).iter_batches(batch_size=chunk, columns=METRIC_COLUMNS):
        n += len(list(zip(*(b.column(c).to_pylist() for c in METRIC_COLUMNS))))
    seconds = time.perf_counter() - t0
    return Measurement("pyarrow read metrics (iter_batches + to_pylist, tuples)", n, seconds,
                       os.path.getsize(path), f"batches of {chunk}")


def sqlite_parents(uri: str) -> dict[str, tuple[list, list]]:
    """experiments and runs rows of the source, for :func:`sqlite_executemany_limit`."""
    conn = _connect(uri)
    try:
        with conn.cursor() as cur:
            out = {}
            for table in ("experiments", "runs"):
                cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
                out[table] = ([c.name for c in cur.description], cur.fetchall())
            return out
    finally:
        conn.close()


# ----------------------------------------------------------------------------- MySQL / MariaDB
def _mysql_connect(admin_uri: str, database: str | None = None, **kw):
    import pymysql
    from urllib.parse import unquote, urlsplit
    u = urlsplit(admin_uri)
    return pymysql.connect(host=u.hostname or "127.0.0.1", port=u.port or 3306, user=unquote(u.username or "root"),
                           password=unquote(u.password or ""), database=database, charset="utf8mb4", **kw)


def mysql_database_uri(admin_uri: str, name: str) -> str:
    head = admin_uri.split("?", 1)[0].rstrip("/")
    if head.count("/") > 2:
        head = head.rsplit("/", 1)[0]
    return f"{head}/{name}"


def mysql_create_database(admin_uri: str, name: str) -> str:
    """A fresh database as MLflow needs it on MySQL/MariaDB (utf8mb4, binary collation); its URI."""
    conn = _mysql_connect(admin_uri)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        conn.close()
    return mysql_database_uri(admin_uri, name)


def mysql_drop_database(admin_uri: str, name: str) -> None:
    conn = _mysql_connect(admin_uri)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def mysql_load_data_limit(admin_uri: str, rows: Sequence[tuple], parents: dict[str, tuple[list, list]],
                          scratch_name: str, insert_rows: int = 0, chunk: int = DEFAULT_BATCH) -> list[Measurement]:
    """The MySQL/MariaDB ingest limit: ``LOAD DATA LOCAL INFILE`` of the metrics rows (written to a
    temporary file first, untimed, in the server's default text format: tab-separated, ``\\N`` for
    NULL, backslash escapes) through PyMySQL into the metrics table of a scratch database whose
    schema MLflow itself made (utf8mb4_bin; primary key, indexes and foreign key live; experiments
    and runs copied in first), one transaction. With `insert_rows`, also the multi-row INSERT
    (PyMySQL ``executemany``, `chunk` rows per call) of that many rows, for comparison."""
    from dbmigrate.writers.sql import _mysql_infile
    uri = mysql_create_database(admin_uri, scratch_name)
    out = []
    path = None
    try:
        init_mlflow_schema("mysql+pymysql://" + uri.split("://", 1)[1])
        conn = _mysql_connect(admin_uri, scratch_name, local_infile=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION()")
                version = cur.fetchone()[0]
                cur.execute("DELETE FROM experiment_tags")
                cur.execute("DELETE FROM experiments")
                cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
                for table, (columns, prows) in parents.items():
                    cols = ", ".join(f"`{c}`" for c in columns)
                    cur.executemany(f"INSERT INTO `{table}` ({cols}) VALUES ({', '.join(['%s'] * len(columns))})",
                                    [tuple(r) for r in prows])
                conn.commit()
                fd, path = tempfile.mkstemp(prefix="dbm-limit-", suffix=".tsv")
                with os.fdopen(fd, "wb") as f:
                    for i in range(0, len(rows), 100_000):
                        f.write(_mysql_infile(rows[i:i + 100_000], len(METRIC_COLUMNS))[0])
                size = os.path.getsize(path)
                cols = ", ".join(f"`{c}`" for c in METRIC_COLUMNS)
                t0 = time.perf_counter()
                cur.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE metrics CHARACTER SET utf8mb4 ({cols})", (path,))
                conn.commit()
                seconds = time.perf_counter() - t0
                cur.execute("SELECT COUNT(*) FROM metrics")
                n = cur.fetchone()[0]
                if n != len(rows):
                    raise RuntimeError(f"LOAD DATA stored {n} of {len(rows)} rows")
                out.append(Measurement("mysql LOAD DATA LOCAL INFILE -> metrics (MLflow schema)", len(rows), seconds,
                                       size, f"PyMySQL, file {size / 1e6:.0f} MB, indexes and foreign key live, "
                                       f"1 transaction; {version}"))
                if insert_rows:
                    sample = rows[:insert_rows]
                    cur.execute("DELETE FROM metrics")
                    conn.commit()
                    insert = f"INSERT INTO metrics ({cols}) VALUES ({', '.join(['%s'] * len(METRIC_COLUMNS))})"
                    t0 = time.perf_counter()
                    for i in range(0, len(sample), chunk):
                        cur.executemany(insert, sample[i:i + chunk])
                        conn.commit()
                    seconds = time.perf_counter() - t0
                    out.append(Measurement("mysql executemany INSERT -> metrics (MLflow schema)", len(sample), seconds,
                                           None, f"PyMySQL multi-row INSERT, {chunk} rows per call and commit, "
                                           f"indexes live; {version}"))
        finally:
            conn.close()
    finally:
        if path:
            Path(path).unlink(missing_ok=True)
        mysql_drop_database(admin_uri, scratch_name)
    return out


# ----------------------------------------------------------------------------- report
def print_table(results: list[Measurement], file=sys.stdout) -> None:
    head = f"{'measurement':<56} {'rows':>11} {'seconds':>9} {'rows/s':>12} {'MB/s':>8}  note"
    print(head, file=file)
    print("-" * len(head), file=file)
    for m in results:
        mb = f"{m.mb_per_s:8.1f}" if m.mb_per_s is not None else f"{'':>8}"
        print(f"{m.name:<56} {m.rows:>11,} {m.seconds:>9.3f} {m.rows_per_s:>12,.0f} {mb}  {m.note}",
              file=file)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-uri", default="postgresql://postgres@127.0.0.1:5432/bench_1m",
                    help="the generated benchmark database (see benchmarks.generate)")
    ap.add_argument("--table", default="metrics")
    mongo = ap.add_mutually_exclusive_group()
    mongo.add_argument("--mongo-uri", help="a MongoDB-wire server for the insert limits")
    mongo.add_argument("--start-secantus", action="store_true",
                       help="start a SecantusDB server on a free port for the run (stopped after)")
    ap.add_argument("--mongo-docs", type=int, default=200_000,
                    help="documents for the MongoDB inserts (SecantusDB takes ~15k/s)")
    ap.add_argument("--mongo-batch", type=int, default=DEFAULT_BATCH)
    ap.add_argument("--encode-docs", type=int, default=None,
                    help="documents for bson.encode (default: all rows of the table)")
    ap.add_argument("--sqlite", default=None, help="SQLite file for the executemany limit (recreated)")
    ap.add_argument("--sqlite-rows", type=int, default=None, help="default: all rows of the table")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is kept")
    ap.add_argument("--skip", default="", help="comma list of: copy_out,fetch,copy_in,encode,mongo,sqlite")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    uri, table = args.pg_uri, args.table
    results: list[Measurement] = []

    def add(m: Measurement | list[Measurement]) -> None:
        for x in (m if isinstance(m, list) else [m]):
            results.append(x)
            print(f"  {x.name}: {x.rows:,} rows in {x.seconds:.3f} s = {x.rows_per_s:,.0f} rows/s", flush=True)

    print(f"limits on {database_name(uri)}.{table}")
    if "copy_out" not in skip:
        for fmt in ("text", "binary"):
            add(best_of(args.repeat, lambda: pg_copy_out(uri, table, fmt)))
    if "fetch" not in skip:
        add(best_of(args.repeat, lambda: pg_fetch_rows(uri, table)))
    if "copy_in" not in skip:
        add(pg_copy_in(uri, table, uri, repeat=args.repeat))

    all_rows = None
    if "encode" not in skip and args.encode_docs is None or \
            "sqlite" not in skip and args.sqlite and args.sqlite_rows is None:
        all_rows = metric_rows(uri, table=table)
    docs = None
    if "encode" not in skip:
        rows = all_rows if args.encode_docs is None else metric_rows(uri, args.encode_docs, table)
        docs = metric_documents(rows)
        add(best_of(args.repeat, lambda: null_sink_encode(docs)))
    if "mongo" not in skip and (args.mongo_uri or args.start_secantus):
        server = None
        mongo_uri = args.mongo_uri
        if args.start_secantus:
            _repo_on_path()
            from tests.support.servers import SecantusServer
            server = SecantusServer().start()
            mongo_uri = server.uri
            print(f"  started SecantusDB at {mongo_uri} (storage {server.storage})")
        try:
            mdocs = docs[:args.mongo_docs] if docs is not None and len(docs) >= args.mongo_docs \
                else metric_documents(metric_rows(uri, args.mongo_docs, table))
            for raw in (False, True):
                add(best_of(args.repeat, lambda: mongo_insert_limit(mongo_uri, mdocs, args.mongo_batch, raw)))
        finally:
            if server:
                server.stop()
                shutil.rmtree(server.storage, ignore_errors=True)
                Path(server.storage).with_suffix(".log").unlink(missing_ok=True)
    del docs
    if "sqlite" not in skip and args.sqlite:
        rows = all_rows if args.sqlite_rows is None else metric_rows(uri, args.sqlite_rows, table)
        parents = sqlite_parents(uri)
        add(best_of(args.repeat, lambda: sqlite_executemany_limit(args.sqlite, rows, parents)))

    print()
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps([m.as_dict() for m in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
