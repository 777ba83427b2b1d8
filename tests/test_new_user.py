"""What a new user hit (issue 10), each as it was met: a password with reserved characters, a
restore from MongoDB into SQLite / MySQL, analyze against a target migrate refuses, the source
given as the target, a MongoDB database name MongoDB cannot hold, a bad --sample-size, and an
interrupted run's report. Real servers and the real command line throughout."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from urllib.parse import quote

import pymongo
import pytest

from tests.conftest import ROOT, _STATE_DIR, run_cli
from tests.support import servers
from tests.support.terminal import sigint_as_on_a_terminal

# Every reserved character a password can hold, between fragments that appear nowhere else.
PASSWORD = "Qzx@Kvq:Wmz/Rtj%Yxk#Nbw?Hpf"
FRAGMENTS = ["Qzx", "Kvq", "Wmz", "Rtj", "Yxk", "Nbw", "Hpf"]


def _leaks(text: str) -> list[str]:
    return [f for f in [PASSWORD, quote(PASSWORD, safe="")] + FRAGMENTS if f in text]


def _host(base: str) -> str:
    rest = base.split("://", 1)[1].split("/", 1)[0]
    return rest.rsplit("@", 1)[-1]


@pytest.mark.parametrize("side", ["source", "target"])
@pytest.mark.parametrize("scheme", ["postgresql", "mysql", "mongodb"])
def test_unencoded_password_is_refused_and_never_printed(scheme, side, tmp_path):
    """mysql://user:p@ss:w/rd@host/db once printed part of the password and a parse error; now
    it is refused before connecting, with advice on percent-encoding, and no part of the
    password is in stdout, stderr, the JSON report or the state directory."""
    port = {"postgresql": 5432, "mysql": 3306, "mongodb": 27017}[scheme]
    bad = f"{scheme}://someone:{PASSWORD}@127.0.0.1:{port}/mlflow_db"
    other = "sqlite:///" + str(tmp_path / "other.db")
    src, dst = (bad, other) if side == "source" else (other, bad)
    report, state = tmp_path / "r.json", tmp_path / "state"
    res = run_cli("migrate", "--source", src, "--target", dst, "--report-json", report,
                  "--state-dir", state, "--no-progress", timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "must be percent-encoded" in res.stdout + res.stderr and "%40" in res.stdout + res.stderr
    assert f"{scheme}://someone:***@127.0.0.1:{port}/mlflow_db" in res.stdout
    written = json.loads(report.read_text())
    assert written["status"] == "FAILED" and "percent-encoded" in written["error"]
    outputs = [res.stdout, res.stderr, report.read_text()]
    outputs += [f.read_bytes().decode("latin-1") for f in state.rglob("*") if f.is_file()] if state.exists() else []
    for text in outputs:
        assert not _leaks(text), _leaks(text)


def test_percent_encoded_reserved_password_connects_and_stays_hidden(pg_base, pg_source, mysql_base,
                                                                      mongo_server, tmp_path):
    """The same password, percent-encoded as the error advises, works for PostgreSQL (source),
    MySQL/MariaDB and MongoDB (targets of a dry run), and is printed nowhere."""
    role = "dbm_enc_" + uuid.uuid4().hex[:8]
    dbname = pg_source[0].rsplit("/", 1)[1]
    sql_pw = PASSWORD.replace("'", "''")
    servers.pg_admin_exec(pg_base, f"CREATE ROLE {role} LOGIN PASSWORD '{sql_pw}'")
    servers.pg_admin_exec(servers.pg_database(pg_base, dbname), f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    import pymysql
    my = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    mdb = servers.create_mysql_database(mysql_base, "dbm_enc")
    my.cursor().execute(f"CREATE USER '{role}'@'%' IDENTIFIED BY '{sql_pw}'")
    my.cursor().execute(f"GRANT ALL ON `{mdb}`.* TO '{role}'@'%'")
    base, _ = mongo_server
    client = pymongo.MongoClient(base)
    client.admin.command("createUser", role, pwd=PASSWORD, roles=["root"])
    enc = quote(PASSWORD, safe="")
    src = f"postgresql://{role}:{enc}@127.0.0.1:5432/{dbname}"
    targets = [f"mysql://{role}:{enc}@127.0.0.1:3306/{mdb}",
               f"mongodb://{role}:{enc}@{_host(base)}/dbm_enc_{uuid.uuid4().hex[:6]}?authSource=admin"]
    try:
        for target in targets:
            report = tmp_path / "r.json"
            res = run_cli("analyze", "--source", src, "--target", target, "--report-json", report,
                          "--log-level", "DEBUG", "--no-progress")
            assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
            assert f"{role}:***@" in res.stdout
            for text in (res.stdout, res.stderr, report.read_text()):
                assert not _leaks(text), _leaks(text)
    finally:
        client.admin.command("dropUser", role)
        my.cursor().execute(f"DROP USER '{role}'@'%'")
        servers.drop_mysql_database(mysql_base, mdb)
        servers.pg_admin_exec(servers.pg_database(pg_base, dbname),
                              f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        servers.pg_admin_exec(pg_base, f"DROP ROLE {role}")


@pytest.fixture(scope="module")
def mongo_copies(pg_source, mongo_base):
    """The MLflow-made PostgreSQL source (most of its 64 tables empty) in MongoDB, once per
    layout, by dbmigrate itself."""
    made = {}
    for layout in ("tables", "mlflow-mongodb"):
        uri = servers.with_database(mongo_base, f"dbm_restore_{layout[:6]}_{uuid.uuid4().hex[:6]}")
        res = run_cli("migrate", "--source", pg_source[0], "--target", uri, "--layout", layout,
                      "--verify", "none", "--no-progress")
        assert res.returncode == 0, res.stdout[-3000:]
        made[layout] = uri
    yield made
    client = pymongo.MongoClient(mongo_base)
    for uri in made.values():
        client.drop_database(uri.rsplit("/", 1)[1].split("?")[0])


@pytest.mark.parametrize("engine", ["sqlite", "mysql"])
@pytest.mark.parametrize("layout", ["tables", "mlflow-mongodb"])
def test_restore_from_mongodb_with_empty_tables(mongo_copies, pg_source, sql_db, engine, layout, tmp_path):
    """MongoDB -> SQLite / MySQL of a database with empty tables once failed in verification
    (`SELECT FROM budget_policies`: no column list for a table empty on the MongoDB side)."""
    src = mongo_copies[layout]
    dst = sql_db(engine)
    report = tmp_path / "r.json"
    res = run_cli("migrate", "--source", src, "--target", dst, "--verify", "full", "--no-progress",
                  "--report-json", report)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    v = json.loads(report.read_text())["verification"]
    empty = [c for c in v["checksums"] if c["rows"] == 0]
    assert len(empty) >= 20 and all(c["match"] for c in v["checksums"])
    assert {"budget_policies", "webhooks"} <= {c["table"] for c in empty}
    again = run_cli("verify", "--source", src, "--target", dst, "--verify", "full")
    assert again.returncode == 0, again.stdout[-3000:]
    # the restored experiments equal the original source's
    import sqlalchemy as sa
    counts = []
    for uri in (pg_source[0], dst):
        eng = sa.create_engine(servers.mlflow_uri(uri))
        with eng.connect() as c:
            counts.append(c.execute(sa.text("SELECT COUNT(*) FROM experiments")).scalar())
        eng.dispose()
    assert counts[0] == counts[1] > 0


def _error_line(res) -> str:
    return next(ln for ln in (res.stdout + res.stderr).splitlines() if "already holds data" in ln
                or "not empty" in ln.lower())


@pytest.mark.parametrize("target_kind", ["mongodb", "postgresql"])
def test_analyze_refuses_what_migrate_refuses(pg_source, mongo_copies, sql_db, target_kind):
    """analyze once said OK (exit 0) to a non-empty MongoDB target and exit 7 to a non-empty SQL
    one, where migrate stops with exit 5: now both stop the same way, and analyze writes nothing."""
    if target_kind == "mongodb":
        target = mongo_copies["mlflow-mongodb"]
    else:
        target = sql_db("postgresql")
        assert run_cli("migrate", "--source", pg_source[0], "--target", target, "--verify", "none",
                       "--no-progress").returncode == 0
    dry = run_cli("analyze", "--source", pg_source[0], "--target", target, "--no-progress")
    real = run_cli("migrate", "--source", pg_source[0], "--target", target, "--no-progress")
    assert real.returncode == 5, real.stdout[-2000:]
    assert dry.returncode == real.returncode, dry.stdout[-2000:]
    assert "already holds data" in dry.stdout + dry.stderr


def test_resume_without_a_catalog(pg_source, mongo_copies, mongo_db, tmp_path):
    """`migrate || migrate --resume` must converge wherever the kill fell, even before the
    catalog existed: --resume with no catalog starts when the target is empty, and refuses (exit
    5, as migrate would) when it is not; analyze answers the same and writes no catalog."""
    state = tmp_path / "s"
    full = mongo_copies["mlflow-mongodb"]
    dry = run_cli("analyze", "--source", pg_source[0], "--target", full, "--resume", "--state-dir", state)
    real = run_cli("migrate", "--source", pg_source[0], "--target", full, "--resume", "--state-dir", state)
    assert dry.returncode == real.returncode == 5, real.stdout[-2000:]
    assert "no interrupted migration" in real.stdout and "already holds data" in real.stdout
    empty = mongo_db()
    dry = run_cli("analyze", "--source", pg_source[0], "--target", empty, "--resume", "--state-dir", state)
    assert dry.returncode == 0, dry.stdout[-2000:]
    assert not state.exists() or not any(state.iterdir())  # the dry run wrote no catalog
    real = run_cli("migrate", "--source", pg_source[0], "--target", empty, "--resume", "--state-dir", state,
                   "--no-progress")
    assert real.returncode == 0, real.stdout[-2000:]
    assert "the target is empty: starting" in real.stderr


def test_source_given_as_target_is_refused_however_spelled(pg_source, tmp_path):
    src = pg_source[0]
    spelled = src.replace("127.0.0.1", "localhost") if "127.0.0.1" in src else src.replace("localhost", "127.0.0.1")
    host_port = spelled.split("@", 1)[1].split("/", 1)[0]
    if ":" not in host_port:  # spell the default port out too
        spelled = spelled.replace(host_port, host_port + ":5432")
    for command in ("migrate", "analyze"):
        res = run_cli(command, "--source", src, "--target", spelled, "--no-progress")
        assert res.returncode == 2, res.stdout[-2000:]
        assert "the same database" in res.stdout + res.stderr
    db = tmp_path / "mlflow.db"
    res = subprocess.run([sys.executable, "-m", "dbmigrate.cli", "migrate", "--source", f"sqlite:///{db}",
                          "--target", "sqlite:///mlflow.db", "--no-progress"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 2 and "the same database" in res.stdout + res.stderr
    assert not db.exists()


def test_mongodb_database_name_mongodb_cannot_hold(pg_source, mongo_base):
    """mongodb://host/bad.name$x once reported SUCCESS after writing into database 'bad'."""
    prefix = f"dbm_bad{uuid.uuid4().hex[:6]}"
    target = servers.with_database(mongo_base, f"{prefix}.name$x")
    res = run_cli("migrate", "--source", pg_source[0], "--target", target, "--no-progress")
    assert res.returncode == 2, res.stdout[-2000:]
    assert "contains '.'" in res.stdout + res.stderr
    assert prefix not in pymongo.MongoClient(mongo_base).list_database_names()


