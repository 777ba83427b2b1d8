"""The benchmark harness works: a small run of every scenario measures its limits and dbmigrate's figures.

This is not a speed test (speed targets live in the benchmark's own output, run by hand at 1M/10M
rows): it asserts that every scenario ran, copied every metric row, and that the ratios the README
quotes can be computed from what was measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

METRICS = 20_000


def test_benchmark_smoke(pg_base, tmp_path):
    database = "dbm_benchsmoke_" + os.urandom(3).hex()
    small = "dbm_benchsmall_" + os.urandom(3).hex()
    try:
        res = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--metrics", str(METRICS),
                              "--database", database, "--pg-admin", pg_base, "--out", str(tmp_path),
                              "--small-database", small, "--small-runs", "1", "--mysql-insert-limit-rows", "5000"],
                             cwd=ROOT, capture_output=True, text=True, timeout=900)
    finally:
        from benchmarks.generate import drop_database
        drop_database(pg_base, small)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    [path] = tmp_path.glob("*-20k.json")
    doc = json.loads(path.read_text())
    assert doc["failures"] == [] and doc["limit_errors"] in ([], {}, None)
    assert doc["source"]["counts"]["metrics"] == METRICS
    limits = {lim["key"]: lim for lim in doc["limits"]}
    for key in ("read.metrics", "pg_copy_in.best", "sqlite.executemany", "mongo.run_metrics.dict",
                "mongo.tables_metrics.dict", "mysql.load_data", "mysql.executemany", "sqlite.read.metrics",
                "sqlite_pg.limit", "mongo.read.metrics.dict", "mongo_pg.limit", "parquet.write", "parquet.read",
                "pg_parquet.limit", "parquet_pg.limit"):
        assert limits[key]["rows_per_s"] > 0, key
    scenarios = {s["scenario"]: s for s in doc["scenarios"]}
    assert set(scenarios) == {"pg-null", "pg-pg", "pg-sqlite", "sqlite-pg", "pg-mysql", "pg-mongo", "pg-mongo-tables",
                              "mongo-pg", "parquet-write", "parquet-restore"}
    # small migrations: a cold and a warm run each, verified, with the phases of the report
    assert {s["scenario"] for s in doc["small"]} == {"small-sqlite", "small-pg"}
    for s in doc["small"]:
        assert [r["exit_code"] for r in s["runs"]] == [0, 0] and s["warm_median"]["status"] == "SUCCESS", s
        assert s["warm_median"]["verification"] not in (None, "none") and s["warm_median"]["rows"] > 250, s
        assert {"connect", "schema", "copy", "verify"} <= set(s["warm_median"]["phases"]), s
    for name, sc in scenarios.items():
        assert sc["exit_code"] == 0, (name, sc.get("error"))
        m = sc["metrics"]
        assert m["rows"] == METRICS, (name, m)
        assert m["rows_per_s"] > 0 and m["ratio"] > 0, (name, m)
        assert 0 < sc["peak_rss_tree_mb"] < 4000, (name, sc["peak_rss_tree_mb"])
    md = (tmp_path / "latest-20k.md").read_text()
    assert "## Summary" in md and "| pg-mongo |" in md and "| pg-mysql |" in md and "| parquet-restore |" in md and "| small-pg |" in md
    # the smoke run drops the source it generated
    import psycopg2
    conn = psycopg2.connect(pg_base)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (database,))
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()
