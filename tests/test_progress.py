"""The progress display (issue 10, item 8) and the report's phase times (item 9).

The progress model is tested without a terminal through a view that records what it is told; the
real command line is run on a pseudo-terminal (stderr a tty) and its screen is rebuilt from the
bytes it wrote, to check what a user sees.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from dbmigrate.engine import Part, run_parts
from dbmigrate.progress import Progress, View
from tests.conftest import generated_pg_source

ROOT = Path(__file__).resolve().parent.parent


class Recorder(View):
    """A view that keeps what a terminal would show: the overall count, the table bars open."""

    def __init__(self):
        self.overall_total = self.overall_done = None
        self.open: dict[str, tuple[int, int]] = {}
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.steps: list[tuple] = []
        self.max_table: dict[str, int] = {}

    def overall(self, total, done, postfix):
        self.overall_total, self.overall_done = total, done

    def overall_update(self, done, postfix):
        self.overall_done = done

    def table(self, key, total, done):
        if key not in self.open:
            self.opened.append(key)
        self.open[key] = (total, done)
        self.max_table[key] = max(self.max_table.get(key, 0), done)

    def table_close(self, key):
        self.open.pop(key, None)
        self.closed.append(key)

    def step(self, name, total, done, unit, postfix):
        self.steps.append((name, total, done, postfix))


def _parts():
    return [Part("metrics#1/3", "metrics", "metrics", None, 100), Part("metrics#2/3", "metrics", "metrics", None, 100),
            Part("metrics#3/3", "metrics", "metrics", None, 100), Part("runs", "runs", "runs", None, 21),
            Part("webhooks", "webhooks", "webhooks", None, 0), Part("jobs", "jobs", "jobs", None, 0)]


TOTALS = {"metrics": 300, "runs": 21, "webhooks": 0, "jobs": 0}


def test_done_parts_are_counted_at_once_and_their_late_reports_ignored():
    view = Recorder()
    p = Progress(view)
    p.start_copy(_parts(), TOTALS)
    assert (view.overall_total, view.overall_done) == (321, 0)
    # a small table finishes before any of its reports arrive (they come through a queue)
    p.part_done("runs", 21)
    assert view.overall_done == 21 and p.rows("runs") == 21
    p.advance("runs", 21)  # the late report of the finished part
    p.advance("runs", 1)   # and a trailer counted as a row (PostgreSQL binary COPY)
    assert p.rows("runs") == 21 and view.overall_done == 21
    assert "runs" not in view.opened  # finished before any report: no bar at all


def test_no_bar_for_empty_tables_and_bars_closed_when_a_table_completes():
    view = Recorder()
    p = Progress(view)
    p.start_copy(_parts(), TOTALS)
    for empty in ("webhooks", "jobs"):
        p.advance(empty, 0)
        p.part_done(empty, 0)
    p.advance("metrics#1/3", 50)
    assert view.opened == ["metrics"] and view.open["metrics"] == (300, 50)
    p.part_done("metrics#1/3", 100)
    assert "metrics" in view.open  # two parts still to go
    p.advance("metrics#2/3", 100)
    p.part_done("metrics#2/3", 100)
    p.part_done("metrics#3/3", 100)
    assert view.open == {} and view.closed == ["metrics"]
    assert p.tables_done == 3 and view.overall_done == 300


def test_counts_never_exceed_the_total_after_an_interrupt():
    """Ctrl-C while parts run: what is shown is what was counted, never more than a table has
    (the issue saw "22.0 rows" of 21: PostgreSQL's binary COPY trailer counted as a row)."""
    view = Recorder()
    p = Progress(view)
    p.start_copy(_parts(), TOTALS)
    p.advance("runs", 20)
    p.advance("runs", 2)   # 22 reported for a 21-row table
    p.advance("metrics#1/3", 120)
    p.advance("metrics#2/3", 250)
    p.close()              # interrupted: nothing finished
    assert p.rows("runs") == 21 and p.rows("metrics") == 300
    assert view.max_table["runs"] <= 21 and view.max_table["metrics"] <= 300
    assert view.overall_done <= view.overall_total


def test_resumed_parts_count_as_done_from_the_start():
    view = Recorder()
    p = Progress(view)
    p.start_copy(_parts(), TOTALS, done={"metrics#1/3": 100, "runs": 21})
    assert view.overall_done == 121 and p.resumed == 121
    p.advance("metrics#2/3", 10)
    assert view.open["metrics"] == (300, 110)  # the table bar starts from what was already copied
    p.part_done("metrics#2/3", 100)
    p.part_done("metrics#3/3", 100)
    assert p.this_run == 200 and p.copied == 321


def test_step_counter_for_index_builds_and_verification():
    view = Recorder()
    p = Progress(view)
    p.start_step("indexes", 3, "indexes")
    p.step(0, "run_metrics.a")
    p.step(1)
    p.next("x")  # next() names the unit under way and counts the one before it
    p.next("y")
    p.end_step()
    assert view.steps[0] == ("indexes", 3, 0, "")
    assert ("indexes", 3, 0, "run_metrics.a") in view.steps
    assert view.steps[-1][2] == 3  # 1 built + x + y, never more than the total


def test_run_parts_with_workers_reports_progress_by_part():
    """Worker processes report (part id, rows) through a queue; on_done gives the exact count."""
    seen, done = [], []
    parts = [Part(f"t#{i}", "t", "t", None, 150_000) for i in range(2)]
    run_parts(parts, _FakeRunner, (), 2, lambda p, r: done.append((p.id, r.rows)),
              lambda pid, n: seen.append((pid, n)))
    assert sorted(done) == [("t#0", 30), ("t#1", 30)]
    assert seen and {pid for pid, _ in seen} <= {"t#0", "t#1"}  # keyed by part, not by table


class _FakeRunner:
    """Not a mock of a server: a real runner that counts rows without a database, so the test
    checks only the engine's plumbing of progress between processes."""

    def run(self, part, progress):
        from dbmigrate.engine import PartResult
        for _ in range(3):
            progress(part.table, 10)
        return PartResult(part.id, part.target, part.table, rows=30)


# ----------------------------------------------------------------------------- on a real terminal
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR)\s")
BAR = re.compile(r"(?P<desc>[^\r\n|]*?):\s+(?P<pct>\d+)%\|[^|\r\n]*\|\s*(?P<n>[\d.]+[kMG]?)/(?P<total>[\d.]+[kMG]?)\s")
WIDTH = 200