def test_bad_sample_size_is_refused_before_connecting():
    start = time.monotonic()
    res = run_cli("migrate", "--source", "postgresql://u@127.0.0.1:1/x", "--target",
                  "mongodb://127.0.0.1:1/x", "--sample-size", "-1", timeout=60)
    assert res.returncode == 2 and "sample_size must be a positive integer" in res.stderr
    assert time.monotonic() - start < 8  # refused without the 10 s connection attempt


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_run_writes_its_report_and_resumes(pg_source, mongo_db, tmp_path, sig, code):
    """A run stopped by SIGTERM / Ctrl-C exits 143 / 130 and writes its JSON report with status
    INTERRUPTED and what was copied; --resume then finishes it."""
    target = mongo_db()
    report, state = tmp_path / "r.json", tmp_path / "state"
    args = ["migrate", "--source", pg_source[0], "--target", target, "--no-progress", "--report-json",
            str(report), "--state-dir", str(state), "--verify", "full"]
    env = {**__import__("os").environ, "DBMIGRATE_STATE_DIR": _STATE_DIR}
    proc = subprocess.Popen([sys.executable, "-m", "dbmigrate.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_on_a_terminal)
    for line in proc.stderr:  # stop it once it is copying
        if "STEP 3/" in line:
            break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, out[-2000:] + err[-2000:]
    r = json.loads(report.read_text())
    assert r["status"] == "INTERRUPTED" and r["exit_code"] == code
    assert f"interrupted by {sig.name}" in r["error"] and "parts" in r["error"]
    assert "INTERRUPTED" in out
    resumed = run_cli("migrate", *args[5:], "--resume", "--source", pg_source[0], "--target", target)
    assert resumed.returncode == 0, resumed.stdout[-3000:]


def test_analyze_and_migrate_agree_on_a_sqlite_target_with_foreign_tables(pg_source, tmp_path):
    """A SQLite target holding a table that is not MLflow's: migrate refuses it as not an MLflow
    schema (exit 4), and so does analyze (it once said DRY RUN), which leaves the file as it was."""
    import sqlite3
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes VALUES (1, 'keep me')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    dry = run_cli("analyze", "--source", pg_source[0], "--target", f"sqlite:///{path}", "--no-progress")
    real = run_cli("migrate", "--source", pg_source[0], "--target", f"sqlite:///{path}", "--no-progress")
    assert real.returncode == 4, real.stdout[-2000:]
    assert dry.returncode == real.returncode, dry.stdout[-2000:]
    assert "no alembic_version table" in dry.stdout
    assert path.read_bytes() == before
