"""The sync benchmark: a full `dbmigrate migrate` against a later `dbmigrate sync` after about 1 % of
the rows changed (issue 14, item 4: the cost of a sync follows the change, not the database).

    python -m benchmarks.sync --metrics 1000000 [--change 0.01] [--targets pg,mysql] [--reuse-db] \
        [--out benchmarks/results]

One run:

1. Source: the seeded MLflow-shaped PostgreSQL database of :mod:`benchmarks.generate` at the scale
   (1M metric rows: 10k runs, 50k tags, 100k params), generated as ``bench_sync_<scale>_base``
   (kept; ``--reuse-db`` uses it again after checking its row counts) and cloned for the run
   (``CREATE DATABASE ... TEMPLATE``) into ``bench_sync_<scale>``, which the run changes.
2. Full copy: ``dbmigrate migrate --verify none`` into a new database on each target
   (``pg``: PostgreSQL on the same server, ``mysql``: MySQL/MariaDB, utf8mb4_bin; ``mysql-mysql``:
   MySQL/MariaDB copied from the ``mysql`` target, which its own sync later brings to the changed
   source, so that pair measures MySQL/MariaDB -> MySQL/MariaDB), timed around the process (peak
   RSS of its process tree sampled as in benchmarks/run.py).
3. The change, in one transaction on the source, what MLflow would do on a busy server
   (``--change`` of the runs, default 1 %, and as many new metric rows as that fraction of the
   metrics table): each changed run ends (status FINISHED, a new end_time), logs the next steps of
   its first metric series (new metrics rows; its latest_metrics row moves), gets a new tag and a
   new param and an edited note tag; and a tenth as many runs as were changed, deleted ones, are
   removed with their rows (what ``mlflow gc`` does).
4. ``dbmigrate sync`` into each target, timed the same way; its JSON report gives the key ranges
   compared and differing (recopied), rows read and rows written. Then a second sync (nothing
   changed: the cost of the checksums alone).
5. Check: every table of the PostgreSQL target equals the source (md5 of the rows' text in order,
   computed by the server on both sides); a MySQL target is checked by ``dbmigrate verify --verify
   full``. A failed check is a failed benchmark (exit 1).
6. Writes ``<out>/<UTC stamp>-sync-<scale>.json`` and ``.md`` and ``<out>/latest-sync.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg2
from psycopg2 import sql

from benchmarks.generate import REPO_ROOT, drop_database, generate, pg_dsn
from benchmarks.run import (ADMIN_URI, MYSQL_ADMIN_URI, loadavg, log, machine_info, measure, pg_exec,
                            pg_table_counts, scale_name, sizes_for)

TABLES = ("experiments", "experiment_tags", "runs", "tags", "params", "metrics", "latest_metrics")


def run_timed(name: str, args: list[str], workdir: Path, timeout: float) -> dict:
    """`python -m dbmigrate.cli <args> --report-json ... --no-progress`, timed, peak RSS sampled
    (benchmarks.run.measure), with dbmigrate's report."""
    report_path = workdir / f"{name}.report.json"
    report_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "dbmigrate.cli", *args, "--report-json", str(report_path), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBMIGRATE_")}
    load_before = loadavg()
    m = measure(name, cmd, workdir, timeout, env=env)
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    res = {"command": m["command"], "exit_code": m["exit_code"], "wall_seconds": m["wall_seconds"], "report": report,
           "peak_rss_tree_mb": m["peak_rss_tree_mb"], "cpu_seconds": m["cpu_seconds"],
           "loadavg_before": load_before, "loadavg_after": loadavg()}
    if m["exit_code"] != 0:
        res["stderr_tail"], res["stdout_tail"] = m["stderr_tail"], m["stdout_tail"]
    log(f"  {name}: exit {m['exit_code']}, {m['wall_seconds']:.1f} s, peak RSS {m['peak_rss_tree_mb']:.0f} MB")
    return res


