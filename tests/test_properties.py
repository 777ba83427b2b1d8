"""Property tests: adversarial values of every column type, written into a PostgreSQL MLflow
schema, go PostgreSQL -> MongoDB (each layout) -> PostgreSQL and come back exactly (equal
per-table checksums, compared by `dbmigrate verify`), or are refused with a named error.

DBMIGRATE_PROPERTY_EXAMPLES sets how many databases hypothesis makes (each holds dozens of values)."""

from __future__ import annotations

import os
import struct

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbmigrate.sql_schema import create_schema
from tests.conftest import run_cli
from tests.support import servers

EXAMPLES = int(os.environ.get("DBMIGRATE_PROPERTY_EXAMPLES", "4"))
BIGINT = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Text PostgreSQL can hold (no NUL, no lone surrogates), including the awkward parts.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60)
KEY = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
              min_size=1, max_size=40)
FLOAT = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(
    [-0.0, 0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308,
     0.1, 1 / 3]))
VALUES_TRIED = []


def _float_text(v: float) -> str:
    """A float as text PostgreSQL parses to the same bits (psycopg2 would send -0.0 as a numeric 0)."""
    return repr(v)


rows = st.fixed_dictionaries({
    "metrics": st.lists(st.tuples(KEY, FLOAT, BIGINT, BIGINT, st.booleans()), min_size=1, max_size=40,
                        unique_by=lambda m: (m[0], m[2], m[3], 0.0 if m[4] else (0.0 if m[1] == 0 else m[1]), m[4])),
    "params": st.lists(st.tuples(KEY, TEXT), max_size=20, unique_by=lambda p: p[0]),
    "tags": st.lists(st.tuples(KEY, st.one_of(st.none(), TEXT)), max_size=20, unique_by=lambda t: t[0]),
    "run": st.fixed_dictionaries({"start": st.one_of(st.none(), BIGINT), "end": st.one_of(st.none(), BIGINT),
                                  "name": st.one_of(st.none(), TEXT.map(lambda s: s[:250]))}),
    "exp_tags": st.lists(st.tuples(KEY, st.one_of(st.none(), TEXT)), max_size=10, unique_by=lambda t: t[0]),
})


def _load(url: str, data: dict) -> int:
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    cur.execute("INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, "
                "last_update_time) VALUES (7, 'props', 's3://p', 'active', 1, 2)")
    run = "a" * 32
    r = data["run"]
    cur.execute("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
                "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) VALUES "
                "(%s, %s, 'LOCAL', '', '', 'u', 'FINISHED', %s, %s, '', 'active', 's3://p/a', 7)",
                (run, r["name"], r["start"], r["end"]))
    tags = dict(data["tags"])
    tags["mlflow.runName"] = r["name"]  # as MLflow writes it: no tag is added on the way
    for key, value in tags.items():
        cur.execute("INSERT INTO tags (key, value, run_uuid) VALUES (%s, %s, %s)", (key[:250], value, run))
    for key, value in data["params"]:
        cur.execute("INSERT INTO params (key, value, run_uuid) VALUES (%s, %s, %s)", (key[:250], value, run))
    for key, value in data["exp_tags"]:
        cur.execute("INSERT INTO experiment_tags (key, value, experiment_id) VALUES (%s, %s, 7)", (key[:250], value))
    for key, value, ts, step, is_nan in data["metrics"]:
        cur.execute("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES "
                    "(%s, CAST(%s AS DOUBLE PRECISION), %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (key[:250], "0" if is_nan else _float_text(value), ts, run, step, is_nan))
    conn.commit()
    conn.close()
    return (len(data["metrics"]) * 5 + len(data["params"]) * 2 + len(tags) * 2 + len(data["exp_tags"]) * 2 + 3)


def _rows_as_text(url: str) -> dict:
    """Every row of the tables _load fills, as PostgreSQL's shortest exact text (-0 stays -0),
    sorted: equal only if every value is the same bit for bit."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET extra_float_digits = 3")
            out = {}
            for table in ("experiments", "runs", "tags", "params", "experiment_tags", "metrics"):
                cur.execute(f"SELECT t::text FROM {table} t ORDER BY 1")
                out[table] = [r[0] for r in cur.fetchall()]
            return out
    finally:
        conn.close()


@pytest.mark.parametrize("layout", ["tables", "mlflow-mongodb"])
def test_adversarial_values_round_trip(layout, pg_base, mongo_base):
    counter = {"dbs": 0, "values": 0}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(rows)
    def check(data):
        made = []
        try:
            src_name = servers.create_pg_database(pg_base, "dbm_prop")
            made.append(src_name)
            src = servers.pg_database(pg_base, src_name)
            create_schema(servers.mlflow_uri(src), "dc11669786a5")
            counter["values"] += _load(src, data)
            counter["dbs"] += 1
            if layout == "tables":  # PostgreSQL -> PostgreSQL (byte for byte) once per database
                copy_name = servers.create_pg_database(pg_base, "dbm_prop_copy")
                made.append(copy_name)
                copy = servers.pg_database(pg_base, copy_name)
                res = run_cli("migrate", "--source", src, "--target", copy, "--verify", "full")
                assert res.returncode == 0 and "(server md5)" in res.stdout, res.stdout[-3000:]
                assert _rows_as_text(copy) == _rows_as_text(src)  # judged here, not by dbmigrate
            mongo = servers.with_database(mongo_base, f"{src_name}_m")
            res = run_cli("migrate", "--source", src, "--target", mongo, "--layout", layout, "--verify", "full",
                          "--workers", "1")
            assert res.returncode == 0, res.stdout[-3000:]
            back_name = servers.create_pg_database(pg_base, "dbm_prop_back")
            made.append(back_name)
            back = servers.pg_database(pg_base, back_name)
            res = run_cli("migrate", "--source", mongo, "--target", back, "--verify", "full")
            assert res.returncode == 0, res.stdout[-3000:]
            res = run_cli("verify", "--source", src, "--target", back, "--verify", "full")
            assert res.returncode == 0, res.stdout[-4000:]  # every table: same rows, bit for bit
        finally:
            import pymongo
            client = pymongo.MongoClient(mongo_base)
            client.drop_database(f"{made[0]}_m") if made else None
            client.close()
            for name in made:
                servers.drop_pg_database(pg_base, name)

    check()
    VALUES_TRIED.append((layout, counter["dbs"], counter["values"]))
    print(f"{layout}: {counter['dbs']} databases, {counter['values']} values round-tripped")
    assert counter["dbs"] >= min(EXAMPLES, 1)


def test_negative_zero_survives_the_float_text_trick():
    """The loader's own trick: repr() text cast to float8 keeps the sign bit."""
    assert struct.pack(">d", float(_float_text(-0.0))) == struct.pack(">d", -0.0)
