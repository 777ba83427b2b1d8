"""Figures for release notes: full-verify runs of MLflow 2.22.5 / 3.17.2 sources into MongoDB (both layouts),
and the six SQL pairs. Run: .venv/bin/python -m tests.support.figures  (writes /tmp/figures.json)"""
import json, os, subprocess, sys, tempfile, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from tests.support import servers
from tests.conftest import _populate

ROOT = sys.path[0]
out = {"mongo": [], "pairs": []}
pg = servers.postgres_base_uri()
my = servers.mysql_base_uri()
tmp = tempfile.mkdtemp(prefix="figs-")
made = []


def source(engine, major):
    prefix = f"figs{major}"
    if engine == "postgresql":
        name = servers.create_pg_database(pg, prefix); made.append(("pg", name)); uri = servers.pg_database(pg, name)
    elif engine == "mysql":
        name = servers.create_mysql_database(my, prefix); made.append(("my", name)); uri = servers.mysql_database(my, name)
    else:
        uri = f"sqlite:///{tmp}/{prefix}-{os.urandom(2).hex()}.db"
    if major == 3:
        _populate(uri)
    else:
        from tests.support.mlflow2 import populate_mlflow2
        populate_mlflow2(servers.mlflow_uri(uri))
    from tests.support.fill_all_tables import fill
    fill(servers.mlflow_uri(uri))
    return uri


def cli(*args):
    rj = f"{tmp}/r{os.urandom(3).hex()}.json"
    t0 = time.time()
    env = dict(os.environ, DBMIGRATE_STATE_DIR=f"{tmp}/state")
    res = subprocess.run([sys.executable, "-m", "dbmigrate.cli", *args, "--no-progress", "--report-json", rj],
                         cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.time() - t0
    rep = json.load(open(rj)) if os.path.exists(rj) else None
    return res, rep, wall


server = servers.SecantusServer().start()
try:
    for major in (2, 3):
        src = source("postgresql", major)
        for layout in ("mlflow-mongodb", "tables"):
            tgt = servers.with_database(server.uri, f"figs{major}{layout.replace('-', '')}")
            res, rep, wall = cli("migrate", "--source", src, "--target", tgt, "--layout", layout, "--verify", "full")
            out["mongo"].append({"mlflow": major, "layout": layout, "exit": res.returncode, "wall": wall,
                                 "tail": res.stdout[-2500:], "report": rep})
            print(major, layout, res.returncode, round(wall, 1), flush=True)
    srcs = {e: source(e, 3) for e in ("postgresql", "mysql", "sqlite")}
    for s in ("postgresql", "mysql", "sqlite"):
        for t in ("postgresql", "mysql", "sqlite"):
            if s == t:
                continue
            if t == "postgresql":
                name = servers.create_pg_database(pg, "figt"); made.append(("pg", name)); tgt = servers.pg_database(pg, name)
            elif t == "mysql":
                name = servers.create_mysql_database(my, "figt"); made.append(("my", name)); tgt = servers.mysql_database(my, name)
            else:
                tgt = f"sqlite:///{tmp}/t-{s}.db"
            res, rep, wall = cli("migrate", "--source", srcs[s], "--target", tgt, "--verify", "full")
            out["pairs"].append({"source": s, "target": t, "exit": res.returncode, "wall": wall,
                                 "tail": res.stdout[-2500:], "report": rep})
            print(s, t, res.returncode, round(wall, 1), flush=True)
finally:
    server.stop()
    for kind, name in made:
        (servers.drop_pg_database(pg, name) if kind == "pg" else servers.drop_mysql_database(my, name))
    json.dump(out, open("/tmp/figures.json", "w"), indent=1, default=str)
    print("wrote /tmp/figures.json")