def change_source(uri: str, fraction: float, seed: int) -> dict:
    """What MLflow does on a busy server between a copy and the sync, in one transaction; returns
    the rows inserted, updated and deleted per table."""
    rng = random.Random(f"{seed}:sync-change")
    conn = psycopg2.connect(uri)
    done: dict[str, dict[str, int]] = {}

    def count(table, what, n):
        done.setdefault(table, {"inserted": 0, "updated": 0, "deleted": 0})[what] += n

    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT run_uuid FROM runs WHERE lifecycle_stage = 'active' ORDER BY run_uuid")
            active = [r[0] for r in cur.fetchall()]
            cur.execute("SELECT count(*) FROM runs")
            n_runs = max(1, round(cur.fetchone()[0] * fraction))
            cur.execute("SELECT count(*) FROM metrics")
            per_run = max(1, round(cur.fetchone()[0] * fraction / n_runs))
            changed = rng.sample(active, n_runs)
            now = 1_800_000_000_000
            for rid in changed:
                cur.execute("UPDATE runs SET status = 'FINISHED', end_time = %s WHERE run_uuid = %s", (now, rid))
                count("runs", "updated", cur.rowcount)
                cur.execute("SELECT key, max(step), max(timestamp) FROM metrics WHERE run_uuid = %s "
                            "GROUP BY key ORDER BY key LIMIT 1", (rid,))
                row = cur.fetchone()
                key, step, ts = row if row else ("loss", 0, now)
                rows = [(key, rng.random(), ts + i + 1, rid, step + i + 1, False) for i in range(per_run)]
                cur.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                                "VALUES (%s, %s, %s, %s, %s, %s)", rows)
                count("metrics", "inserted", len(rows))
                last = rows[-1]
                cur.execute("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                            "VALUES (%s, %s, %s, %s, false, %s) ON CONFLICT (key, run_uuid) DO UPDATE SET "
                            "value = excluded.value, timestamp = excluded.timestamp, step = excluded.step, "
                            "is_nan = false RETURNING (xmax = 0)", (key, last[1], last[2], last[4], rid))
                count("latest_metrics", "inserted" if cur.fetchone()[0] else "updated", 1)
                cur.execute("INSERT INTO tags (key, value, run_uuid) VALUES ('sync.reviewed', 'yes', %s)", (rid,))
                count("tags", "inserted", 1)
                cur.execute("INSERT INTO params (key, value, run_uuid) VALUES ('sync.param', %s, %s)",
                            (str(rng.randrange(1000)), rid))
                count("params", "inserted", 1)
                cur.execute("UPDATE tags SET value = 'edited after the copy' WHERE run_uuid = %s "
                            "AND key = 'mlflow.note.content'", (rid,))
                count("tags", "updated", cur.rowcount)
            cur.execute("SELECT run_uuid FROM runs WHERE lifecycle_stage = 'deleted' ORDER BY run_uuid")
            deleted = [r[0] for r in cur.fetchall()]
            gone = rng.sample(deleted, min(len(deleted), max(1, n_runs // 10)))
            for t in ("metrics", "latest_metrics", "params", "tags", "runs"):
                cur.execute(sql.SQL("DELETE FROM {} WHERE run_uuid = ANY(%s)").format(sql.Identifier(t)), (gone,))
                count(t, "deleted", cur.rowcount)
        return {"runs_changed": len(changed), "metric_rows_per_run": per_run, "runs_removed": len(gone),
                "tables": done, "rows": sum(sum(v.values()) for v in done.values())}
    finally:
        conn.close()


def table_digests(uri: str, tables) -> dict[str, tuple[int, str]]:
    """Per table: (rows, md5 of the rows' text in sorted order), computed by the server."""
    conn = psycopg2.connect(uri)
    try:
        with conn.cursor() as cur:
            out = {}
            for t in tables:
                cur.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) "
                                    "FROM {} r").format(sql.Identifier(t)))
                n, h = cur.fetchone()
                out[t] = (n, h)
            return out
    finally:
        conn.close()


def mysql_exec(admin: str, statement: str) -> None:
    import pymysql
    from urllib.parse import urlparse
    u = urlparse(admin)
    conn = pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root", password=u.password or "")
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
        conn.commit()
    finally:
        conn.close()


