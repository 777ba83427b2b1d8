"""Issue 14 item 4: `dbmigrate sync` copies only what changed on the source since a migration.

Sources are made and then changed by MLflow 3.17.2's own client; `dbmigrate verify --verify full`
and MLflow's client on both sides judge the result; the reports show that only the ranges that
changed were recopied."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import psycopg2
import pytest

from tests.conftest import ROOT, _populate, generated_pg_source, run_cli
from tests.support import servers
from tests.support.table_rows import canonical_rows, pg_rows

CHANGE = r'''
import json, sys, warnings
warnings.filterwarnings("ignore")
import mlflow
from mlflow import MlflowClient
uri, ids = sys.argv[1], json.loads(sys.argv[2])
mlflow.set_tracking_uri(uri); mlflow.set_registry_uri(uri)
c = MlflowClient(tracking_uri=uri, registry_uri=uri)
exp = ids["experiments"]["a"]
r = c.create_run(exp)
for s in range(50):
    c.log_metric(r.info.run_id, "loss", 1.0 / (s + 1), step=s)
c.set_tag(ids["runs"]["parent"], "stage", "changed-by-sync-test")
c.set_terminated(r.info.run_id, "FINISHED")
c.set_terminated(ids["runs"]["child"], "KILLED")
name = ids["models"][0]
mv = c.create_model_version(name, f"runs:/{r.info.run_id}/model", run_id=r.info.run_id)
c.set_registered_model_alias(name, "champion", mv.version)
c.delete_run(ids["runs"]["child"])
print("OUT=" + json.dumps({"new_run": r.info.run_id, "version": mv.version}))
'''

ASK = r'''
import json, sys, warnings
warnings.filterwarnings("ignore")
from mlflow import MlflowClient
uri, ids = sys.argv[1], json.loads(sys.argv[2])
c = MlflowClient(tracking_uri=uri, registry_uri=uri)
out = {}
for rid in [ids["new_run"], ids["runs"]["parent"], ids["runs"]["child"]]:
    r = c.get_run(rid)
    out[rid] = [r.info.status, r.info.lifecycle_stage, r.info.end_time, sorted(r.data.tags.items()),
                sorted(r.data.metrics.items()), [(m.step, m.value) for m in c.get_metric_history(rid, "loss")]]
name = ids["models"][0]
out["versions"] = sorted((v.version, v.run_id, v.source) for v in c.search_model_versions(f"name='{name}'"))
out["alias"] = c.get_model_version_by_alias(name, "champion").version
out["runs"] = sorted(r.info.run_id for r in c.search_runs([ids["experiments"]["a"]], run_view_type=3))
print("OUT=" + json.dumps(out, sort_keys=True))
'''


def _py(code: str, uri: str, ids: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    res = subprocess.run([sys.executable, "-c", code, servers.mlflow_uri(uri), json.dumps(ids)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("OUT="))[4:])


def _sync(src, dst, tmp_path, name="sync.json"):
    res = run_cli("sync", "--source", src, "--target", dst, "--no-progress", "--report-json", tmp_path / name)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads((tmp_path / name).read_text())["sync"]


def _verify_full(src, dst):
    res = run_cli("verify", "--source", src, "--target", dst, "--verify", "full", "--no-progress")
    assert res.returncode == 0, res.stdout[-3000:]
    assert "Status: SUCCESS" in res.stdout


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
def test_sync_copies_what_mlflow_changed_and_a_second_sync_nothing(engine, pg_db, sql_db, tmp_path):
    src = pg_db("dbm_sync_src")
    ids = _populate(src)
    dst = sql_db(engine, "dbm_sync_dst")
    first = run_cli("migrate", "--source", src, "--target", dst, "--no-progress", "--verify", "counts",
                    "--state-dir", tmp_path / "st")
    assert first.returncode == 0, first.stdout[-3000:]
    nothing = _sync(src, dst, tmp_path, "s0.json")  # right after the copy: nothing differs
    assert nothing["ranges_differing"] == 0 and nothing["ranges_compared"] > 0

    ids.update(_py(CHANGE, src, ids))
    report = _sync(src, dst, tmp_path)
    t = report["tables"]
    assert t["metrics"]["inserted"] == 50 and t["metrics"]["deleted"] == 0
    assert t["runs"]["inserted"] == 1 and t["runs"]["updated"] >= 1  # the new run; the child ended and deleted
    assert t["tags"]["updated"] + t["tags"]["inserted"] >= 1
    assert t["model_versions"]["inserted"] == 1 and t["registered_model_aliases"]["updated"] == 1
    assert report["ranges_differing"] < report["ranges_compared"]
    _verify_full(src, dst)
    assert _py(ASK, src, ids) == _py(ASK, dst, ids)

    again = _sync(src, dst, tmp_path, "s2.json")
    assert again["ranges_differing"] == 0
    assert again["rows_inserted"] == again["rows_deleted"] == again["rows_updated"] == 0


def test_sync_deletes_rows_gone_from_the_source(pg_db, tmp_path):
    src = pg_db("dbm_sync_src")
    ids = _populate(src)
    dst = pg_db("dbm_sync_dst")
    assert run_cli("migrate", "--source", src, "--target", dst, "--no-progress", "--verify", "counts",
                   "--state-dir", tmp_path / "st").returncode == 0
    conn = psycopg2.connect(src)
    with conn, conn.cursor() as cur:  # what `mlflow gc` does: the run's rows are removed
        rid = ids["runs"]["deleted"]
        for t in ("metrics", "latest_metrics", "params", "tags"):
            cur.execute(f"DELETE FROM {t} WHERE run_uuid = %s", (rid,))
        cur.execute("DELETE FROM runs WHERE run_uuid = %s", (rid,))
    conn.close()
    report = _sync(src, dst, tmp_path)
    assert report["tables"]["runs"]["deleted"] == 1
    _verify_full(src, dst)


def test_sync_refuses_a_mongodb_target(pg_db, tmp_path):
    src = pg_db("dbm_sync_src")
    res = run_cli("sync", "--source", src, "--target", "mongodb://127.0.0.1:27017/x", "--no-progress")
    assert res.returncode == 2
    assert "SQL source to a SQL target" in res.stdout + res.stderr


@pytest.fixture(scope="module")
def big(pg_base):
    yield from generated_pg_source(pg_base, "dbm_sync_big", metrics=200_000, runs=2_000, params=10_000, tags=6_000, seed=14)


def test_sync_of_a_1_percent_change_recopies_only_those_ranges(big, pg_db, tmp_path):
    dst = pg_db("dbm_sync_bigdst")
    res = run_cli("migrate", "--source", big, "--target", dst, "--no-progress", "--verify", "counts",
                  "--state-dir", tmp_path / "st")
    assert res.returncode == 0, res.stdout[-3000:]
    conn = psycopg2.connect(big)
    with conn, conn.cursor() as cur:  # ~1 % of the runs: a new metric row and an ended status
        cur.execute("SELECT run_uuid FROM runs ORDER BY run_uuid LIMIT 20")
        changed = [r[0] for r in cur.fetchall()]
        for rid in changed:
            cur.execute("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                        "VALUES ('sync_probe', 1.5, 1, %s, 0, false)", (rid,))
            cur.execute("UPDATE runs SET status = 'KILLED', end_time = 42 WHERE run_uuid = %s", (rid,))
        cur.execute("SELECT count(*) FROM metrics")
        total = cur.fetchone()[0]
    conn.close()
    report = _sync(big, dst, tmp_path)
    m = report["tables"]["metrics"]
    print("SYNC-FIGURES", json.dumps({k: report[k] for k in report if k != "tables"}), json.dumps(m))
    assert m["checksum"] == "server" and report["server_hash"] == "hashtextextended"
    assert m["inserted"] == 20 and m["deleted"] == m["updated"] == 0
    assert 0 < m["differing"] <= 20 and m["compared"] >= 200
    assert m["rows_read"] < total / 5  # only the differing ranges were read
    assert report["tables"]["runs"]["updated"] == 20
    _verify_full(big, dst)


def _ticks(path) -> list[tuple[int, float]]:
    out = []
    for ln in path.read_text().splitlines():
        if ln.startswith("TICK "):
            _, n, t = ln.split()
            out.append((int(n), float(t)))
    return out


def _wait_ticks(path, writer, n: int, timeout: float = 180.0) -> list[tuple[int, float]]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ticks = _ticks(path)
        if len(ticks) >= n:
            return ticks
        assert writer.poll() is None, f"the MLflow writer stopped: {path.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"the MLflow writer made fewer than {n} ticks in {timeout} s")


def test_sync_after_mlflow_logged_more_while_the_first_copy_ran(pg_db, tmp_path):
    """The cut-over of issue 14: MLflow's client keeps logging into the source (new runs with metrics,
    params and tags, a training run's next steps, ended runs, a changed tag, new model versions and a
    moved alias; tests/support/live_writer.py) from before `migrate` starts until after it ended. The
    migrate copies its snapshot and verifies against it; the writer stops; `sync` brings the target
    to the source's state, every table equal row by row, and its counts are exactly the difference."""
    src, dst = pg_db("dbm_sync_live"), pg_db("dbm_sync_livedst")
    ids = _populate(src)
    stop, out = tmp_path / "stop", tmp_path / "writer.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    with open(out, "w") as f:
        writer = subprocess.Popen([sys.executable, "-m", "tests.support.live_writer", servers.mlflow_uri(src),
                                   json.dumps(ids), str(stop)], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_ticks(out, writer, 2)  # writing before the copy starts
        before = {t: len(r) for t, r in pg_rows(src).items()}
        t0 = time.time()
        res = run_cli("migrate", "--source", src, "--target", dst, "--no-progress", "--verify", "full",
                      "--state-dir", tmp_path / "st", "--report-json", tmp_path / "m.json")
        t1 = time.time()
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        during = [n for n, t in _ticks(out) if t0 < t < t1]
        _wait_ticks(out, writer, len([1 for _, t in _ticks(out) if t < t1]) + 2)  # still writing after it
    finally:
        stop.touch()
        writer.wait(timeout=180)
    assert writer.returncode == 0, out.read_text()[-3000:]
    migrated = json.loads((tmp_path / "m.json").read_text())
    assert migrated["status"] == "SUCCESS" and migrated["verification"]["level"] == "full"
    copied = {r["table"]: r["migrated"] for r in migrated["tables"]}
    src_rows, dst_rows = pg_rows(src), pg_rows(dst)
    assert {t: len(r) for t, r in dst_rows.items() if t in copied} == copied  # the target is the snapshot
    # the writer wrote while the copy ran, and the snapshot missed what it wrote afterwards
    assert during, f"no MLflow write between the copy's start and end ({t1 - t0:.1f} s): {_ticks(out)}"
    for t in ("runs", "metrics", "params", "tags", "latest_metrics", "model_versions"):
        assert before[t] <= copied[t] < len(src_rows[t]), (t, before[t], copied[t], len(src_rows[t]))

    report = _sync(src, dst, tmp_path)
    tables = report["tables"]
    print("LIVE-SYNC", f"copy {t1 - t0:.1f} s, ticks during it {during}, of {len(_ticks(out))};",
          {t: (before[t], copied[t], len(src_rows[t])) for t in ("runs", "metrics", "model_versions")},
          {t: {k: e[k] for k in ("differing", "compared", "inserted", "updated", "deleted")}
           for t, e in tables.items() if e["differing"]})
    for t, rows in src_rows.items():
        if t == "alembic_version" or t not in tables:
            continue
        e = tables[t]  # sync's counts are exactly the rows that differed
        assert (e["inserted"] + e["updated"], e["deleted"] + e["updated"]) == \
            (len(rows - dst_rows[t]), len(dst_rows[t] - rows)), (t, e)
    assert set(src_rows) - set(tables) <= {"alembic_version"}
    assert tables["runs"]["inserted"] == len(src_rows["runs"]) - copied["runs"]
    assert tables["runs"]["updated"] >= 2  # the trainer ended, the first short run deleted
    assert tables["metrics"]["inserted"] == len(src_rows["metrics"]) - copied["metrics"]
    assert tables["latest_metrics"]["updated"] >= 1 and tables["tags"]["updated"] >= 1
    assert tables["model_versions"]["inserted"] >= 1 and tables["registered_model_aliases"]["updated"] == 1
    assert report["rows_deleted"] == 0 and report["ranges_differing"] < report["ranges_compared"]
    after = pg_rows(dst)
    for t, rows in src_rows.items():
        assert after.get(t) == rows, t
    assert pg_rows(src) == src_rows  # the writer had stopped: the source is what sync compared

    again = _sync(src, dst, tmp_path, "s2.json")
    assert again["ranges_differing"] == 0
    assert again["rows_inserted"] == again["rows_deleted"] == again["rows_updated"] == 0
    assert pg_rows(dst) == after


def _mlflow_writes(uri: str, ids: dict, ticks: int, tmp_path) -> dict:
    """tests/support/live_writer.py for a fixed number of ticks: new runs, metrics, params and tags,
    ended and deleted runs, a changed tag, new model versions, a moved alias."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    res = subprocess.run([sys.executable, "-m", "tests.support.live_writer", servers.mlflow_uri(uri), json.dumps(ids),
                          str(tmp_path / "no-stop"), str(ticks)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("OUT="))[4:])


def _same_rows(a: str, b: str) -> dict:
    """Every MLflow table of `a` and `b` holds the same rows (dbmigrate's canonical values, so across
    engines); returns the row counts."""
    ra, rb = canonical_rows(a), canonical_rows(b)
    assert set(ra) == set(rb)
    for t in ra:
        assert ra[t] == rb[t], (t, len(ra[t]), len(rb[t]), list((ra[t] - rb[t]).items())[:3],
                                list((rb[t] - ra[t]).items())[:3])
    return {t: sum(r.values()) for t, r in ra.items()}


def _changed(report: dict, ticks: int) -> None:
    """What tests/support/live_writer.py did in `ticks` ticks and its end, on a source it had not
    written before, is what sync wrote."""
    t = report["tables"]
    assert (t["runs"]["inserted"], t["runs"]["updated"]) == (ticks + 1, 1)  # + the trainer; the child ended
    assert (t["metrics"]["inserted"], t["metrics"]["updated"]) == (ticks * 11 + 1, 0)
    assert (t["latest_metrics"]["inserted"], t["latest_metrics"]["updated"]) == (ticks * 2 + 1, 1)
    assert t["params"]["inserted"] == ticks * 2
    # mlflow.runName, writer, tick of each short run; the trainer's mlflow.runName; progress; owner changed
    assert (t["tags"]["inserted"], t["tags"]["updated"]) == (ticks * 3 + 2, 1)
    assert t["model_versions"]["inserted"] == (ticks + 2) // 3 + 1
    assert t["registered_model_aliases"]["inserted"] == 1 and t["registered_models"]["updated"] == 1
    assert report["rows_deleted"] == 0


def _mysql(uri: str, *statements) -> list:
    import pymysql
    from urllib.parse import urlparse
    u = urlparse(uri)
    conn = pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username, password=u.password or "",
                           database=u.path.lstrip("/"), charset="utf8mb4")
    try:
        out = []
        with conn.cursor() as cur:
            for st in statements:
                cur.execute(*st) if isinstance(st, tuple) else cur.execute(st)
                out.append(cur.fetchall())
        conn.commit()
        return out
    finally:
        conn.close()


def test_sync_between_postgresql_and_mariadb_after_mlflow_changes(pg_db, sql_db, tmp_path):
    """PostgreSQL -> MariaDB, then MariaDB -> PostgreSQL and MariaDB -> MariaDB: MLflow's client
    changes the PostgreSQL source and sync carries it into MariaDB; then MLflow's client changes
    that MariaDB database and sync carries both changes on into a PostgreSQL and a MariaDB database
    migrated from it. MariaDB -> MariaDB uses the servers' checksums, the others dbmigrate's: both
    find exactly the same rows. Then edits the servers' checksums must see on their own: a metric
    value one ulp away, a name whose case changed, a tag that is the string 'NULL' where the
    targets hold NULL. Each target ends equal to its source, every table row by row; a second
    sync changes nothing."""
    src, maria = pg_db("dbm_sync_src"), sql_db("mysql", "dbm_sync_maria")
    back, maria2 = pg_db("dbm_sync_back"), sql_db("mysql", "dbm_sync_maria2")
    ids = _populate(src)
    for a, b in ((src, maria), (maria, back), (maria, maria2)):
        res = run_cli("migrate", "--source", a, "--target", b, "--no-progress", "--verify", "counts",
                      "--state-dir", tmp_path / "st")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # the servers' checksums see no difference where the migration made none (NaN, infinities, -0.0,
    # long and non-ASCII text of MLflow's data)
    nothing = _sync(maria, maria2, tmp_path, "mm0.json")
    assert nothing["ranges_differing"] == 0
    assert {e["checksum"] for e in nothing["tables"].values()} == {"server"}

    _mlflow_writes(src, ids, 4, tmp_path)
    report = _sync(src, maria, tmp_path, "pm.json")
    assert report["tables"]["metrics"]["checksum"] == "dbmigrate"
    _changed(report, 4)
    counts = _same_rows(src, maria)

    _mlflow_writes(maria, ids, 3, tmp_path)  # MLflow on the MariaDB database
    reports = {}
    for name, dst in (("back", back), ("maria2", maria2)):
        reports[name] = report = _sync(maria, dst, tmp_path, f"{name}.json")
        t = report["tables"]
        assert t["runs"]["inserted"] == (4 + 1) + (3 + 1) and t["metrics"]["inserted"] == (4 + 3) * 11 + 2
        assert t["runs"]["updated"] == 1  # the child run, ended again
        assert _same_rows(maria, dst)["runs"] == counts["runs"] + 3 + 1
    assert {e["checksum"] for e in reports["maria2"]["tables"].values()} == {"server"}
    assert reports["back"]["tables"]["metrics"]["checksum"] == "dbmigrate"
    changed = {n: {t: (e["inserted"], e["updated"], e["deleted"]) for t, e in r["tables"].items()}
               for n, r in reports.items()}
    assert changed["maria2"] == changed["back"]  # the servers' checksums miss nothing dbmigrate's see

    # changes a checksum of the values' text could miss: one ulp, a name's case, NULL against 'NULL'
    parent = ids["runs"]["parent"]
    (key, value), = _mysql(maria, ("SELECT `key`, value FROM latest_metrics WHERE run_uuid = %s AND value > 0.1 "
                                   "ORDER BY `key` LIMIT 1", (parent,)))[0]
    _mysql(maria, ("UPDATE latest_metrics SET value = %s WHERE run_uuid = %s AND `key` = %s",
                   (math.nextafter(value, math.inf), parent, key)),
           ("UPDATE experiments SET name = 'EXP-B' WHERE name = 'exp-b'"),
           ("UPDATE tags SET value = 'NULL' WHERE run_uuid = %s AND `key` = 'emoji'", (parent,)))
    _mysql(maria2, ("UPDATE tags SET value = NULL WHERE run_uuid = %s AND `key` = 'emoji'", (parent,)))
    conn = psycopg2.connect(back)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE tags SET value = NULL WHERE run_uuid = %s AND key = 'emoji'", (parent,))
    conn.close()
    for name, dst in (("back", back), ("maria2", maria2)):
        report = _sync(maria, dst, tmp_path, f"{name}-edits.json")
        assert {t: (e["differing"], e["updated"]) for t, e in report["tables"].items() if e["differing"]} == \
            {"latest_metrics": (1, 1), "experiments": (1, 1), "tags": (1, 1)}, name
        assert report["rows_inserted"] == report["rows_deleted"] == 0
        _same_rows(maria, dst)
        again = _sync(maria, dst, tmp_path, f"{name}2.json")
        assert again["ranges_differing"] == 0 and again["rows_inserted"] == again["rows_updated"] == 0
    assert _mysql(maria2, ("SELECT value FROM tags WHERE run_uuid = %s AND `key` = 'emoji'", (parent,)))[0] \
        == (("NULL",),)


@pytest.mark.slow
def test_sync_benchmark_runs_and_checks_its_targets(tmp_path):
    """benchmarks/sync.py at 20k metric rows, PostgreSQL -> PostgreSQL and -> MariaDB, MariaDB ->
    MariaDB: it exits 0 only when each target equals the source after the sync and the sync wrote
    exactly the rows it changed."""
    res = subprocess.run([sys.executable, "-m", "benchmarks.sync", "--metrics", "20000",
                          "--targets", "pg,mysql,mysql-mysql", "--drop-base", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads(next(tmp_path.glob("*-sync-20k.json")).read_text())
    assert [r["target"] for r in doc["results"]] == ["pg", "mysql", "mysql-mysql"] and not doc["failures"]
    for r in doc["results"]:
        assert r["check"].startswith("yes") and r["rows_written"] == doc["change"]["rows"] > 0
        assert 0 < r["ranges_recopied"] < r["ranges_compared"] and r["second_sync_ranges_differing"] == 0
