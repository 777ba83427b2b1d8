"""Unit tests of the pure parts: URI masking, config layering, the schema knowledge, converters."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbmigrate import config as cfgmod
from dbmigrate import converters as cv
from dbmigrate.errors import ConfigError, SchemaError
from dbmigrate.mlflow_schema import HEAD, REVISIONS, schema_version
from dbmigrate.uri import mask_text, parse_uri


# ----------------------------------------------------------------------------- URIs and secrets
@pytest.mark.parametrize("raw, masked", [
    ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("mongodb+srv://admin:hunter2@cluster0.x.net/mlflow?retryWrites=true",
     "mongodb+srv://admin:***@cluster0.x.net/mlflow?retryWrites=true"),
    ("mysql+pymysql://root:@localhost/m", "mysql+pymysql://root:***@localhost/m"),
    ("host=h password=abc123 user=u", "host=h password=*** user=u"),
    ("mongodb://h/db?authSource=admin&password=xyz1", "mongodb://h/db?authSource=admin&password=***"),
])
def test_mask_text(raw, masked):
    assert mask_text(raw) == masked


def test_registered_secret_is_masked_anywhere():
    parse_uri("postgresql://user:Very$ecret9@h/db", role="source")
    assert mask_text("error: auth failed for Very$ecret9 at h") == "error: auth failed for *** at h"


@pytest.mark.parametrize("uri, kind", [("postgresql://h/db", "postgresql"), ("postgres://h/db", "postgresql"),
                                       ("postgresql+psycopg2://h/db", "postgresql"),
                                       ("mysql://h/db", "mysql"), ("mariadb://h/db", "mysql"),
                                       ("sqlite:////tmp/x.db", "sqlite"), ("mongodb://h/db", "mongodb"),
                                       ("mongodb+srv://h/db", "mongodb")])
def test_parse_uri_kinds(uri, kind):
    assert parse_uri(uri, role="source").kind == kind


def test_plain_postgresql_uri_picks_an_installed_driver():
    assert parse_uri("postgresql://h/db", role="source").sqlalchemy_url() == "postgresql+psycopg2://h/db"


@pytest.mark.parametrize("uri, message", [("", "No source URI"), ("ftp://h/x", "Unsupported source URI scheme"),
                                          ("postgresql://h", "names no database"),
                                          ("mongodb://h:1", "names no database")])
def test_bad_uris(uri, message):
    with pytest.raises(ConfigError, match=message):
        parse_uri(uri, role="source")


# ----------------------------------------------------------------------------- config
def test_precedence_cli_over_env_over_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"source": {"connection_uri": "sqlite:///file.db"}, "migration_settings": {"batch_size": 7, "verify": "full"}}')
    env = {"DBMIGRATE_BATCH_SIZE": "8", "DBMIGRATE_SOURCE_URI": "sqlite:///env.db"}
    c = cfgmod.build({"batch_size": 9}, str(f), environ=env)
    assert (c.batch_size, c.source, c.verify) == (9, "sqlite:///env.db", "full")
    c = cfgmod.build({}, str(f), environ=env)
    assert c.batch_size == 8
    c = cfgmod.build({}, str(f), environ={})
    assert (c.batch_size, c.source) == (7, "sqlite:///file.db")
    assert cfgmod.build({}, None, environ={}).batch_size == cfgmod.Config().batch_size


def test_bad_env_value_is_named():
    with pytest.raises(ConfigError, match="DBMIGRATE_BATCH_SIZE"):
        cfgmod.build({}, None, environ={"DBMIGRATE_BATCH_SIZE": "lots"})


def test_every_config_field_is_reachable_from_somewhere():
    """A Config field nobody can set would be dead configuration."""
    from dbmigrate.cli import CLI_FIELDS
    reachable = set(CLI_FIELDS) | set(cfgmod.ENV_VARS.values())
    for section in cfgmod.FILE_KEYS.values():
        reachable |= set(section.values())
    unreachable = {f for f in cfgmod.Config.__dataclass_fields__} - reachable - {"connect_timeout"}
    # Fields that later features (resume, workers, ...) will wire up are listed explicitly.
    assert not unreachable


# ----------------------------------------------------------------------------- schema knowledge
def test_revision_chain_matches_installed_mlflow():
    """Our chain, up to the installed MLflow's head, equals the chain its migration files define."""
    import mlflow
    versions = Path(mlflow.__file__).parent / "store" / "db_migrations" / "versions"
    down = {}
    for f in versions.glob("*.py"):
        text = f.read_text()
        rev = re.search(r'^revision\s*=\s*"([0-9a-f]+)"', text, re.M)
        prev = re.search(r'^down_revision\s*=\s*"?([0-9a-f]+|None)"?', text, re.M)
        if rev:
            down[rev.group(1)] = None if prev.group(1) == "None" else prev.group(1)
    heads = set(down) - set(v for v in down.values() if v)
    assert len(heads) == 1
    chain, rev = [], heads.pop()
    while rev:
        chain.append(rev)
        rev = down[rev]
    chain.reverse()
    assert REVISIONS[:len(chain)] == chain
    assert chain[-1] == "dc11669786a5"  # MLflow 3.17.x
    assert HEAD == "f4a9b2c7d1e6"


def test_schema_versions():
    v = schema_version("0584bdc529eb")
    assert v.release_range == "2.18.0 \u2013 2.22.5" and len(v.expected_tables) == 18
    assert len(schema_version("dc11669786a5").expected_tables) == 64
    assert len(schema_version(HEAD).expected_tables) == 70
    assert not schema_version("2d6e25af4d3e").is_head
    with pytest.raises(SchemaError, match="Unknown alembic revision 'deadbeef0000'"):
        schema_version("deadbeef0000")


# ----------------------------------------------------------------------------- converters
finite = st.floats(allow_nan=False)


