"""Source analysis for the plan and the dry run: orphan rows, values the target layout cannot hold,
and a time estimate. Problems that make a correct copy impossible start with "BLOCKING"."""

from __future__ import annotations

import logging

from dbmigrate.mlflow_schema import RELATIONS
from dbmigrate.readers.sql import SourceSchema

log = logging.getLogger("dbmigrate")

MAX_DOC_TEXT = 15 * 1024 * 1024  # a span's JSON text near MongoDB's 16 MB document limit

# Measured rates (2-core machine; benchmarks/README.md and the runs quoted below). The estimate is a
# planning figure, not a promise: the target's own speed dominates, and the progress bar's ETA,
# computed from the rate observed during the run, takes over once the copy starts.
# MongoDB figures were measured on SecantusDB, the MongoDB-wire server of the tests, which ingests
# 14-20k documents/s; a real mongod is faster, so for it they are an upper bound.
RATE_DOCUMENTS = 15_000      # documents/s written (benchmark 1M: mlflow-mongodb 15,066, tables 10,957)
RATE_EMBEDDED = 60_000       # rows/s embedded into another document (tags, params, latest metrics)
RATE_INDEX_KEYS = 30_000     # index entries/s built after the load (1M run_metrics x 3 indexes: 73 s;
                             # 300k: 44 s)
RATE_VERIFY_DOCS = {"counts": 14_000, "sample": 11_000, "full": 3_000}  # target documents/s verified
                             # (300k run_metrics: counts 22 s, sample 27 s, full 99 s)
# SQL targets: rows/s of the copy, seconds to make MLflow's schema (its migrations), seconds per
# table (each table is a part of its own, even when empty), rows/s verified.
RATE_SQL = {  # kind: (copy rows/s, schema s, s per table, verify rows/s)
    "postgresql": (136_000, 6.0, 0.04, 300_000),   # COPY (327k rows/s byte for byte from PostgreSQL);
                                                   # 341k rows in 64 tables: schema 7.0 s, copy 4.7 s
    "sqlite": (153_000, 4.0, 0.01, 300_000),       # executemany
    "mysql": (30_000, 16.0, 0.15, 75_000),         # multi-row INSERT; MariaDB, 341k rows in 64 tables,
}                                                  # 2 workers: schema 16.1 s, copy 20.9 s (metrics 300k
                                                   # in 10.3 s, ~0.3 s per empty table), verify 4.5 s


def orphan_count(source, schema: SourceSchema, child: str, ccol: str, parent: str, pcol: str) -> int:
    if child not in schema.tables or parent not in schema.tables:
        return 0
    q = source.q
    sql = (f"SELECT COUNT(*) FROM {q(child)} c WHERE c.{q(ccol)} IS NOT NULL AND NOT EXISTS "
           f"(SELECT 1 FROM {q(parent)} p WHERE p.{q(pcol)} = c.{q(ccol)})")
    return int(source.query(sql)[0][0])


def dangling_aliases(source, schema: SourceSchema) -> int:
    if "registered_model_aliases" not in schema.tables:
        return 0
    q = source.q
    ws = "workspace" in schema.tables["registered_model_aliases"].column_names
    extra = f" AND v.{q('workspace')} = a.{q('workspace')}" if ws else ""
    sql = (f"SELECT COUNT(*) FROM {q('registered_model_aliases')} a WHERE NOT EXISTS (SELECT 1 FROM "
           f"{q('model_versions')} v WHERE v.{q('name')} = a.{q('name')} AND v.{q('version')} = a.{q('version')}{extra})")
    return int(source.query(sql)[0][0])


