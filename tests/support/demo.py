"""Demo on embedded servers: MLflow writes a sample database into PostgreSQL, dbmigrate copies it
into a SecantusDB server started here, verifies it, prints the report, and stock MLflow (with the
mlflow-mongodb plugin) reads the copy back.

    bash scripts/demo.sh [--scale N] [--keep]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from tests.support import servers

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=20,
                   help="extra bulk runs with 500 metric points each (default 20)")
    p.add_argument("--keep", action="store_true", help="keep the databases and server running at the end")
    args = p.parse_args(argv)

    pg_base = servers.postgres_base_uri()
    db = servers.create_pg_database(pg_base, "dbmigrate_demo")
    source = servers.pg_database(pg_base, db)
    print(f"[demo] PostgreSQL source database: {source}", flush=True)
    t0 = time.time()
    code = ("import sys; from tests.support.make_source import populate; "
            "populate(sys.argv[1], scale=int(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", code, servers.mlflow_uri(source), str(args.scale)],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"[demo] MLflow 3.17.2 wrote the sample data in {time.time() - t0:.1f} s", flush=True)

    mongo = servers.SecantusServer().start()
    target = servers.with_database(mongo.uri, "mlflow")
    print(f"[demo] SecantusDB (MongoDB wire protocol) target: {target}", flush=True)
    print("[demo] running: python run_migration.py --postgres-uri ... --mongodb-uri ... --verify full\n",
          flush=True)
    res = subprocess.run([sys.executable, str(ROOT / "run_migration.py"), "--postgres-uri", source,
                          "--mongodb-uri", target, "--verify", "full"], cwd=ROOT)
    if res.returncode == 0:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
        from mlflow import MlflowClient
        from mlflow.entities import ViewType
        c = MlflowClient(tracking_uri=target, registry_uri=target)
        exps = c.search_experiments(view_type=ViewType.ALL)
        runs = c.search_runs([e.experiment_id for e in exps], run_view_type=ViewType.ALL, max_results=5000)
        models = c.search_registered_models()
        print(f"\n[demo] stock MLflow + mlflow-mongodb on the target sees {len(exps)} experiments, "
              f"{len(runs)} runs, {len(models)} registered models.")
    if args.keep:
        print(f"[demo] kept: source {source}, target {target} (SecantusDB pid {mongo.proc.pid})")
    else:
        mongo.stop()
        servers.drop_pg_database(pg_base, db)
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