def _num(s: str) -> float:
    mult = {"k": 1e3, "M": 1e6, "G": 1e9}.get(s[-1], 1)
    return float(s.rstrip("kMG")) * mult


def _bars(raw: bytes) -> list[dict]:
    """Every bar state drawn on the terminal, in order."""
    out = []
    for seg in re.split(r"[\r\n]", raw.decode("utf-8", "replace")):
        m = BAR.match(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", seg))
        if m:
            out.append({"desc": m["desc"].strip(), "n": _num(m["n"]), "total": _num(m["total"]), "text": seg})
    return out


def _drawn(raw: bytes) -> set[str]:
    """The names of every bar drawn, with or without a total ("webhooks: 0.00 rows [00:00, ...]")."""
    out = set()
    for seg in re.split(r"[\r\n]", raw.decode("utf-8", "replace")):
        m = re.match(r"^\s*([A-Za-z_][\w.() ]*?):\s.*\brows\b", re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", seg))
        if m:
            out.add(m.group(1))
    return out


def _check_screen(lines: list[str], extra=()) -> None:
    """Every line a user is left with is a log line or a finished bar: nothing half-overwritten."""
    in_log = False  # a log line longer than the terminal wraps onto the next line
    for line in lines:
        if not line.strip():
            in_log = False
            continue
        wrapped = in_log and not BAR.match(line + " ")
        is_log = bool(LOG_LINE.match(line)) or wrapped
        ok = is_log or (BAR.match(line + " ") and line.endswith("]")) or any(e in line for e in extra)
        assert ok, f"a line mixing bar and text: {line!r}\nscreen:\n" + "\n".join(lines)
        in_log = is_log and len(line) >= WIDTH


@pytest.mark.parametrize("kind", ["mongodb", "postgresql"])
def test_terminal_screen_of_a_migration(pg_source, mongo_db, pg_db, tmp_path, kind):
    """The real CLI on a pseudo-terminal, MLflow-made source with many empty tables: one overall
    bar ending at exactly its total, no bar ever drawn for an empty table nor beyond a table's
    rows (PostgreSQL -> PostgreSQL counted COPY's trailer as a row: "1.00 rows" on every empty
    table, "22.0 rows" of 21), a counter for the index build and verification, and a screen
    left with log lines and finished bars only."""
    from tests.support.terminal import TerminalRun
    target = mongo_db() if kind == "mongodb" else pg_db()
    report = tmp_path / "r.json"
    run = TerminalRun(["migrate", "--source", pg_source[0], "--target", target, "--state-dir", tmp_path / "s",
                       "--report-json", report], width=WIDTH)
    rc, out = run.finish()
    assert rc == 0, out[-3000:]
    raw = bytes(run.raw)
    bars = _bars(raw)
    assert bars, raw[-2000:]
    rep = json.loads(report.read_text())
    empty = {p["table"] for p in rep["plan"] if p["rows"] == 0} if rep["plan"] else \
        {t["table"] for t in rep["tables"] if t["total"] == 0}
    assert len(empty) > 10  # MLflow's schema: most tables are empty
    drawn = _drawn(raw)
    assert not drawn & empty, f"bars drawn for empty tables: {sorted(drawn & empty)}"
    over = [b["text"] for b in bars if b["n"] > b["total"]]
    assert not over, over
    copy = [b for b in bars if b["desc"] == "copy"]
    total_rows = sum(t["migrated"] for t in rep["tables"])  # the "all tables" row's rows
    assert copy and copy[-1]["n"] == copy[-1]["total"] > 0
    steps = {b["desc"]: b for b in bars if b["desc"] != "copy" and not b["desc"].startswith(" ")}
    assert steps["verify (sample)"]["n"] == steps["verify (sample)"]["total"] > 0
    if kind == "mongodb":
        n_indexes = sum(1 for c in rep["verification"]["indexes"])
        assert steps["indexes"]["n"] == steps["indexes"]["total"] == n_indexes
    _check_screen(run.screen)
    # item 9: the copy apart from schema, index and verification time, in JSON and in text
    phases = rep["phases"]
    assert {"connect", "copy", "indexes", "verify", "plan" if kind == "mongodb" else "schema"} <= set(phases)
    assert rep["copy"]["rows"] == total_rows > 0
    assert rep["copy"]["seconds"] == round(phases["copy"], 3) < rep["seconds"]
    assert abs(rep["copy"]["rows_per_s"] - total_rows / phases["copy"]) <= 0.01 * rep["copy"]["rows_per_s"]  # JSON rounds the seconds
    assert sum(phases.values()) <= rep["seconds"] + 0.01
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("all tables (copy)"))
    assert f"{phases['copy']:.2f}" in line.split()
    for name in ("copy", "verify", "total"):
        assert re.search(rf"^  {name}\s+\d+\.\d\d s", out, re.M), out[-3000:]
    if kind == "mongodb":  # `dbmigrate verify` counts its checks too
        ver = TerminalRun(["verify", "--source", pg_source[0], "--target", target], width=WIDTH)
        rc, out = ver.finish()
        assert rc == 0, out[-3000:]
        v = [b for b in _bars(bytes(ver.raw)) if b["desc"] == "verify (sample)"]
        assert v and v[-1]["n"] == v[-1]["total"] > 0
        _check_screen(ver.screen)


@pytest.fixture(scope="module")
def bulk_110k(pg_base):
    """A seeded MLflow-shaped source whose metrics table is cut into 2 parts (benchmarks/generate.py)."""
    yield from generated_pg_source(pg_base, "dbm_prog", metrics=110000, runs=1100, params=3000, tags=2000, seed=7)


def _catalog_sum(state_dir: Path, sql: str) -> int:
    """One number summed over the checkpoint catalogs in `state_dir` (0 while one is being made)."""
    import sqlite3
    total = 0
    for f in state_dir.glob("*.sqlite"):
        db = sqlite3.connect(str(f), timeout=30)
        try:
            total += db.execute(sql).fetchone()[0]
        except sqlite3.OperationalError:
            pass
        finally:
            db.close()
    return total


def _done_rows(state_dir: Path) -> int:
    return _catalog_sum(state_dir, "SELECT COALESCE(SUM(rows), 0) FROM parts WHERE status = 'done'")


def _metric_parts_done(state_dir: Path) -> int:
    return _catalog_sum(state_dir, "SELECT COUNT(*) FROM parts WHERE status = 'done' AND id LIKE 'run_metrics#%'")


def test_ctrl_c_then_resume_on_a_terminal(bulk_110k, mongo_db, tmp_path):
    """Ctrl-C during the copy leaves no count above a total and no half-drawn line; the --resume
    run's overall bar starts at the rows the interrupted run had copied, not at 0."""
    import signal
    from tests.support.terminal import TerminalRun
    target, state = mongo_db(), tmp_path / "state"
    args = ["migrate", "--source", bulk_110k, "--target", target, "--state-dir", state, "--verify", "none"]
    run = TerminalRun(args, width=WIDTH)
    assert run.wait_for(lambda r: _metric_parts_done(state) >= 1, timeout=300), bytes(run.raw)[-3000:]
    run.proc.send_signal(signal.SIGINT)
    rc, out = run.finish()
    assert rc == 130, (rc, bytes(run.raw)[-3000:])
    bars = _bars(bytes(run.raw))
    assert bars and not [b["text"] for b in bars if b["n"] > b["total"]]
    _check_screen(run.screen, extra=("interrupted",))
    copied = _done_rows(state)
    assert copied > 0
    resumed = TerminalRun([*args, "--resume"], width=WIDTH)
    rc, out = resumed.finish()
    assert rc == 0, out[-3000:]
    copy = [b for b in _bars(bytes(resumed.raw)) if b["desc"] == "copy"]
    assert copy, bytes(resumed.raw)[-3000:]
    first = copy[0]
    # the first drawing already counts the parts the interrupted run copied (3 significant digits shown)
    assert abs(first["n"] - copied) <= max(copied * 0.01, 1), (first["text"], copied)
    assert copy[-1]["n"] == copy[-1]["total"]
    _check_screen(resumed.screen)


@pytest.fixture(scope="module")
def bulk_210k(pg_base):
    """A source big enough for worker processes (at least 200k rows to copy)."""
    yield from generated_pg_source(pg_base, "dbm_prog", metrics=210000, runs=1000, params=3000, tags=2000, seed=3)


def test_analyze_counts_the_documents_of_worker_processes(bulk_210k, mongo_db):
    """`analyze` with workers said "0 documents": each worker recorded in its own writer."""
    from tests.conftest import run_cli
    target = mongo_db()
    seen = {}
    for workers in ("1", "2"):
        res = run_cli("analyze", "--source", bulk_210k, "--target", target, "--workers", workers, "--no-progress")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        m = re.search(r"nothing was written to the target \(([\d,]+) documents, ([\d,.]+) MB", res.stdout)
        assert m, res.stdout[-3000:]
        seen[workers] = (int(m.group(1).replace(",", "")), m.group(2))
    assert "in 4 parts" in res.stderr or "2 workers" in res.stderr, res.stderr[-2000:]
    assert seen["2"] == seen["1"] and seen["1"][0] >= 210_000, seen


BENCH = ROOT / "benchmarks" / "results"


@pytest.mark.parametrize("result,scenario", [
    ("20261123T031203Z-1m.json", "pg-mongo"), ("20261123T031203Z-1m.json", "pg-mongo-tables"),
    ("20261123T021529Z-1m.json", "pg-pg"), ("20261123T021529Z-1m.json", "pg-sqlite")])
def test_estimate_is_near_the_measured_runs(bulk_110k, result, scenario):
    """The estimate against whole runs measured by the benchmarks (1M metric rows, --verify none,
    wall clock of the process): the old one counted the documents' copy only and said 70 s for the
    142 s pg-mongo run (and 21 s for the issue's 210 s run)."""
    from dbmigrate.analyze import estimate_seconds, estimate_sql_seconds
    from dbmigrate.plan import make_plan
    from dbmigrate.readers.sql import SqlSource
    from dbmigrate.uri import parse_uri
    doc = json.loads((BENCH / result).read_text())
    counts = doc["source"]["counts"]
    measured = next(s for s in doc["scenarios"] if s["scenario"] == scenario)["total"]["wall_seconds"]
    if scenario.startswith("pg-mongo"):
        src = SqlSource(parse_uri(bulk_110k, role="source")).open()  # same generator, same schema
        try:
            plan = make_plan(src.inspect(), "tables" if scenario.endswith("tables") else "mlflow-mongodb")
        finally:
            src.close()
        est = estimate_seconds(counts, plan, "none")
    else:
        kind = {"pg-pg": "postgresql", "pg-sqlite": "sqlite"}[scenario]
        est = estimate_sql_seconds({t: n for t, n in counts.items() if t != "alembic_version"}, kind, "none",
                                   same_engine=kind == "postgresql")
    assert 0.6 * measured <= est <= 1.5 * measured, (scenario, round(est, 1), round(measured, 1))


def test_report_rate_is_the_copy_of_this_run():
    """A resumed run: the rate divides the rows this run copied by the copy's own seconds; schema,
    index and verification seconds are lines of their own (text) and keys of their own (JSON)."""
    from dbmigrate.report import Report, TableRow
    r = Report(command="migrate", source="s", target="t", layout="tables")
    r.tables = [TableRow("metrics", "metrics", 300_000, 300_000, seconds=20.0), TableRow("runs", "runs", 3000, 3000)]
    r.phases = {"connect": 0.5, "schema": 6.0, "copy": 20.0, "indexes": 44.0, "verify": 27.0}
    r.copy_rows = 200_000  # 103,000 were kept from the interrupted run
    r.seconds = 98.0
    text = r.finish().to_text()
    line = next(ln for ln in text.splitlines() if "all tables (copy)" in ln)
    assert line.split()[-2:] == ["20.00", "10,000"]
    assert re.search(r"^  indexes\s+44\.00 s$", text, re.M) and re.search(r"^  verify\s+27\.00 s$", text, re.M)
    assert re.search(r"^  total\s+98\.00 s$", text, re.M)
    d = r.to_dict()
    assert d["copy"] == {"seconds": 20.0, "rows": 200_000, "rows_per_s": 10_000.0}
    assert d["phases"]["indexes"] == 44.0 and d["seconds"] == 98.0


def test_log_lines_go_above_the_bars_through_the_cli_handler(tmp_path):
    """While bars are shown, log records still pass the CLI's handler and its password-masking
    filter (tqdm's own logging redirect drops handler filters); they are written above the bars."""
    import logging
    import pty as ptymod
    from dbmigrate.cli import setup_logging
    from dbmigrate.progress import TerminalView
    from tests.support.terminal import screen
    master, slave = ptymod.openpty()
    stream = os.fdopen(slave, "w", buffering=1, encoding="utf-8")
    root, ours = logging.getLogger(), logging.getLogger("dbmigrate")
    saved = root.handlers[:], root.level, ours.level
    try:
        setup_logging("INFO")
        root.handlers[0].setStream(stream)
        p = Progress(TerminalView(stream))
        p.start_copy(_parts(), TOTALS)
        p.advance("metrics#1/3", 50)
        logging.getLogger("dbmigrate").info("retrying postgresql://mlflow:s3cr3t@db:5432/mlflow")
        p.part_done("metrics#1/3", 100)
        p.end_copy()
        p.close()
        assert root.handlers[0].stream is stream  # restored
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        ours.setLevel(saved[2])
        stream.close()
    import select as sel
    out = b""
    while True:
        r, _, _ = sel.select([master], [], [], 0.5)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert b"s3cr3t" not in out and b"mlflow:***@db" in out
    lines = [ln for ln in screen(out, 80) if ln.strip()]
    log_line = next(i for i, ln in enumerate(lines) if "retrying" in ln)
    assert lines[log_line].startswith(tuple("0123456789")), lines  # a line of its own, not after a bar
    assert lines[-1].startswith("copy:") and "100/321" in lines[-1], lines