def analyze_source(source, schema: SourceSchema, plan, counts: dict) -> list[str]:
    problems: list[str] = []
    for child, ccol, parent, pcol in RELATIONS:
        if not counts.get(child):
            continue
        n = orphan_count(source, schema, child, ccol, parent, pcol)
        if n:
            problems.append(f"{n} rows of {child} refer to a {parent}.{pcol} that does not exist "
                            f"(orphans; copied as they are, and the verifier expects them)")
    n = dangling_aliases(source, schema)
    if n:
        problems.append(f"{n} registered model aliases point at a model version that does not exist")
    if plan.layout == "mlflow-mongodb" and counts.get("runs"):
        q = source.q
        n = source.query(f"SELECT COUNT(*) FROM {q('runs')} r WHERE r.{q('name')} IS NOT NULL AND NOT EXISTS "
                         f"(SELECT 1 FROM {q('tags')} t WHERE t.{q('run_uuid')} = r.{q('run_uuid')} AND "
                         f"t.{q('key')} = 'mlflow.runName')")[0][0]
        if n:
            problems.append(f"{n} runs have a name but no mlflow.runName tag (MLflow writes both); the "
                            "tag is added from runs.name because mlflow-mongodb's run-name search reads it")
    if plan.layout == "mlflow-mongodb":
        for table in ("experiments", "registered_models"):
            t = schema.tables.get(table)
            if t is None or "workspace" not in t.column_names or not counts.get(table):
                continue
            q = source.q
            dups = source.query(f"SELECT {q('name')}, COUNT(*) FROM {q(table)} GROUP BY {q('name')} "
                                f"HAVING COUNT(*) > 1")
            if dups:
                names = ", ".join(repr(r[0]) for r in dups[:5])
                problems.append(f"BLOCKING: {len(dups)} {table} names exist in several MLflow workspaces "
                                f"({names}); mlflow-mongodb has no workspaces and keeps names unique")
    if "spans" in schema.tables and counts.get("spans"):
        q = source.q
        length = "LENGTH" if source.dialect != "mysql" else "CHAR_LENGTH"
        rows = source.query(f"SELECT {q('trace_id')}, {q('span_id')}, {length}({q('content')}) FROM "
                            f"{q('spans')} WHERE {length}({q('content')}) > {MAX_DOC_TEXT}")
        for trace_id, span_id, n in rows[:10]:
            problems.append(f"BLOCKING: span {span_id} of trace {trace_id} holds {n:,} characters of "
                            "content, more than a 16 MB MongoDB document can take")
    if "trace_info" in schema.tables and counts.get("trace_info"):
        q = source.q
        n = source.query(f"SELECT COUNT(*) FROM {q('trace_info')} WHERE {q('status')} = 'TRACE_STATUS_UNSPECIFIED'")[0][0]
        if n:
            problems.append(f"{n} traces have the MLflow 2.x status TRACE_STATUS_UNSPECIFIED; "
                            "they are written as STATE_UNSPECIFIED, as MLflow 3 reads them")
    return problems


def estimate_seconds(counts: dict, plan, verify: str = "sample") -> float:
    """Copy, index build and verification of a MongoDB target, from measured rates."""
    docs = sum(counts.get(c.table, 0) for c in plan.collections)
    embedded = sum(n for t, n in counts.items() if t in plan.destinations) - docs
    keys = sum(counts.get(c.table, 0) * len(c.spec.get("indexes", [])) for c in plan.collections)
    seconds = docs / RATE_DOCUMENTS + max(embedded, 0) / RATE_EMBEDDED + keys / RATE_INDEX_KEYS
    if verify in RATE_VERIFY_DOCS:
        seconds += docs / RATE_VERIFY_DOCS[verify]
    return seconds


def estimate_sql_seconds(counts: dict, kind: str, verify: str = "sample", same_engine: bool = False) -> float:
    """Schema, copy and verification of a SQL target (`kind`: postgresql, mysql, sqlite)."""
    rate, schema, per_table, verify_rate = RATE_SQL.get(kind, RATE_SQL["mysql"])
    if same_engine and kind == "postgresql":
        rate = 327_000  # byte for byte (benchmark 1M, keys rebuilt included)
    rows = sum(counts.values())
    seconds = schema + len(counts) * per_table + rows / rate
    if verify != "none":
        seconds += rows / verify_rate
    return seconds
