"""Surviving faults: kill -9 and --resume, a target server restarted mid-run, a source MLflow keeps
writing to, a read-only source role, bad input, and the refusals that come with them.

Kill trials: a few in CI, many with `-m slow` (DBMIGRATE_KILL_TRIALS sets how many)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pymongo
import pytest

from tests.conftest import ROOT, generated_pg_source, run_cli
from tests.support import servers

KILL_SEED = int(os.environ.get("DBMIGRATE_KILL_SEED", "1729"))


@pytest.fixture(scope="module")
def bulk_source(pg_base):
    """A seeded MLflow-shaped PostgreSQL database big enough to be cut into parts (benchmarks/generate.py)."""
    yield from generated_pg_source(pg_base, "dbm_bulk", metrics=120000, runs=1200, params=6000, tags=3600, seed=11)


def _start(args, state_dir, env=None):
    e = dict(os.environ)
    e.update({"DBMIGRATE_STATE_DIR": str(state_dir), **(env or {})})
    return subprocess.Popen([sys.executable, "-m", "dbmigrate.cli", *map(str, args)], cwd=ROOT, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _kill_tree(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its worker processes
    except ProcessLookupError:
        pass
    proc.wait()


def _catalog(state_dir, target):
    """(parts done, steps done) of the run's checkpoint catalog, or None before it exists."""
    import sqlite3
    from dbmigrate.state import State, state_path
    from dbmigrate.uri import parse_uri
    path = state_path(str(state_dir), parse_uri(target, role="target").masked)
    if not path.exists():
        return None
    try:
        st = State.read_only(path)
    except sqlite3.Error:
        return None
    try:
        steps = {r[0] for r in st.db.execute("SELECT name FROM steps WHERE status = 'done'")}
        return st.progress()[0], steps
    except sqlite3.Error:  # being created this instant
        return None
    finally:
        st.close()


def _kill_and_resume(source, target, state_dir, delay, extra=(), after_first_part=False):
    """Start a migration, kill its process tree (-9) `delay` s after it started (or, with
    `after_first_part`, `delay` s after its catalog recorded the first part as copied), then run
    the same command with --resume, which must converge whenever the kill fell. Returns (the
    first run had finished by itself, the resumed run)."""
    args = ["migrate", "--source", source, "--target", target, "--no-progress", "--verify", "none", *extra]
    proc = _start(args, state_dir)
    if after_first_part:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            cat = _catalog(state_dir, target)
            if cat and cat[0] >= 1:
                break
            time.sleep(0.05)
    time.sleep(delay)
    finished = proc.poll() is not None
    _kill_tree(proc)
    env = {"DBMIGRATE_STATE_DIR": str(state_dir)}
    res = run_cli(*args, "--resume", env=env)
    out = res.stdout + res.stderr
    if "already completed" in out:  # the run had finished (a fast machine) before the kill
        assert res.returncode == 2
        res = subprocess.CompletedProcess(res.args, 0, res.stdout, res.stderr)
    return finished, res


def _resumed_parts(res) -> int:
    """How many parts the resumed run found already copied ("resuming: K of N parts ...")."""
    m = re.search(r"resuming: (\d+) of (\d+) parts already copied", res.stdout + res.stderr)
    assert m, (res.stdout + res.stderr)[-3000:]
    return int(m.group(1))


def _trials(n_ci):
    return int(os.environ.get("DBMIGRATE_KILL_TRIALS", n_ci))


