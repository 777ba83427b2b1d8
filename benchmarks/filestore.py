"""dbmigrate against MLflow's own `mlflow migrate-filestore`: the same mlruns into SQLite, in one run.

    python -m benchmarks.filestore --metrics 10000,1000000 [--out benchmarks/results] [--dir DIR] [--keep]

For each scale (metric rows):

1. An mlruns directory written in MLflow's FileStore format by a seeded generator (MLflow's client
   takes minutes for 10k runs): the shape of benchmarks/generate.py's ``bench_<scale>`` -- runs =
   metrics / 100 (at least 100, at most 10k), 10 params and 5 tags (plus MLflow's system tags) per
   run, 5 metric keys per run with equal histories holding NaN and +-inf now and then; 10
   experiments with MLflow's 18-digit ids plus Default, one deleted experiment in ``.trash``, 1 %
   of runs deleted. Files as MLflow 3.17.2's FileStore writes them (meta.yaml, one file per
   param/tag, metric lines ``<timestamp> <value> <step>``).
2. ``python -m dbmigrate.cli migrate --source file:///.../mlruns --target sqlite:///a.db
   --verify full`` and ``mlflow migrate-filestore --source DIR --target sqlite:///b.db
   --no-progress`` (MLflow 3.17.2, the main virtualenv), each as a subprocess: wall time and peak
   RSS of the process tree (sampled from /proc every 50 ms, benchmarks.run.TreeSampler).
   migrate-filestore verifies nothing; dbmigrate's figure includes its full verification.
3. MLflow 3.17.2 reading each SQLite file: every experiment (deleted ones too), every run
   (``search_runs`` of all: info, params, tags, latest metrics) and every metric history
   (``SqlAlchemyStore.get_metric_history_bulk``, 100 runs per call) must be the same from both.
   The row counts of every table are recorded too.

Writes ``<out>/<UTC timestamp>-filestore-<scale>.json`` and ``<out>/latest-filestore.md``.
Goal (issue 13): dbmigrate at least 5x faster than migrate-filestore at 1M metric rows, with its
peak memory flat from 10k to 1M. A missed goal is reported (MISS), not an error; the exit code is
non-zero only when something could not be measured or the two copies differ.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.generate import REPO_ROOT
from benchmarks.run import loadavg, measure, scale_name

GOAL_SPEEDUP = 5.0
KEYS = ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
T0 = 1_700_000_000_000


# ----------------------------------------------------------------------------- the mlruns generator
def _yaml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _experiment(root: str, exp_id: str, name: str, created: int, stage: str = "active") -> str:
    d = os.path.join(root, exp_id)
    os.makedirs(os.path.join(d, "tags"))
    _write(os.path.join(d, "meta.yaml"),
           f"artifact_location: file://{d}\ncreation_time: {created}\nexperiment_id: '{exp_id}'\n"
           f"last_update_time: {created}\nlifecycle_stage: {stage}\nname: {_yaml_str(name)}\n")
    return d


def generate_mlruns(root: str, metrics: int, seed: int = 42) -> dict:
    """Write an mlruns directory of `metrics` metric rows at `root`; what it holds."""
    rng = random.Random(seed)
    runs = min(10_000, max(100, metrics // 100))
    per_key = max(1, metrics // (runs * len(KEYS)))
    extra = metrics - runs * len(KEYS) * per_key  # the remainder goes to the first run's "loss"
    os.makedirs(root)
    _experiment(root, "0", "Default", T0)
    exp_ids = [str(rng.randrange(10**17, 10**18)) for _ in range(10)]
    exp_dirs = [_experiment(root, e, f"experiment {i} ✓", T0 + i) for i, e in enumerate(exp_ids)]
    trash = os.path.join(root, ".trash")
    os.makedirs(trash)
    gone = str(rng.randrange(10**17, 10**18))
    exp_dirs.append(_experiment(trash, gone, "deleted experiment", T0 + 100, "deleted"))
    for i, d in enumerate(exp_dirs):
        _write(os.path.join(d, "tags", "team"), f"team-{i % 3}")
    special = [math.nan, math.inf, -math.inf]
    files = rows = 0
    t = time.perf_counter()
    for r in range(runs):
        exp_dir = exp_dirs[r % len(exp_dirs)]
        exp_id = os.path.basename(exp_dir)
        run_id = f"{rng.getrandbits(128):032x}"
        d = os.path.join(exp_dir, run_id)
        for sub in ("params", "tags", "metrics", "artifacts"):
            os.makedirs(os.path.join(d, sub))
        start = T0 + r * 1000
        deleted = r % 100 == 99
        _write(os.path.join(d, "meta.yaml"),
               f"artifact_uri: file://{d}/artifacts\nend_time: {start + 900}\nentry_point_name: ''\n"
               f"experiment_id: '{exp_id}'\nlifecycle_stage: {'deleted' if deleted else 'active'}\n"
               f"run_id: {run_id}\nrun_name: run-{r}\nrun_uuid: {run_id}\nsource_name: ''\nsource_type: 4\n"
               f"source_version: ''\nstart_time: {start}\nstatus: 3\ntags: []\nuser_id: bench\n"
               + (f"deleted_time: {start + 950}\n" if deleted else ""))
        for p in range(10):
            _write(os.path.join(d, "params", f"param_{p}"), f"{rng.random():.6f}" if p else f"value-{r}")
        tags = {"mlflow.runName": f"run-{r}", "mlflow.user": "bench", "mlflow.source.name": "bench.py",
                "mlflow.source.type": "LOCAL", "stage": "dev", "owner": f"owner-{r % 7}",
                "note": "ünïcode ✓", "seed": str(seed), "batch": str(r // 100)}
        for k, v in tags.items():
            _write(os.path.join(d, "tags", k), v)
        for k in KEYS:
            n = per_key + (extra if (r, k) == (0, "loss") else 0)
            lines = []
            for step in range(n):
                v = special[(r + step) % 3] if (r * 7 + step) % 211 == 0 else rng.random()
                lines.append(f"{start + step * 10} {v} {step}\n")
            _write(os.path.join(d, "metrics", k), "".join(lines))
            rows += n
        files += 1 + 10 + len(tags) + len(KEYS)
    return {"runs": runs, "experiments": len(exp_dirs) + 1, "metric_rows": rows, "files": files,
            "bytes": sum(os.path.getsize(os.path.join(a, f)) for a, _, fs in os.walk(root) for f in fs),
            "seconds": time.perf_counter() - t}


# ----------------------------------------------------------------------------- MLflow's answers
def table_counts(path: str) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        conn.close()


def _num(v):
    return "NaN" if isinstance(v, float) and math.isnan(v) else v


def mlflow_answers(path: str) -> dict:
    """Experiments, runs and every metric history as MLflow 3.17.2 answers them from a SQLite file."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType
    client = MlflowClient(tracking_uri=f"sqlite:///{path}")
    store = client._tracking_client.store
    exps = client.search_experiments(view_type=ViewType.ALL, max_results=50_000)
    out = {"experiments": sorted((e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage,
                                  e.creation_time, e.last_update_time, sorted(e.tags.items())) for e in exps)}
    runs, token = [], None
    while True:
        page = client.search_runs([e.experiment_id for e in exps], run_view_type=ViewType.ALL,
                                  max_results=50_000, page_token=token)
        runs += page
        token = page.token
        if not token:
            break
    out["runs"] = {r.info.run_id: (r.info.experiment_id, r.info.run_name, r.info.status, r.info.start_time,
                                   r.info.end_time, r.info.lifecycle_stage, r.info.artifact_uri, r.info.user_id,
                                   sorted(r.data.params.items()), sorted(r.data.tags.items()),
                                   sorted((k, _num(v)) for k, v in r.data.metrics.items()))
                   for r in runs}
    ids = sorted(out["runs"])
    history: dict = {}
    for key in KEYS:
        for i in range(0, len(ids), 100):
            for m in store.get_metric_history_bulk(ids[i:i + 100], key, max_results=10**9):
                history.setdefault(f"{m.run_id}/{key}", []).append((m.timestamp, m.step, _num(m.value)))
    out["metric_history"] = {k: sorted(v, key=repr) for k, v in history.items()}
    return out