def summary(target: str, full: dict, sync: dict, again: dict, change: dict, source_rows: int) -> dict:
    s = (sync.get("report") or {}).get("sync") or {}
    a = (again.get("report") or {}).get("sync") or {}
    tables = s.get("tables", {})
    written = s.get("rows_inserted", 0) + s.get("rows_updated", 0) + s.get("rows_deleted", 0)
    return {
        "target": target, "source_rows": source_rows, "changed_rows": change["rows"],
        "full_migrate_seconds": full["wall_seconds"], "sync_seconds": sync["wall_seconds"],
        "speedup": round(full["wall_seconds"] / sync["wall_seconds"], 1) if sync["wall_seconds"] else None,
        "second_sync_seconds": again["wall_seconds"],
        "ranges_compared": s.get("ranges_compared"), "ranges_recopied": s.get("ranges_differing"),
        "rows_read": sum(e["rows_read"] for e in tables.values()),
        "rows_written": written, "rows_inserted": s.get("rows_inserted"), "rows_updated": s.get("rows_updated"),
        "rows_deleted": s.get("rows_deleted"), "write_seconds": s.get("write_seconds"),
        "second_sync_ranges_differing": a.get("ranges_differing"),
        "peak_rss_full_mb": full["peak_rss_tree_mb"], "peak_rss_sync_mb": sync["peak_rss_tree_mb"],
        "per_table": {t: {k: e[k] for k in ("ranges", "compared", "differing", "checksum", "rows_read", "deleted",
                                             "updated", "inserted", "seconds")}
                      for t, e in tables.items() if e["compared"]},
    }