@pytest.mark.parametrize("layout", ["mlflow-mongodb", "tables"])
def test_kill_and_resume_into_mongodb(bulk_source, mongo_db, tmp_path, layout):
    rng = random.Random(KILL_SEED + sum(map(ord, layout)))
    for trial in range(_trials(1)):  # one per layout in CI (SecantusDB is slow); more with -m slow
        target = mongo_db()
        delay = rng.uniform(0.0, 1.5)  # after the first part is checkpointed: a resume must happen
        finished, res = _kill_and_resume(bulk_source, target, tmp_path / f"s{trial}", delay,
                                         ("--layout", layout), after_first_part=True)
        assert not finished, "the run ended before the kill: no resume was tried"
        assert res.returncode == 0, f"trial {trial} (kill after {delay:.1f} s): {res.stdout[-3000:]}"
        assert _resumed_parts(res) >= 1  # the resumed run kept what the killed one had copied
        ver = run_cli("verify", "--source", bulk_source, "--target", target, "--layout", layout,
                      "--verify", "full")
        assert ver.returncode == 0, f"trial {trial} (kill after {delay:.1f} s): {ver.stdout[-3000:]}"
        db = pymongo.MongoClient(target).get_default_database()
        coll = "run_metrics" if layout == "mlflow-mongodb" else "metrics"
        assert db[coll].count_documents({}) == 120000  # exact: nothing lost, nothing twice


def test_kill_and_resume_into_postgresql(bulk_source, sql_db, tmp_path):
    rng = random.Random(KILL_SEED)
    for trial in range(_trials(2)):
        target = sql_db("postgresql")
        delay = rng.uniform(0.0, 0.3)  # after the first part is checkpointed, while rows are copied
        finished, res = _kill_and_resume(bulk_source, target, tmp_path / f"s{trial}", delay, ("--workers", "2"),
                                         after_first_part=True)
        assert not finished, "the run ended before the kill: no resume was tried"
        assert res.returncode == 0, f"trial {trial} (kill after {delay:.1f} s): {res.stdout[-3000:]}"
        assert _resumed_parts(res) >= 1
        ver = run_cli("verify", "--source", bulk_source, "--target", target, "--verify", "full")
        assert ver.returncode == 0, f"trial {trial}: {ver.stdout[-3000:]}"
        # metrics and params were loaded bare and their keys/indexes/foreign keys rebuilt (by the
        # resumed run): the target's schema is exactly the one MLflow's migrations make
        from dbmigrate.state import State, state_path
        from dbmigrate.uri import parse_uri
        state = State(state_path(str(tmp_path / f"s{trial}"), parse_uri(target, role="target").masked))
        try:  # the first run or the resumed one dropped metrics' keys/indexes and rebuilt them
            deferred = json.loads(state.step_detail("deferred") or "[]")
            assert {d["table"] for d in deferred} >= {"metrics"} and state.step_done("rebuilt"), deferred
        finally:
            state.close()
        assert _pg_schema(target) == _mlflow_made_schema(pg_base_of(target))


def test_kill_during_schema_creation_then_resume(pg_source, sql_db, tmp_path):
    """Killed while MLflow's migrations build the target schema on MariaDB (whose DDL is not
    transactional, so half the tables stay behind): the catalog, written before the schema,
    says the target was being prepared; --resume clears the half-made schema, makes it again
    and copies everything."""
    target = sql_db("mysql")
    state = tmp_path / "s"
    args = ["migrate", "--source", pg_source[0], "--target", target, "--no-progress", "--verify", "none"]
    # MLflow's own migrations, not the schema cache's replay (a second or two on MariaDB, over before
    # the kill could land); the resume may use the cache, and then replays over the cleared schema.
    proc = _start(args, state, env={"DBMIGRATE_SCHEMA_CACHE": "off"})
    for line in proc.stdout:  # stop it while the schema is being made
        if "Creating the MLflow schema" in line:
            break
    deadline = time.monotonic() + 60
    while _mysql_tables(target) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    _kill_tree(proc)
    cat = _catalog(state, target)
    assert cat is not None and "prepared" not in cat[1] and cat[0] == 0, cat
    half = _mysql_tables(target)
    assert 5 <= half < 60, half  # a half-made schema is left behind
    res = run_cli(*args, "--resume", env={"DBMIGRATE_STATE_DIR": str(state)})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "the target was being prepared: made again" in res.stderr
    ver = run_cli("verify", "--source", pg_source[0], "--target", target, "--verify", "full")
    assert ver.returncode == 0, ver.stdout[-3000:]