def compare(a: dict, b: dict) -> list[str]:
    diffs = []
    for part in a:
        if a[part] != b[part]:
            if isinstance(a[part], dict):
                keys = sorted(k for k in set(a[part]) | set(b[part]) if a[part].get(k) != b[part].get(k))
                diffs.append(f"{part}: {len(keys)} differ, e.g. {keys[0]}: {str(a[part].get(keys[0]))[:300]} "
                             f"vs {str(b[part].get(keys[0]))[:300]}")
            else:
                diffs.append(f"{part}: {str(a[part])[:300]} vs {str(b[part])[:300]}")
    return diffs


# ----------------------------------------------------------------------------- one scale
def run_scale(metrics: int, base: Path, keep: bool) -> dict:
    scale = scale_name(metrics)
    d = base / f"fs-{scale}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    print(f"[{scale}] generating mlruns ...", flush=True)
    gen = generate_mlruns(str(d / "mlruns"), metrics)
    print(f"[{scale}] {gen['metric_rows']:,} metric rows, {gen['runs']:,} runs, {gen['files']:,} files, "
          f"{gen['bytes'] / 2**20:.1f} MiB in {gen['seconds']:.1f} s", flush=True)
    subprocess.run(["sync"], check=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBMIGRATE_", "MLFLOW_"))}
    ours, theirs = d / "dbmigrate.db", d / "migrate-filestore.db"
    dbm = measure("dbmigrate", [sys.executable, "-m", "dbmigrate.cli", "migrate", "--source", f"file://{d}/mlruns",
                                "--target", f"sqlite:///{ours}", "--verify", "full", "--no-progress",
                                "--state-dir", str(d / "state"), "--report-json", str(d / "report.json")], d, env=env)
    report = json.loads((d / "report.json").read_text()) if (d / "report.json").exists() else None
    print(f"[{scale}] dbmigrate: exit {dbm['exit_code']}, {dbm['wall_seconds']:.1f} s, "
          f"{dbm['peak_rss_tree_mb']:.0f} MB", flush=True)
    mlflow_exe = str(Path(sys.executable).with_name("mlflow"))
    mig = measure("migrate-filestore", [mlflow_exe, "migrate-filestore", "--source", str(d), "--target",
                                        f"sqlite:///{theirs}", "--no-progress"], d, env=env)
    print(f"[{scale}] mlflow migrate-filestore: exit {mig['exit_code']}, {mig['wall_seconds']:.1f} s, "
          f"{mig['peak_rss_tree_mb']:.0f} MB", flush=True)
    result = {"scale": scale, "metrics": metrics, "mlruns": gen, "dbmigrate": dbm, "migrate_filestore": mig,
              "dbmigrate_report": {k: report.get(k) for k in ("status", "phases", "copy", "notes", "remapped")}
              if report else None}
    if dbm["exit_code"] == 0 and mig["exit_code"] == 0:
        result["speedup"] = round(mig["wall_seconds"] / dbm["wall_seconds"], 2)
        ca, cb = table_counts(str(ours)), table_counts(str(theirs))
        result["counts"] = {"dbmigrate": {k: v for k, v in ca.items() if v},
                            "migrate_filestore": {k: v for k, v in cb.items() if v}}
        t = time.perf_counter()
        a, b = mlflow_answers(str(ours)), mlflow_answers(str(theirs))
        result["answers"] = {"same": a == b, "differences": compare(a, b),
                             "experiments": len(a["experiments"]), "runs": len(a["runs"]),
                             "metric_histories": len(a["metric_history"]),
                             "metric_points": sum(len(v) for v in a["metric_history"].values()),
                             "seconds": round(time.perf_counter() - t, 1)}
        print(f"[{scale}] MLflow answers the same from both: {result['answers']['same']} "
              f"({result['answers']['runs']:,} runs, {result['answers']['metric_points']:,} metric points)",
              flush=True)
    if not keep:
        shutil.rmtree(d, ignore_errors=True)
    return result


def markdown(doc: dict) -> str:
    out = ["# dbmigrate vs `mlflow migrate-filestore` (MLflow 3.17.2): an mlruns FileStore into SQLite", "",
           f"{doc['started']} (UTC). dbmigrate at `{doc['commit']}`; {doc['machine']}; load before "
           f"{doc['loadavg_before']}, after {doc['loadavg_after']}.", "",
           f"Command: `{doc['command']}`", "",
           "| metric rows | runs | files | tool | exit | wall s | peak RSS tree MB | CPU s | speedup | "
           "MLflow answers the same |", "|---:|---:|---:|---|---|---:|---:|---:|---:|---|"]
    for r in doc["results"]:
        g = r["mlruns"]
        same = r.get("answers", {}).get("same")
        for tool, key in (("dbmigrate migrate --verify full", "dbmigrate"), ("mlflow migrate-filestore", "migrate_filestore")):
            m = r[key]
            out.append(f"| {g['metric_rows']:,} | {g['runs']:,} | {g['files']:,} | {tool} | {m['exit_code']} | "
                       f"{m['wall_seconds']:.1f} | {m['peak_rss_tree_mb']:.0f} | {m['cpu_seconds']:.1f} | "
                       + (f"{r.get('speedup', 0):.1f}x" if key == "dbmigrate" and r.get("speedup") else "") + " | "
                       + ("" if same is None else ("yes" if same else "NO")) + " |")
    out += ["", "speedup = migrate-filestore wall time / dbmigrate wall time (whole processes: start-up, "
            "schema, copy, and for dbmigrate its full verification). Peak RSS: sum over the process tree "
            "(dbmigrate makes the schema in a child process that imports MLflow).", ""]
    for line in doc["goals"]:
        out.append(f"- {line}")
    for r in doc["results"]:
        a = r.get("answers")
        if a:
            out += ["", f"{r['scale']}: MLflow 3.17.2 read {a['experiments']} experiments, {a['runs']:,} runs and "
                    f"{a['metric_histories']:,} metric histories ({a['metric_points']:,} points) from each file: "
                    + ("the same." if a["same"] else "DIFFERENT: " + "; ".join(a["differences"]))]
        rep = r.get("dbmigrate_report") or {}
        if rep.get("phases"):
            out.append(f"dbmigrate phases at {r['scale']} (s): " + ", ".join(
                f"{k} {v:.2f}" for k, v in rep["phases"].items() if isinstance(v, (int, float))))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", default="10000,1000000", help="comma list of metric-row scales")
    ap.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the mlruns and SQLite files")
    args = ap.parse_args(argv)
    scales = [int(x) for x in args.metrics.split(",")]
    base = Path(args.dir or tempfile.mkdtemp(prefix="dbm-fsbench-"))
    started = datetime.now(timezone.utc)
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True).stdout.strip()
    import platform
    doc = {"started": started.isoformat(timespec="seconds"), "commit": commit,
           "command": "python -m benchmarks.filestore " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}",
           "loadavg_before": loadavg(), "results": []}
    for n in scales:
        doc["results"].append(run_scale(n, base, args.keep))
    doc["loadavg_after"] = loadavg()
    goals, failed = [], False
    for r in doc["results"]:
        if r["dbmigrate"]["exit_code"] != 0 or r["migrate_filestore"]["exit_code"] != 0:
            failed = True
            goals.append(f"{r['scale']}: a tool failed (dbmigrate {r['dbmigrate']['exit_code']}, migrate-filestore "
                         f"{r['migrate_filestore']['exit_code']})")
        elif not r["answers"]["same"]:
            failed = True
            goals.append(f"{r['scale']}: MLflow's answers differ between the two copies")
    big = max(doc["results"], key=lambda r: r["metrics"])
    if big.get("speedup") is not None:
        goals.append(f"speed at {big['scale']}: {big['speedup']:.1f}x faster than migrate-filestore (goal >= "
                     f"{GOAL_SPEEDUP:.0f}x): {'PASS' if big['speedup'] >= GOAL_SPEEDUP else 'MISS'}")
    if len(doc["results"]) > 1:
        small = min(doc["results"], key=lambda r: r["metrics"])
        a, b = small["dbmigrate"]["peak_rss_tree_mb"], big["dbmigrate"]["peak_rss_tree_mb"]
        goals.append(f"dbmigrate's peak RSS {a:.0f} MB at {small['scale']}, {b:.0f} MB at {big['scale']} "
                     f"(flat: within 25 %): {'PASS' if b <= a * 1.25 else 'MISS'}; migrate-filestore "
                     f"{small['migrate_filestore']['peak_rss_tree_mb']:.0f} -> "
                     f"{big['migrate_filestore']['peak_rss_tree_mb']:.0f} MB")
    doc["goals"] = goals
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "-".join(r["scale"] for r in doc["results"])
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (out / f"{stamp}-filestore-{tag}.json").write_text(json.dumps(doc, indent=1, default=str))
    md = markdown(doc)
    (out / f"{stamp}-filestore-{tag}.md").write_text(md)
    (out / "latest-filestore.md").write_text(md)
    print(md)
    if not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
