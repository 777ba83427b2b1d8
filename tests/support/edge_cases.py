"""Rows MLflow's client refuses or normalises, written directly into an MLflow-made database
(any dialect, through SQLAlchemy Core), so the tests can check that they survive a migration."""

from __future__ import annotations

import sqlalchemy as sa

EDGE_RUN = "e" * 32
EMPTY_RUN = "f" * 32
LONG_VALUE = ("é" + "v" * 99) * 80          # 8000 characters, non-ASCII
EDGE_METRICS = [  # key, value, timestamp, step, is_nan
    ("neg_zero", -0.0, 1000, 0, False),
    ("denormal", 5e-324, 1000, 0, False),
    ("max", 1.7976931348623157e308, 1000, 0, False),
    ("min", -1.7976931348623157e308, 1000, 0, False),
    ("nan", 0.0, 1000, 0, True),
    ("dup", 1.0, 2000, 5, False),   # same (key, timestamp, step), different values
    ("dup", 2.0, 2000, 5, False),
    ("zero_and_nan", 0.0, 3000, 1, False),
    ("zero_and_nan", 0.0, 3000, 1, True),
]


def add_edge_rows(url: str, experiment_id: int) -> None:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    md.reflect(engine, only=["runs", "metrics", "latest_metrics", "params", "tags", "experiment_tags"])
    runs, metrics, latest = md.tables["runs"], md.tables["metrics"], md.tables["latest_metrics"]
    params, tags, etags = md.tables["params"], md.tables["tags"], md.tables["experiment_tags"]
    run_cols = {c.name for c in runs.columns}
    with engine.begin() as conn:
        for run_id, name in ((EDGE_RUN, "edge run ✓"), (EMPTY_RUN, None)):
            row = {"run_uuid": run_id, "name": name, "source_type": "LOCAL", "source_name": "",
                   "entry_point_name": "", "user_id": "edge", "status": "FINISHED",
                   "start_time": 1000, "end_time": 5000, "source_version": "", "lifecycle_stage": "active",
                   "artifact_uri": f"s3://edge/{run_id}", "experiment_id": experiment_id}
            if "deleted_time" in run_cols:
                row["deleted_time"] = None
            conn.execute(runs.insert(), row)
        conn.execute(metrics.insert(), [
            {"key": k, "value": v, "timestamp": ts, "step": step, "run_uuid": EDGE_RUN, "is_nan": nan}
            for k, v, ts, step, nan in EDGE_METRICS])
        latest_rows = {}
        for k, v, ts, step, nan in EDGE_METRICS:  # MLflow's rule: greatest (step, timestamp, value)
            cur = latest_rows.get(k)
            if cur is None or (step, ts, v) > (cur["step"], cur["timestamp"], cur["value"]):
                latest_rows[k] = {"key": k, "value": v, "timestamp": ts, "step": step,
                                  "is_nan": nan, "run_uuid": EDGE_RUN}
        conn.execute(latest.insert(), list(latest_rows.values()))
        if engine.dialect.name == "postgresql":
            # psycopg2 sends -0.0 as the numeric literal -0.0, which PostgreSQL turns into 0:
            # write the negative zero as text cast to float8.
            for t in (metrics, latest):
                conn.execute(t.update().where(t.c.run_uuid == EDGE_RUN, t.c.key == "neg_zero")
                             .values(value=sa.cast(sa.literal("-0"), sa.Float(precision=53))))
        conn.execute(params.insert(), [
            {"key": "long", "value": LONG_VALUE, "run_uuid": EDGE_RUN},
            {"key": "empty", "value": "", "run_uuid": EDGE_RUN},
            {"key": "emoji 🔑 キー", "value": "値 🎉", "run_uuid": EDGE_RUN},
        ])
        conn.execute(tags.insert(), [
            {"key": "null_tag", "value": None, "run_uuid": EDGE_RUN},
            {"key": "empty_tag", "value": "", "run_uuid": EDGE_RUN},
        ])
        conn.execute(etags.insert(), [
            {"key": "null_exp_tag", "value": None, "experiment_id": experiment_id},
            {"key": "empty_exp_tag", "value": "", "experiment_id": experiment_id},
        ])
    engine.dispose()