def _mysql_tables(uri) -> int:
    import pymysql
    db = uri.rsplit("/", 1)[1]
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s", (db,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def pg_base_of(uri):
    return uri.rpartition("/")[0] + "/postgres"


def _pg_schema(uri) -> set:
    import psycopg2
    conn = psycopg2.connect(uri)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT t.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                        "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
                        "WHERE n.nspname = 'public'")
            cons = set(cur.fetchall())
            cur.execute("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
            return cons | set(cur.fetchall())
    finally:
        conn.close()


def _mlflow_made_schema(pg_base) -> set:
    from dbmigrate.sql_schema import create_schema
    name = servers.create_pg_database(pg_base, "dbm_fresh")
    try:
        uri = servers.pg_database(pg_base, name)
        create_schema(servers.mlflow_uri(uri), "dc11669786a5")
        return _pg_schema(uri)
    finally:
        servers.drop_pg_database(pg_base, name)


@pytest.mark.slow
def test_many_kills(bulk_source, mongo_db, sql_db, tmp_path):
    """DBMIGRATE_KILL_TRIALS kills at random moments of a migration into each kind of target."""
    rng = random.Random(KILL_SEED * 7)
    results = []
    for trial in range(_trials(20)):
        for kind in ("mongo", "pg"):
            target = mongo_db() if kind == "mongo" else sql_db("postgresql")
            # a PostgreSQL target is done in ~8 s here: kill it while it copies
            delay = rng.uniform(0.5, 12.0) if kind == "mongo" else rng.uniform(3.0, 7.5)
            finished, res = _kill_and_resume(bulk_source, target, tmp_path / f"{kind}{trial}", delay)
            ver = run_cli("verify", "--source", bulk_source, "--target", target, "--verify", "full")
            results.append((kind, round(delay, 1), finished, res.returncode, ver.returncode))
            assert res.returncode == 0 and ver.returncode == 0, results[-1]
    print("kill trials (target, seconds, finished before the kill, resume exit, verify exit):", results)


def test_resume_under_another_setup_is_refused(bulk_source, mongo_db, tmp_path):
    target = mongo_db()
    proc = _start(["migrate", "--source", bulk_source, "--target", target, "--no-progress"], tmp_path)
    time.sleep(4)
    _kill_tree(proc)
    env = {"DBMIGRATE_STATE_DIR": str(tmp_path)}
    res = run_cli("migrate", "--source", bulk_source, "--target", target, "--resume", "--layout", "tables", env=env)
    assert res.returncode == 2
    assert "Cannot resume: the interrupted migration used another setup (layout: was 'mlflow-mongodb', now 'tables')" \
        in res.stderr + res.stdout
    res = run_cli("migrate", "--source", bulk_source, "--target", target, env=env)
    assert res.returncode == 5 and "use --resume to continue it or --restart to start over" in res.stdout
    res = run_cli("migrate", "--source", bulk_source, "--target", target, "--restart", "--verify", "counts", env=env)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "restarted: dropped" in res.stdout
    res = run_cli("migrate", "--source", bulk_source, "--target", target, "--resume", "--restart")
    assert res.returncode == 2 and "not allowed with argument" in res.stderr


def test_target_connection_killed_mid_copy_is_retried(bulk_source, sql_db, tmp_path):
    """PostgreSQL -> PostgreSQL copies each part as one binary COPY straight through. The target's
    server ends that COPY's connection (pg_terminate_backend): the part is rolled back, copied
    again on a new connection, and the run finishes with every row once. A statement trigger on
    the target's `tags` (a real server feature, dropped afterwards) holds that COPY open for 1 s
    so the test can find it."""
    import threading

    import psycopg2
    from dbmigrate.sql_schema import create_schema
    target = sql_db("postgresql")
    create_schema(servers.mlflow_uri(target), "dc11669786a5")  # dbmigrate accepts an empty schema
    admin = psycopg2.connect(target)
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute("CREATE FUNCTION dbm_hold() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN PERFORM pg_sleep(1); RETURN NULL; END$$")
    cur.execute("CREATE TRIGGER dbm_hold BEFORE INSERT ON tags FOR EACH STATEMENT EXECUTE FUNCTION dbm_hold()")
    killed = []

    def kill_first_copy():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
                        "pid <> pg_backend_pid() AND query LIKE 'COPY tags %FROM STDIN%' AND state = 'active'")
            row = cur.fetchone()
            if row:
                cur.execute("SELECT pg_terminate_backend(%s)", row)
                killed.append(row[0])
            time.sleep(0.02)
    watcher = threading.Thread(target=kill_first_copy, daemon=True)
    watcher.start()
    res = run_cli("migrate", "--source", bulk_source, "--target", target, "--no-progress", "--verify", "full",
                  "--workers", "2", env={"DBMIGRATE_STATE_DIR": str(tmp_path)})
    watcher.join()
    try:
        assert killed, "the target's COPY into tags was never seen"
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "Transient target error copying tags" in res.stderr and "(server md5)" in res.stdout
        cur.execute("DROP TRIGGER dbm_hold ON tags")
        src = psycopg2.connect(bulk_source)
        with src.cursor() as c:
            c.execute("SELECT count(*), count(DISTINCT (key, run_uuid)) FROM tags")
            want = c.fetchone()
        src.close()
        cur.execute("SELECT count(*), count(DISTINCT (key, run_uuid)) FROM tags")
        assert cur.fetchone() == want  # every row once
    finally:
        admin.close()


