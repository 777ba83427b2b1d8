"""--executor dask: the same parts run on a Dask distributed cluster (a LocalCluster here: real
worker processes talking to the scheduler over TCP, as a remote cluster would), the same end-to-end
checks as local workers (a generated PostgreSQL source cut into parts, into PostgreSQL and into
MongoDB, verified in full), the coordinating process killed after its first checkpointed part and
resumed, a worker killed mid-part (an error naming the part, then --resume), and the refusals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import distributed
import pymongo
import pytest

from tests.conftest import ROOT, generated_pg_source, run_cli

# Small enough for CI's minute (SecantusDB ingests a few thousand documents/s on this machine), and
# cut into run_uuid ranges as a 100k+ row table is: engine.ROWS_PER_PART is lowered in the
# coordinating process (the one that plans the parts) for the tests that run it in this process.
METRICS = 8_000
PART_ROWS = 2_000


@pytest.fixture(scope="module")
def dask_source(pg_base):
    yield from generated_pg_source(pg_base, "dbm_dask", metrics=METRICS, runs=100, params=300, tags=300, seed=23)


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes and their scheduler, shared by the tests that pass
    --scheduler (a run without it starts its own LocalCluster)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as c, distributed.Client(c) as client:
        yield c.scheduler_address, client


def _parts(out: str) -> int:
    m = re.search(r"copy \d+ \w+ in (\d+) parts \((\d+) to do", out)
    assert m, out[-3000:]
    return int(m.group(2))


def test_dask_into_postgresql_on_a_scheduler(dask_source, pg_db, cluster, tmp_path, monkeypatch):
    from dbmigrate import config
    from dbmigrate.pipeline import migrate
    address, client = cluster
    _small_parts(monkeypatch)
    target = pg_db("dbm_dask")
    report = migrate(config.build({"source": dask_source, "target": target, "executor": "dask", "scheduler": address,
                                   "verify": "full", "progress": False, "state_dir": str(tmp_path / "s")}))
    assert report.exit_code == 0, (report.error, report.notes)
    assert report.verification.level == "full" and report.verification.passed
    d = report.to_dict()
    assert d["settings"]["executor"] == "dask" and d["settings"]["scheduler"] == address
    placed = d["settings"]["parts_by_worker"]
    # every part with rows ran on one of the cluster's two workers (metrics in 4 run_uuid ranges),
    # both took parts; the 56 empty tables were done by the coordinator
    on_cluster = {a: n for a, n in placed.items() if a != "coordinator"}
    assert sum(placed.values()) == 64 + 3 and placed["coordinator"] == 56, placed  # 64 tables, metrics in 4
    assert set(on_cluster) == set(client.scheduler_info()["workers"]) and all(on_cluster.values()), placed
    assert any(re.match(r"executor dask \(scheduler tcp://[\d.:]+, 2 workers\): 11 parts ran on 2 workers "
                        r"\(tcp://.+\); 56 empty tables were done by this process", n) for n in d["notes"]), d["notes"]
    # the workers closed their connections at the end: none is left on the source or the target
    import psycopg2
    conn = psycopg2.connect(dask_source)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for _ in range(50):
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname IN (%s, %s) "
                            "AND pid <> pg_backend_pid()", (dask_source.rpartition("/")[2], target.rpartition("/")[2]))
                left = cur.fetchone()[0]
                if not left:
                    break
                time.sleep(0.1)
            assert left == 0
    finally:
        conn.close()


def _small_parts(monkeypatch):
    """Cut SMALL-row tables as the engine cuts big ones (in this process, which plans the parts)."""
    from dbmigrate import engine
    monkeypatch.setattr(engine, "ROWS_PER_PART", PART_ROWS)


def test_dask_into_mongodb_on_a_local_cluster_with_progress_during_parts(dask_source, mongo_db, tmp_path,
                                                                         monkeypatch):
    """In this process (so the progress model can be watched): no --scheduler, so the run starts
    and stops its own LocalCluster; rows reach the progress model while a part is still running."""
    from dbmigrate import config, orchestrator
    from dbmigrate.pipeline import migrate
    from dbmigrate.progress import Progress

    seen = []  # (part id, rows, the part still running)
    watched = []

    class Watched(Progress):
        def start_copy(self, parts, *a, **kw):
            watched.extend(parts)
            super().start_copy(parts, *a, **kw)

        def advance(self, part_id, n):
            with self.lock:
                running = part_id in self.pending.get(self.part_key.get(part_id), ())
            seen.append((part_id, n, running))
            super().advance(part_id, n)
    monkeypatch.setattr(orchestrator, "open_progress", lambda enabled: Watched())
    _small_parts(monkeypatch)
    target = mongo_db("dbm_dask")
    cfg = config.build({"source": dask_source, "target": target, "executor": "dask", "workers": 2,
                        "verify": "full", "progress": False, "state_dir": str(tmp_path / "s"), "batch_size": 500})
    report = migrate(cfg)
    assert report.exit_code == 0, (report.error, report.notes)
    assert report.verification.level == "full" and report.verification.passed
    assert report.settings["executor"] == "dask" and report.settings["scheduler"] == "LocalCluster"
    assert any(re.match(r"executor dask \(LocalCluster started for this run at tcp://", n) for n in report.notes)
    # SecantusDB takes one writer: one part at a time, every one of them on the cluster
    assert "1 worker: the target is SecantusDB" in " ".join(report.notes)
    placed = report.settings["parts_by_worker"]
    metrics_parts = {p.id for p in watched if p.table == "metrics"}
    assert len(metrics_parts) == 4 and sum(placed.values()) == len(watched), (metrics_parts, placed)
    # the bar moved while each metrics range ran (4 batches each), not only at its end
    during = {pid for pid, n, running in seen if running and n > 0}
    assert metrics_parts <= during, (metrics_parts, seen[:20])
    db = pymongo.MongoClient(target).get_default_database()
    assert db["run_metrics"].count_documents({}) == METRICS


def _catalog_parts_done(state_dir, target) -> int:
    from dbmigrate.state import State, state_path
    from dbmigrate.uri import parse_uri
    import sqlite3
    path = state_path(str(state_dir), parse_uri(target, role="target").masked)
    if not path.exists():
        return 0
    try:
        st = State.read_only(path)
    except sqlite3.Error:
        return 0
    try:
        return st.progress()[0]
    except sqlite3.Error:
        return 0
    finally:
        st.close()


def _start(args, state_dir):
    env = dict(os.environ, DBMIGRATE_STATE_DIR=str(state_dir))
    return subprocess.Popen([sys.executable, "-m", "dbmigrate.cli", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_coordinator_killed_after_its_first_part_then_resume(dask_source, pg_db, cluster, tmp_path):
    """The command line: kill -9 of the coordinating process (its cluster lives on, as a remote one
    would): the parts it had running are cancelled by the scheduler and stop at their next batch;
    --resume keeps the checkpointed parts, copies the others again, and the copy verifies in full."""
    address, client = cluster
    target, state = pg_db("dbm_dask"), tmp_path / "s"
    args = ["migrate", "--source", dask_source, "--target", target, "--executor", "dask", "--scheduler", address,
            "--no-progress", "--verify", "none", "--batch-size", "5000"]
    proc = _start(args, state)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and _catalog_parts_done(state, target) < 1:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    res = run_cli(*args, "--resume", "--verify", "full", env={"DBMIGRATE_STATE_DIR": str(state)})
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    m = re.search(r"resuming: (\d+) of (\d+) parts already copied", out)
    assert m and 1 <= int(m.group(1)) < int(m.group(2)), out[-3000:]
    assert "Verification (full): PASSED" in res.stdout
    assert re.search(r"executor dask \(scheduler tcp://[\d.:]+, 2 workers\): \d+ parts ran on", res.stdout)


def test_a_worker_lost_mid_part_names_the_part_then_resume(dask_source, mongo_db, cluster, tmp_path, monkeypatch):
    """A worker process killed while it copies a metrics range: the run stops (exit 3) naming that
    part and the worker; --resume copies it again, nothing twice, and verifies in full."""
    import threading
    from dbmigrate import config
    from dbmigrate.pipeline import migrate
    address, client = cluster
    _small_parts(monkeypatch)
    target = mongo_db("dbm_dask")
    settings = {"source": dask_source, "target": target, "executor": "dask", "scheduler": address,
                "progress": False, "state_dir": str(tmp_path / "s"), "layout": "tables", "batch_size": 250}
    pids = client.run(os.getpid)
    killed = []

    def kill_a_worker_running_metrics():
        """As soon as a metrics range has started on a worker (its first attempt is recorded in
        the scheduler's metadata) and is still running there, kill that worker's process."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            started = client.get_metadata(["dbmigrate"], {})
            processing = {str(k) for keys in client.processing().values() for k in keys}
            for run in started.values():
                for part, worker in (run or {}).items():
                    if part.startswith("metrics#") and any(k.endswith("-" + part) for k in processing):
                        os.kill(pids[worker], signal.SIGKILL)
                        killed.append(worker)
                        return
            time.sleep(0.01)
    t = threading.Thread(target=kill_a_worker_running_metrics)
    t.start()
    report = migrate(config.build({**settings, "verify": "none"}))
    t.join()
    assert killed and report.exit_code == 3, (killed, report.error)
    assert re.search(r"part metrics#\d+/\d+ was started on Dask worker " + re.escape(killed[0]) + ", which was lost",
                     report.error), report.error
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    report = migrate(config.build({**settings, "verify": "full", "resume": True}))
    assert report.exit_code == 0 and report.verification.passed, (report.error, report.notes)
    assert re.search(r"\d+ parts ran on \d+ workers?", " ".join(report.notes)), report.notes
    db = pymongo.MongoClient(target).get_default_database()
    assert db["metrics"].count_documents({}) == METRICS


def test_what_dask_cannot_do_is_refused(pg_db, tmp_path):
    from dbmigrate import config
    from dbmigrate.errors import ConfigError, ConnectionFailed
    from dbmigrate.executors import DaskExecutor, check
    from dbmigrate.uri import parse_uri
    pg = parse_uri("postgresql://postgres@127.0.0.1:5432/x", role="source")
    lite = parse_uri(f"sqlite:///{tmp_path}/a.db", role="target")
    mongo = parse_uri("mongodb://127.0.0.1:1/x", role="target")
    cfg = config.build({"executor": "dask"})
    with pytest.raises(ConfigError, match="needs a PostgreSQL source"):
        check(cfg, parse_uri(f"sqlite:///{tmp_path}/a.db", role="source"), mongo)
    with pytest.raises(ConfigError, match="cluster's workers cannot write"):
        check(cfg, pg, lite)
    with pytest.raises(ConfigError, match="--scheduler applies to --executor dask"):
        check(config.build({"scheduler": "tcp://127.0.0.1:1"}), pg, mongo)
    check(cfg, pg, mongo)  # accepted
    t0 = time.monotonic()
    with pytest.raises(ConnectionFailed, match="Dask scheduler tcp://127.0.0.1:9"):
        DaskExecutor(config.build({"executor": "dask", "scheduler": "tcp://127.0.0.1:9", "connect_timeout": 2}))
    assert time.monotonic() - t0 < 15
    # through the command line, before anything is written
    target = pg_db("dbm_dask")
    (tmp_path / "mlflow.db").write_bytes(b"")
    res = run_cli("migrate", "--source", f"sqlite:///{tmp_path}/mlflow.db", "--target", target,
                  "--executor", "dask")
    assert res.returncode == 2 and "--executor dask needs a PostgreSQL source" in res.stderr, res.stdout + res.stderr


def test_executor_from_config_file_and_environment(tmp_path):
    from dbmigrate import config
    from dbmigrate.errors import ConfigError
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"migration_settings": {"executor": "dask", "scheduler": "tcp://10.0.0.5:8786"}}))
    cfg = config.build({}, str(path), environ={})
    assert (cfg.executor, cfg.scheduler) == ("dask", "tcp://10.0.0.5:8786")
    cfg = config.build({"executor": "local"}, str(path),
                       environ={"DBMIGRATE_SCHEDULER": "tcp://h:1"})  # flag > environment > file
    assert (cfg.executor, cfg.scheduler) == ("local", "tcp://h:1")
    with pytest.raises(ConfigError, match="executor must be one of local, dask"):
        config.build({}, environ={"DBMIGRATE_EXECUTOR": "ray"})
    res = run_cli("migrate", "--executor", "ray", "--source", "postgresql://x/y", "--target", "postgresql://x/z")
    assert res.returncode == 2 and "invalid choice: 'ray'" in res.stderr