@given(finite, st.booleans())
def test_metric_value(v, is_nan):
    out = cv.metric_value(v, is_nan)
    if is_nan:
        assert math.isnan(out)
    else:
        assert out == v and math.copysign(1, out) == math.copysign(1, v)


@given(st.text(min_size=1), st.integers(-2**63, 2**63 - 1), st.integers(-2**63, 2**63 - 1),
       st.text(min_size=1), finite, st.booleans())
@settings(max_examples=200)
def test_metric_object_id_is_a_function_of_the_sql_key(key, ts, step, run, value, is_nan):
    a = cv.metric_object_id(key, ts, step, run, value, is_nan)
    assert a == cv.metric_object_id(key, ts, step, run, value, is_nan)
    if is_nan:  # SQL keeps NaN as value 0: every NaN row of that key is the same row
        assert a == cv.metric_object_id(key, ts, step, run, 0.0, True)
    assert a != cv.metric_object_id(key + "x", ts, step, run, value, is_nan)


def test_metric_object_id_zero_and_negative_zero_are_one_key():
    assert cv.metric_object_id("k", 1, 0, "r", 0.0, False) == cv.metric_object_id("k", 1, 0, "r", -0.0, False)
    assert cv.metric_object_id("k", 1, 0, "r", 0.0, False) != cv.metric_object_id("k", 1, 0, "r", 0.0, True)


def test_timed_object_id_timestamp_part():
    oid = cv.timed_object_id(1_700_000_000_123, "x")
    assert int(oid.generation_time.timestamp()) == 1_700_000_000
    assert cv.timed_object_id(None, "x").binary[:4] == b"\0\0\0\0"
    assert cv.timed_object_id(-5, "x").binary[:4] == b"\0\0\0\0"


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.one_of(st.none(), st.text(max_size=30)), max_size=8),
       st.one_of(st.none(), st.text(max_size=10)))
def test_run_tags_adds_the_run_name_once(tags, name):
    rows = [{"key": k, "value": v} for k, v in tags.items()]
    out = cv.run_tags(rows, name)
    keys = [t["k"] for t in out]
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    assert {t["k"]: t["v"] for t in out if t["k"] != "mlflow.runName"} == \
        {k: v for k, v in tags.items() if k != "mlflow.runName"}
    if "mlflow.runName" in tags:
        assert {"k": "mlflow.runName", "v": tags["mlflow.runName"]} in out
    elif name is not None:
        assert {"k": "mlflow.runName", "v": name} in out


@pytest.mark.parametrize("code, name", [(0, "UNSPECIFIED"), (1, "PENDING"), (2, "READY"), (3, "FAILED")])
def test_logged_model_status_round_trip(code, name):
    assert cv.logged_model_status_name(code) == name and cv.logged_model_status_code(name) == code


def test_logged_model_status_unknown():
    with pytest.raises(ValueError, match="unknown logged model status 9"):
        cv.logged_model_status_name(9)


def test_run_inputs_dedupes_datasets_on_name_and_digest():
    ds = {"name": "d", "digest": "1", "dataset_source_type": "s3", "dataset_source": "{}",
          "dataset_schema": None, "dataset_profile": None}
    inputs = [{"input_uuid": "b", "dataset": [ds], "tags": [{"name": "t", "value": "2"}]},
              {"input_uuid": "a", "dataset": [ds], "tags": [{"name": "t", "value": "1"}]},
              {"input_uuid": "c", "dataset": [], "tags": []}]
    out = cv.run_inputs(inputs, [{"source_type": "RUN_INPUT", "destination_type": "MODEL_INPUT",
                                  "destination_id": "m-1"}])
    assert out["datasets"] == [{"dataset": {"name": "d", "digest": "1", "source_type": "s3", "source": "{}",
                                            "schema": None, "profile": None}, "tags": [{"k": "t", "v": "1"}]}]
    assert out["models"] == [{"model_id": "m-1"}]


def test_max_version_counts_deleted_versions():
    assert cv.max_version([{"version": 1}, {"version": 3}, {"version": 2}]) == 3
    assert cv.max_version([]) == 0


def test_trace_state_maps_the_2x_status():
    assert cv.trace_state("TRACE_STATUS_UNSPECIFIED") == "STATE_UNSPECIFIED"
    assert cv.trace_state("OK") == "OK"


def test_row_hash_is_the_hash_of_length_prefixed_type_tagged_tokens():
    """The checksum's canonical form, computed the slow obvious way, and the distinctions it keeps."""
    import hashlib
    import struct

    from dbmigrate.checksum import row_hash

    def reference(values):
        h = hashlib.blake2b(digest_size=8)
        for v in values:
            if v is None:
                t = b"N"
            elif isinstance(v, bool):
                t = b"T" if v else b"F"
            elif isinstance(v, int):
                t = b"i" + str(v).encode()
            elif isinstance(v, float):
                t = b"d" + struct.pack(">d", float("nan") if v != v else v)
            elif isinstance(v, bytes):
                t = b"b" + v
            else:
                t = b"s" + v.encode("utf-8", "surrogatepass")
            h.update(len(t).to_bytes(4, "big"))
            h.update(t)
        return int.from_bytes(h.digest(), "big")

    rows = [("loss", 0.5, 1700000000123, "ab" * 16, 17, False, None), (float("nan"), -0.0, 0.0, 5e-324),
            ("CJK 日本 😀", b"\x00\xff", True, 2**62, -(2**63)), ()]
    for row in rows:
        assert row_hash(row) == reference(row), row
    variants = [(1,), (1.0,), (True,), ("1",), (b"1",), (None,), (-0.0,), (0.0,), ("a", "b"), ("ab",)]
    assert len({row_hash(v) for v in variants}) == len(variants)