def test_target_server_restarted_mid_run(bulk_source, tmp_path):
    """SecantusDB is stopped and started again (same port, same data) while dbmigrate writes."""
    server = servers.SecantusServer().start()
    try:
        target = servers.with_database(server.uri, "restarted")
        proc = _start(["migrate", "--source", bulk_source, "--target", target, "--no-progress",
                       "--verify", "full"], tmp_path)
        client = pymongo.MongoClient(target)
        deadline = time.time() + 120
        while time.time() < deadline and client.get_default_database().run_metrics.estimated_document_count() < 5000:
            time.sleep(0.2)
        written = client.get_default_database().run_metrics.estimated_document_count()
        client.close()
        assert written >= 5000 and proc.poll() is None  # stopped in the middle of the copy
        server.stop()
        time.sleep(1.5)
        server.start()
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out[-4000:]  # the driver's and dbmigrate's retries waited it out
        assert "Verification (full): PASSED" in out
    finally:
        server.stop()


def test_source_written_during_the_migration(mlflow_source, pg_base, mongo_db, tmp_path):
    """MLflow keeps logging runs into the source while it is copied: the target holds one
    consistent snapshot (every metric's run exists) and the report names that snapshot."""
    name = servers.create_pg_database(pg_base, "dbm_live")
    src = servers.pg_database(pg_base, name)
    try:
        subprocess.run([sys.executable, "-m", "benchmarks.generate", "--pg-uri", pg_base, "--database", name,
                        "--metrics", "60000", "--runs", "600", "--params", "1200", "--tags", "1200", "--seed", "3",
                        "--drop-existing"], cwd=ROOT, check=True, capture_output=True, timeout=600)
        writer_code = (
            "import sys, time\nfrom mlflow import MlflowClient\nfrom mlflow.entities import Metric\n"
            "c = MlflowClient(sys.argv[1])\nexp = c.create_experiment('live')\n"
            "for i in range(10**6):\n"
            "    r = c.create_run(exp)\n"
            "    c.log_batch(r.info.run_id, metrics=[Metric('m', float(j), 1000 + j, j) for j in range(50)])\n"
            "    c.set_terminated(r.info.run_id)\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        writer = subprocess.Popen([sys.executable, "-c", writer_code, servers.mlflow_uri(src)], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(4)  # the writer is logging
            target = mongo_db()
            res = run_cli("migrate", "--source", src, "--target", target, "--verify", "full", "--no-progress",
                          "--report-json", tmp_path / "r.json")
        finally:
            writer.kill()
            writer.wait()
        assert res.returncode == 0, res.stdout[-4000:]
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["snapshot"] and f"snapshot: {report['snapshot']}" in res.stdout
        refs = {c["name"]: c for c in report["verification"]["references"]}
        assert refs["metric -> run"]["passed"] and refs["run -> experiment"]["passed"]
        db = pymongo.MongoClient(target).get_default_database()
        copied_runs = {d["_id"] for d in db.runs.find({}, {"_id": 1})}
        assert set(db.run_metrics.distinct("run_id")) <= copied_runs
        import psycopg2
        conn = psycopg2.connect(src)
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM runs")
        now = cur.fetchone()[0]
        conn.close()
        assert now > len(copied_runs) > 600  # MLflow went on writing; the copy is one earlier state
    finally:
        servers.drop_pg_database(pg_base, name)


def test_source_read_by_a_read_only_role(mlflow_source, pg_base, mongo_db, sql_db):
    """The source is only ever read: a role that can only SELECT (and whose transactions are
    read-only) migrates it; its checksums are the same before and after."""
    src, _ = mlflow_source("postgresql", 3)
    db = src.rsplit("/", 1)[1]
    role = "dbm_ro_" + os.urandom(3).hex()
    servers.pg_admin_exec(pg_base, f"CREATE ROLE {role} LOGIN")
    servers.pg_admin_exec(servers.pg_database(pg_base, db), f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    servers.pg_admin_exec(pg_base, f"ALTER ROLE {role} SET default_transaction_read_only = on")
    ro = src.replace("postgres@", f"{role}@")
    copy = sql_db("postgresql")
    try:
        before = run_cli("migrate", "--source", src, "--target", copy, "--verify", "none")
        assert before.returncode == 0
        res = run_cli("migrate", "--source", ro, "--target", mongo_db(), "--verify", "full", "--no-progress")
        assert res.returncode == 0, res.stdout[-3000:]
        res = run_cli("migrate", "--source", ro, "--target", sql_db("sqlite"), "--verify", "full", "--no-progress")
        assert res.returncode == 0, res.stdout[-3000:]
        after = run_cli("verify", "--source", src, "--target", copy, "--verify", "full")
        assert after.returncode == 0, after.stdout[-3000:]  # the source did not change
    finally:
        servers.pg_admin_exec(servers.pg_database(pg_base, db), f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        servers.pg_admin_exec(pg_base, f"DROP ROLE {role}")


# ----------------------------------------------------------------------------- bad input
def test_unknown_role_is_a_connection_error(mlflow_source, mongo_db):
    src, _ = mlflow_source("postgresql", 3)
    res = run_cli("migrate", "--source", src.replace("postgres@", "nobody_here:pw123456@"), "--target", mongo_db())
    assert res.returncode == 3
    assert "Cannot connect to source" in res.stdout and 'role "nobody_here" does not exist' in res.stdout
    assert "pw123456" not in res.stdout + res.stderr


def test_orphans(mlflow_source, mongo_db, sql_db, tmp_path):
    """Rows whose parent is missing: copied as they are into MongoDB (and the verifier expects
    exactly those dangling references), refused by name for a SQL target, left out with --orphans skip."""
    import shutil
    src, ids = mlflow_source("sqlite", 3)
    path = tmp_path / "orphans.db"
    shutil.copy(src.split("sqlite:///", 1)[1], path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                 "VALUES ('ghost', 1.0, 1, 'deadbeefdeadbeefdeadbeefdeadbeef', 0, 0)")
    conn.execute("INSERT INTO params (key, value, run_uuid) VALUES ('ghost', 'x', 'deadbeefdeadbeefdeadbeefdeadbeef')")
    conn.commit()
    conn.close()
    orphan_src = f"sqlite:///{path}"
    res = run_cli("migrate", "--source", orphan_src, "--target", mongo_db(), "--layout", "tables", "--verify", "full")
    assert res.returncode == 0, res.stdout[-3000:]
    assert "1 rows of metrics refer to a runs.run_uuid that does not exist" in res.stdout
    assert "(the source has 1 dangling: orphans copied as they are)" not in res.stdout  # tables layout: no refs
    res = run_cli("migrate", "--source", orphan_src, "--target", mongo_db(), "--verify", "full",
                  "--report-json", tmp_path / "m.json")
    assert res.returncode == 0, res.stdout[-3000:]
    refs = {c["name"]: c for c in json.loads((tmp_path / "m.json").read_text())["verification"]["references"]}
    assert refs["metric -> run"]["passed"]
    assert "1 dangling (the source has 1 dangling: orphans copied as they are)" in refs["metric -> run"]["detail"]
    res = run_cli("migrate", "--source", orphan_src, "--target", sql_db("postgresql"))
    assert res.returncode == 6
    assert ("The source has orphan rows, which the target's foreign keys refuse: 1 rows of params whose "
            "runs.run_uuid does not exist; 1 rows of metrics whose runs.run_uuid does not exist") in res.stdout
    assert "--orphans skip" in res.stdout
    res = run_cli("migrate", "--source", orphan_src, "--target", sql_db("postgresql"), "--orphans", "skip",
                  "--verify", "full", "--report-json", tmp_path / "r.json")
    assert res.returncode == 0, res.stdout[-3000:]
    metrics = next(t for t in json.loads((tmp_path / "r.json").read_text())["tables"] if t["table"] == "metrics")
    assert metrics["skipped"] == 1 and metrics["migrated"] == metrics["total"] - 1


def test_invalid_utf8_in_sqlite_is_named(mlflow_source, mongo_db, tmp_path):
    import shutil
    src, ids = mlflow_source("sqlite", 3)
    path = tmp_path / "badtext.db"
    shutil.copy(src.split("sqlite:///", 1)[1], path)
    conn = sqlite3.connect(path)
    run = ids["runs"]["parent"]
    conn.execute("UPDATE params SET value = CAST(X'6f6bff80' AS TEXT) WHERE key = 'lr' AND run_uuid = ?", (run,))
    conn.commit()
    conn.close()
    target = mongo_db()
    res = run_cli("migrate", "--source", f"sqlite:///{path}", "--target", target)
    assert res.returncode == 6, res.stdout[-3000:]
    assert (f"Source text is not valid UTF-8 (invalid start byte at byte 2: b'ok\\xff\\x80') "
            f"[table params, key ('lr', '{run}'), column value]") in res.stdout
    res = run_cli("migrate", "--source", f"sqlite:///{path}", "--target", target, "--resume")
    assert res.returncode == 6  # nothing it could not repair: the resume stops at the same row


def test_document_over_16mb_is_refused_by_name(pg_base, mongo_db, sql_db):
    """A span whose content is larger than a MongoDB document can be."""
    src = sql_db("postgresql")
    code = ("import sys; from mlflow import MlflowClient; print(MlflowClient(sys.argv[1]).create_experiment('big'))")
    exp = subprocess.run([sys.executable, "-c", code, servers.mlflow_uri(src)], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()[-1]
    import psycopg2
    conn = psycopg2.connect(src)
    cur = conn.cursor()
    cur.execute("INSERT INTO trace_info (request_id, experiment_id, timestamp_ms, status) VALUES ('tr-big', %s, 1, 'OK')",
                (exp,))
    content = json.dumps({"name": "big", "attributes": {"x": "y" * (17 * 1024 * 1024)}})
    cur.execute("INSERT INTO spans (trace_id, experiment_id, span_id, name, status, start_time_unix_nano, content) "
                "VALUES ('tr-big', %s, 'span-1', 'big', 'OK', 1, %s)", (exp, content))
    conn.commit()
    conn.close()
    target = mongo_db()
    res = run_cli("migrate", "--source", src, "--target", target)
    assert res.returncode == 6
    assert "span span-1 of trace tr-big holds 17,825," in res.stdout
    assert "more than a 16 MB MongoDB document can take" in res.stdout
    assert pymongo.MongoClient(target).get_default_database().list_collection_names() == []
    res = run_cli("migrate", "--source", src, "--target", mongo_db(), "--layout", "tables")
    assert res.returncode == 6 and "span span-1 of trace tr-big" in res.stdout