def render(doc: dict) -> str:
    m = doc["machine"]
    lines = [f"# dbmigrate sync benchmark: {doc['scale']} ({doc['source_counts'].get('metrics', 0):,} metric rows)", "",
             f"{doc['started']} (UTC), {doc['seconds']:.0f} s. dbmigrate at `{m['dbmigrate_commit'][:12]}`"
             f"{' (modified)' if m['dbmigrate_dirty'] else ''}.  ",
             f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs, {m['ram_gib']} GiB RAM; PostgreSQL {m['postgresql']}; "
             f"Python {m['python']}. Load average before / after: {doc['loadavg_before']} / {doc['loadavg_after']}.  ",
             f"Command: `{doc['command']}`  ",
             "Source: `{}` ({}).".format(doc["source_database"],
                                         ", ".join(f"{t} {n:,}" for t, n in sorted(doc["source_counts"].items()) if n)),
             "", "## The change", "",
             f"{doc['change']['runs_changed']} runs changed ({doc['change_fraction']:.0%} of the runs; each: ended, "
             f"{doc['change']['metric_rows_per_run']} new metric rows, latest_metrics moved, a new tag and param, "
             f"an edited note tag) and {doc['change']['runs_removed']} deleted runs removed with their rows: "
             f"{doc['change']['rows']:,} rows, {doc['change']['rows'] / doc['source_rows']:.2%} of "
             f"{doc['source_rows']:,}.", "",
             "| table | inserted | updated | deleted |", "|---|---:|---:|---:|"]
    for t, v in sorted(doc["change"]["tables"].items()):
        lines.append(f"| {t} | {v['inserted']:,} | {v['updated']:,} | {v['deleted']:,} |")
    lines += ["", "## Full migrate against sync", "",
              "| target | full migrate s | sync s | speed-up | 2nd sync s (no change) | ranges compared | ranges recopied "
              "| rows read | rows written (ins/upd/del) | peak RSS migrate / sync MB | target equals source |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    pairs = {"pg": "PostgreSQL -> PostgreSQL", "mysql": "PostgreSQL -> MySQL/MariaDB",
             "mysql-mysql": "MySQL/MariaDB -> MySQL/MariaDB"}
    for r in doc["results"]:
        lines.append(f"| {r['target']} ({pairs.get(r['target'], '')}) | {r['full_migrate_seconds']:.1f} | "
                     f"{r['sync_seconds']:.1f} | {r['speedup']}x | "
                     f"{r['second_sync_seconds']:.1f} | {r['ranges_compared']:,} | {r['ranges_recopied']:,} | "
                     f"{r['rows_read']:,} | {r['rows_written']:,} ({r['rows_inserted']:,}/{r['rows_updated']:,}/"
                     f"{r['rows_deleted']:,}) | {r['peak_rss_full_mb']:.0f} / {r['peak_rss_sync_mb']:.0f} | "
                     f"{r['check']} |")
    lines += ["", "Wall seconds of the whole `dbmigrate` process (start-up included); the migrate runs "
              "`--verify none`, the sync compares per-range checksums (its own check). Rows read: of the "
              "differing ranges, both sides.", ""]
    for r in doc["results"]:
        lines += [f"### {r['target']}: per table", "",
                  "| table | checksum | ranges | compared | recopied | rows read | ins | upd | del | s |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for t, e in sorted(r["per_table"].items(), key=lambda kv: -kv[1]["compared"]):
            lines.append(f"| {t} | {e['checksum']} | {e['ranges']:,} | {e['compared']:,} | {e['differing']:,} | "
                         f"{e['rows_read']:,} | {e['inserted']:,} | {e['updated']:,} | {e['deleted']:,} | "
                         f"{e['seconds']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", type=int, default=1_000_000)
    ap.add_argument("--change", type=float, default=0.01, help="fraction of the runs changed (default 0.01)")
    ap.add_argument("--targets", default="pg",
                    help="comma-separated: pg, mysql, mysql-mysql (MariaDB -> MariaDB from the mysql target; "
                         "default pg)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--reuse-db", action="store_true", help="use bench_sync_<scale>_base if its counts fit")
    ap.add_argument("--pg-admin", default=ADMIN_URI)
    ap.add_argument("--mysql-admin", default=MYSQL_ADMIN_URI)
    ap.add_argument("--drop-base", action="store_true", help="drop bench_sync_<scale>_base at the end (tests)")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    started = datetime.now(timezone.utc)
    t_all = time.perf_counter()
    scale = scale_name(args.metrics)
    sizes = sizes_for(args.metrics)
    base, name = f"bench_sync_{scale}_base", f"bench_sync_{scale}"
    expect = {"runs": sizes.runs, "tags": sizes.tags, "params": sizes.params, "metrics": sizes.metrics}
    exists = bool(pg_exec(args.pg_admin, sql.SQL("SELECT 1 FROM pg_database WHERE datname = {}").format(
        sql.Literal(base))))
    if args.reuse_db and exists and all(pg_table_counts(pg_dsn(args.pg_admin, base)).get(t) == n
                                        for t, n in expect.items()):
        log(f"source: reusing {base}")
    else:
        log(f"source: generating {base} ({args.metrics:,} metric rows)")
        generate(args.pg_admin, base, sizes, seed=args.seed, drop_existing=True, log=log)
    drop_database(args.pg_admin, name)
    pg_exec(args.pg_admin, sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(base)))
    src = pg_dsn(args.pg_admin, name)
    counts = pg_table_counts(src)
    source_rows = sum(counts.values())
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"dbm-bench-sync-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    targets, failures = {}, []
    for kind in args.targets.split(","):
        tname = f"bench_sync_{scale}_{kind}".replace("-", "_")
        if kind == "pg":
            drop_database(args.pg_admin, tname)
            pg_exec(args.pg_admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(tname)))
            targets[kind] = pg_dsn(args.pg_admin, tname)
        elif kind in ("mysql", "mysql-mysql"):
            if kind == "mysql-mysql" and "mysql" not in targets:
                raise SystemExit("mysql-mysql syncs from the mysql target: list mysql before it")
            mysql_exec(args.mysql_admin, f"DROP DATABASE IF EXISTS `{tname}`")
            mysql_exec(args.mysql_admin, f"CREATE DATABASE `{tname}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            targets[kind] = args.mysql_admin.rstrip("/") + "/" + tname
        else:
            raise SystemExit(f"unknown target {kind!r} (pg, mysql, mysql-mysql)")
    # mysql-mysql: MySQL/MariaDB -> MySQL/MariaDB, from the mysql target (which its own sync brings to
    # the changed source before this pair's sync runs)
    sources = {kind: targets["mysql"] if kind == "mysql-mysql" else src for kind in targets}
    load_before = loadavg()
    fulls = {}
    for kind, dst in targets.items():
        log(f"full migrate -> {kind}")
        fulls[kind] = run_timed(f"migrate-{kind}", ["migrate", "--source", sources[kind], "--target", dst,
                                                    "--verify", "none", "--state-dir", str(workdir / f"state-{kind}")],
                                workdir, args.timeout)
        if fulls[kind]["exit_code"] != 0:
            failures.append(f"migrate -> {kind}: exit {fulls[kind]['exit_code']}")
    log(f"change: {args.change:.1%} of the runs")
    change = change_source(src, args.change, args.seed)
    log(f"  {change['rows']:,} rows changed ({change['rows'] / source_rows:.2%} of {source_rows:,})")
    results = []
    for kind, dst in targets.items():
        if fulls[kind]["exit_code"] != 0:
            continue
        log(f"sync -> {kind}")
        s = run_timed(f"sync-{kind}", ["sync", "--source", sources[kind], "--target", dst], workdir, args.timeout)
        again = run_timed(f"sync2-{kind}", ["sync", "--source", sources[kind], "--target", dst], workdir,
                          args.timeout)
        if s["exit_code"] != 0 or again["exit_code"] != 0:
            failures.append(f"sync -> {kind}: exit {s['exit_code']} / {again['exit_code']}")
            continue
        r = summary(kind, fulls[kind], s, again, change, source_rows)
        if kind == "pg":
            tables = [t for t, n in pg_table_counts(src).items()]
            a, b = table_digests(src, tables), table_digests(dst, tables)
            bad = [t for t in tables if a[t] != b.get(t)]
            r["check"] = "yes (md5 of every table's rows)" if not bad else f"NO: {', '.join(bad)}"
        else:
            v = run_timed(f"verify-{kind}", ["verify", "--source", sources[kind], "--target", dst, "--verify", "full"],
                          workdir, args.timeout)
            bad = v["exit_code"] != 0
            r["check"] = "yes (dbmigrate verify --verify full)" if not bad else "NO: verify failed"
            r["verify_seconds"] = v["wall_seconds"]
        if bad:
            failures.append(f"{kind}: the target differs from the source after sync")
        if r["rows_written"] != change["rows"] or r["second_sync_ranges_differing"] != 0:
            failures.append(f"{kind}: sync wrote {r['rows_written']} rows for {change['rows']} changed; "
                            f"second sync found {r['second_sync_ranges_differing']} ranges differing")
        r["runs"] = {"migrate": fulls[kind], "sync": s, "sync_again": again}
        for run in r["runs"].values():
            run.pop("report", None)
        results.append(r)
        log(f"  full {r['full_migrate_seconds']:.1f} s, sync {r['sync_seconds']:.1f} s ({r['speedup']}x), "
            f"{r['ranges_recopied']} of {r['ranges_compared']} ranges recopied, {r['rows_read']:,} rows read, "
            f"{r['rows_written']:,} written; target equals source: {r['check']}")
    for kind, dst in targets.items():
        if kind == "pg":
            drop_database(args.pg_admin, dst.rsplit("/", 1)[1])
        else:
            mysql_exec(args.mysql_admin, f"DROP DATABASE IF EXISTS `{dst.rsplit('/', 1)[1]}`")
    drop_database(args.pg_admin, name)
    if args.drop_base:
        drop_database(args.pg_admin, base)
    doc = {"started": started.isoformat(timespec="seconds"), "seconds": round(time.perf_counter() - t_all, 1),
           "scale": scale,
           "command": "python -m benchmarks.sync " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": machine_info(args.pg_admin, None), "loadavg_before": load_before, "loadavg_after": loadavg(),
           "source_database": f"{name} (a copy of {base})", "source_counts": counts, "source_rows": source_rows,
           "change_fraction": args.change, "change": change, "results": results, "failures": failures}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (out / f"{stamp}-sync-{scale}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    md = render(doc) + ("\n## Failures\n\n" + "\n".join(f"- {f}" for f in failures) + "\n" if failures else "")
    (out / f"{stamp}-sync-{scale}.md").write_text(md)
    if not args.drop_base:  # a test's run leaves the figures of real runs alone
        (out / "latest-sync.md").write_text(md)
    print(md)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
