"""The FileStore reader (dbmigrate/readers/filestore.py), judged by MLflow itself.

FileStores are written once per session by MLflow's own client: 3.17.2 (this environment) and
2.22.5 (its own virtualenv), through tests/support/make_filestore.py. The reader's rows are loaded
into a SQLite database with MLflow's schema at the reader's revision (SqlWriter, as
the SQL end does it, through the same source_rows/IdMap/NegativeZeros path); then MLflow
3.17.2 must answer the same from the mlruns directory and from the SQLite file, except where
MLflow's own SQL store stores a value differently (infinities clamped, -0.0 as 0.0 in SQLite, a
metric point logged twice kept once), which the comparison states explicitly.
"""

from __future__ import annotations

import math
import os
import tracemalloc

import pytest

from dbmigrate.errors import ConfigError, DataError, SchemaError
from dbmigrate.mlflow_schema import RELEASE_HEAD
from dbmigrate.model import CANONICAL_TYPES, Reader
from dbmigrate.readers.filestore import MAX_DOUBLE, SCHEMA, FileStoreSource
from dbmigrate.ends.sql import fk_order
from dbmigrate.sql_rows import INT32_MAX, IdMap, NegativeZeros, source_rows
from dbmigrate.uri import parse_uri
from dbmigrate.writers.sql import SqlWriter
from tests.support.make_filestore import make_filestore
from tests.support.mlflow_api import snapshot

os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3.17.2 reads a FileStore only with it

RELEASES = ["3.17.2", "2.22.5"]


@pytest.fixture(scope="session")
def filestores(tmp_path_factory):
    """version -> (mlruns path, ids), each written once per session."""
    made = {}

    def get(version):
        if version not in made:
            d = tmp_path_factory.mktemp(f"fs-{version}")
            ids = make_filestore(version, str(d))
            made[version] = (str(d / "mlruns"), ids)
        return made[version]
    return get


def load_sqlite(src: FileStoreSource, path: str, max_id: int = 2**63 - 1) -> dict:
    """The reader's rows into a new SQLite file with MLflow's schema at src.revision; returns the
    experiment id mapping used."""
    writer = SqlWriter(parse_uri(f"sqlite:///{path}", role="target"))
    try:
        writer.prepare(src.revision)
        mapping = src.plan_experiment_ids(max_id)
        ids = IdMap(mapping)
        zeros = NegativeZeros()
        tables = fk_order(writer, set(src.tables()), False)
        for t in tables:
            insertable = [c for c, i in writer.table_columns(t).items() if not i["generated"]]
            columns, batches = source_rows(src, t, insertable, ids, 500, zeros)
            for rows in batches:
                writer.insert_rows(t, columns, rows, key_columns=SCHEMA[t].pk)
        return mapping
    finally:
        writer.close()


def _as_sql_store_keeps(v, negative_zero: bool = False):
    """A metric value as MLflow's SQL store keeps it: +-inf clamped, -0.0 as 0.0 (SQLite,
    MySQL) unless the engine keeps a negative zero (PostgreSQL: negative_zero)."""
    if v == "-0.0":
        return v if negative_zero else 0.0
    if isinstance(v, float) and math.isinf(v):
        return MAX_DOUBLE if v > 0 else -MAX_DOUBLE
    return v


def expected_from_filestore(snap: dict, remap: dict | None = None, negative_zero: bool = False) -> dict:
    """What MLflow answers from the SQL copy, derived from its FileStore answers: metric values
    as the SQL store keeps them, a point logged twice once; experiment ids remapped."""
    def keep(v):
        return _as_sql_store_keeps(v, negative_zero)

    def metric(m):
        return {**m, "value": keep(m["value"])}

    for run in snap["runs"].values():
        run["metrics"] = {k: keep(v) for k, v in run["metrics"].items()}
        run["search_row"]["metrics"] = {k: keep(v) for k, v in run["search_row"]["metrics"].items()}
        run["latest"] = [metric(m) for m in run["latest"]]
    for key, hist in snap["metric_history"].items():
        out = []
        for m in map(metric, hist):
            if m not in out:
                out.append(m)
        snap["metric_history"][key] = out
    for lm in snap["logged_models"].values():
        # logged_model_metrics has no is_nan column: MLflow's SQL store keeps NaN there as 0.0
        lm["metrics"] = [{**m, "value": 0.0 if m["value"] == "NaN" else m["value"]} for m in map(metric, lm["metrics"])]
    for tr in snap.get("traces", {}).values():
        for a in tr["info"].get("assessments", []):
            a.setdefault("valid", True)  # the FileStore's Assessment leaves out what the SQL one states
    if remap:
        text = str
        for e in snap["experiments"]:
            e["experiment_id"] = text(remap.get(int(e["experiment_id"]), e["experiment_id"]))
        snap["experiments"].sort(key=lambda d: d["experiment_id"])
        for run in snap["runs"].values():
            run["info"]["experiment_id"] = text(remap.get(int(run["info"]["experiment_id"]),
                                                          run["info"]["experiment_id"]))
        for lm in snap["logged_models"].values():
            lm["experiment_id"] = text(remap.get(int(lm["experiment_id"]), lm["experiment_id"]))
        for tr in snap.get("traces", {}).values():
            loc = tr["info"].get("trace_location", {}).get("mlflow_experiment")
            if loc:
                loc["experiment_id"] = text(remap.get(int(loc["experiment_id"]), loc["experiment_id"]))
    return snap


def same_representation(snap: dict) -> dict:
    """Alias versions as text: the FileStore's RegisteredModel gives "1", the SQL store's 1."""
    for rm in snap["registered_models"].values():
        rm["aliases"] = {k: str(v) for k, v in rm["aliases"].items()}
    return snap


# ---------------------------------------------------------------------------- the interface
def test_schema_matches_mlflows_at_the_revision(tmp_path):
    """Every table and column the reader fills exists in the schema MLflow makes at its revision,
    with the same nullability; every NOT NULL column without a default is filled."""
    import sqlalchemy as sa
    src = FileStoreSource(str(tmp_path))
    assert src.layout and src.target_has_analytics is True
    rev = RELEASE_HEAD["3.17.2"]
    writer = SqlWriter(parse_uri(f"sqlite:///{tmp_path / 's.db'}", role="target"))
    writer.prepare(rev)
    insp = sa.inspect(writer.engine)
    for name, table in SCHEMA.items():
        cols = {c["name"]: c for c in insp.get_columns(name)}
        mine = {c.name: c for c in table.columns}
        assert set(mine) <= set(cols), (name, set(mine) - set(cols))
        for c in cols.values():
            if not c["nullable"] and c.get("default") is None and not c.get("computed"):
                assert c["name"] in mine, (name, c["name"])
        for c in table.columns:
            assert c.nullable == cols[c.name]["nullable"] or cols[c.name].get("default") is not None, (name, c.name)
        assert sorted(table.pk) == sorted(insp.get_pk_constraint(name)["constrained_columns"]), name
    writer.close()


@pytest.mark.parametrize("version", RELEASES)
def test_rows_are_canonical_and_counted(filestores, version):
    path, _ids = filestores(version)
    src = FileStoreSource("file://" + path).open()
    assert isinstance(src, Reader)
    assert src.revision == RELEASE_HEAD["3.17.2"]
    for t in src.tables():
        cols, batches = src.produce(t, 7)
        assert cols == src.table(t).column_names
        n = 0
        for b in batches:
            assert 0 < len(b) <= 7
            for row in b:
                for c, v in zip(src.table(t).columns, row):
                    assert v is None and c.nullable or isinstance(v, CANONICAL_TYPES[c.type]), (t, c.name, v)
                    assert not (c.type == "int" and isinstance(v, bool)), (t, c.name)
            n += len(b)
        assert n == src.count(t), t
    exps = {r[0]: r for b in src.rows("experiments", ["experiment_id", "lifecycle_stage"], 100) for r in b}
    assert all(len(str(e)) >= 18 for e in exps if e != 0)
    assert "deleted" in {r[1] for r in exps.values()}  # the experiment in .trash
    assert src.count("metrics") > 50 and src.count("registered_model_aliases") >= 3
    src.close()
    src.close()


# ---------------------------------------------------------------------------- fidelity
@pytest.mark.parametrize("version", RELEASES)
def test_mlflow_answers_the_same_from_the_copy(filestores, version, tmp_path):
    path, ids = filestores(version)
    src = FileStoreSource(path).open()
    load_sqlite(src, str(tmp_path / "copy.db"))
    fs_uri = "file://" + path
    db_uri = f"sqlite:///{tmp_path / 'copy.db'}"
    want = same_representation(expected_from_filestore(snapshot(fs_uri)))
    got = same_representation(snapshot(db_uri))
    if version.startswith("3."):
        # MLflow's FileStore reads a metric line that names a dataset ("ts value step name digest")
        # as step 0 (file_store._get_metric_from_line takes the step only from 3-field lines); the
        # line says step 1, which is what the SQL store keeps for the same log_metric call.
        hist = want["metric_history"][f"{ids['runs']['parent']}/model_score"]
        assert (hist[0]["timestamp"], hist[0]["step"]) == (1_700_000_000_500, 0)
        hist[0]["step"] = 1
    # The FileStore cannot list prompts (search_prompts is SQL-only): compare the registry rows.
    want.pop("prompts"), got.pop("prompts")
    for part in want:
        assert got[part] == want[part], part
    # What the comparison covers, so that a store MLflow failed to fill cannot pass it.
    extra = ids["extras"]
    assert len(want["experiments"]) >= 5 and any(e["lifecycle_stage"] == "deleted" for e in want["experiments"])
    run = want["runs"][ids["runs"]["parent"]]
    assert run["params"]["long"].startswith("é") and len(run["params"]["long"]) >= 6000
    assert run["metrics"]["special"] == 0.0 and "NaN" in str(want["metric_history"])
    assert run["datasets"] and want["runs"][ids["runs"]["empty"]]["params"] == {}
    assert want["runs"][ids["runs"]["deleted"]]["info"]["lifecycle_stage"] == "deleted"
    # "rep" was logged 5 times: a repeat right after, and one after going back in time
    rep = os.path.join(path, extra["experiment"], extra["run"], "metrics", "rep")
    assert len(open(rep).read().splitlines()) == 5
    assert [(m["step"], m["value"]) for m in got["metric_history"][f"{extra['run']}/rep"]] == [
        (2, MAX_DOUBLE), (0, 1.0), (1, 2.0)]
    assert "group/sub metric" in want["runs"][extra["run"]]["metrics"]
    reg = want["registered_models"]["reg-model"]
    assert reg["aliases"] == {"challenger": "1", "champion": "2"} and reg["by_alias"]["champion"]["tags"]
    assert want["traces"] and any(t["spans"] for t in want["traces"].values())
    if version.startswith("3."):
        assert len(want["logged_models"]) == 2  # the deleted one is not listed by either store
        assert any(t["info"].get("assessments") for t in want["traces"].values())
        chat = got["traces"][extra["trace"]]["info"]
        assert chat["trace_metadata"]["mlflow.trace.session"] == "session-✓"
        assert '"total_tokens": 12' in chat["trace_metadata"]["mlflow.trace.tokenUsage"]


def test_remapped_experiment_ids_into_32_bit_integers(filestores, tmp_path):
    """Experiment ids beyond INTEGER get the next free ids in creation order; MLflow then answers
    the same with the new ids in place of the old."""
    path, ids = filestores("3.17.2")
    src = FileStoreSource(path).open()
    mapping = load_sqlite(src, str(tmp_path / "remap.db"), INT32_MAX)
    olds = sorted(mapping, key=lambda e: mapping[e])
    assert mapping and all(e > INT32_MAX for e in mapping) and sorted(mapping.values()) == list(
        range(1, len(mapping) + 1))  # Default (0) fits and keeps its id; the rest follow it
    assert int(ids["experiments"]["a"]) in mapping and src.remapped == mapping and src.notes
    created = {e["experiment_id"]: e["creation_time"] for e in snapshot("file://" + path, metric_history=False,
                                                                         traces=False)["experiments"]}
    assert [created[str(e)] for e in olds] == sorted(created[str(e)] for e in olds)
    want = same_representation(expected_from_filestore(snapshot("file://" + path, metric_history=False), mapping))
    got = same_representation(snapshot(f"sqlite:///{tmp_path / 'remap.db'}", metric_history=False))
    for part in ("experiments", "runs", "logged_models", "registered_models"):
        assert got[part] == want[part], part
    assert {str(t["info"]["trace_location"]["mlflow_experiment"]["experiment_id"])
            for t in got["traces"].values()} <= {str(v) for v in mapping.values()}


# ---------------------------------------------------------------------------- streaming, errors
def _one_run_store(tmp_path):
    path, _ = str(tmp_path / "mlruns"), None
    os.makedirs(path)
    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri="file://" + path)
    exp = client.create_experiment("stream")
    run = client.create_run(exp, start_time=1)
    client.log_metric(run.info.run_id, "m", 0.5, timestamp=1, step=0)
    return path, exp, run.info.run_id


def test_a_big_metric_file_is_streamed(tmp_path):
    path, exp, rid = _one_run_store(tmp_path)
    mfile = os.path.join(path, exp, rid, "metrics", "m")
    n = 200_000
    with open(mfile, "a") as f:  # MLflow's own line format: "<timestamp> <value> <step>\n"
        for i in range(2, n + 1):
            f.write(f"{i} {i * 0.5} {i}\n")
    size = os.path.getsize(mfile)
    src = FileStoreSource(path).open()
    tracemalloc.start()
    seen = 0
    for b in src.produce("metrics", 5_000)[1]:
        assert len(b) <= 5_000
        seen += len(b)
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen == n
    assert peak < size / 2, (peak, size)  # a batch or two, never the file
    latest = [r for b in src.produce("latest_metrics", 10)[1] for r in b]
    assert latest == [("m", n * 0.5, n, n, False, rid)]


def test_an_unparsable_file_names_file_and_line(tmp_path):
    path, exp, rid = _one_run_store(tmp_path)
    mfile = os.path.join(path, exp, rid, "metrics", "m")
    with open(mfile, "a") as f:
        f.write("2 0.25 1\n3 not-a-number 2\n")
    src = FileStoreSource(path).open()
    with pytest.raises(DataError, match=r"metrics/m line 3"):
        src.count("metrics")
    meta = os.path.join(path, exp, rid, "meta.yaml")
    with open(meta, "a") as f:
        f.write("status: [unclosed\n")
    with pytest.raises(DataError, match=r"meta.yaml line \d+"):
        list(FileStoreSource(path).open().produce("runs", 10)[1])
    with pytest.raises(ConfigError, match="nowhere does not exist"):
        FileStoreSource(str(tmp_path / "nowhere")).open()
    with pytest.raises(SchemaError, match="meta.yaml is a file, not an MLflow FileStore"):
        FileStoreSource(meta).open()
    with pytest.raises(SchemaError, match="is not an MLflow FileStore"):
        FileStoreSource(os.path.join(path, exp, rid)).open()


def test_without_analytics_columns_trace_name_stays_a_tag(filestores):
    path, ids = filestores("3.17.2")
    src = FileStoreSource(path).open()
    src.target_has_analytics = False
    tags = {(r[2], r[0]) for b in src.produce("trace_tags", 100)[1] for r in b}
    meta = {(r[2], r[0]) for b in src.produce("trace_request_metadata", 100)[1] for r in b}
    info = {r[0]: r for b in src.produce("trace_info", 100)[1] for r in b}
    trace = ids["extras"]["trace"]
    assert (trace, "mlflow.traceName") in tags and (trace, "mlflow.trace.session") in meta
    assert info[trace][9] is None  # trace_name column left empty


# ---------------------------------------------------------------------------- the fast meta.yaml path
def test_simple_yaml_is_what_pyyaml_reads(filestores):
    """read_yaml's own reading of flat `key: scalar` files gives exactly yaml.load's mapping, for
    every YAML file MLflow wrote in both stores and for values chosen to look like other types."""
    import yaml
    from hypothesis import given, settings, strategies as st

    from dbmigrate.readers.filestore import _simple_yaml
    fast = 0
    for version in RELEASES:
        root = filestores(version)[0]
        for d, _dirs, files in os.walk(root):
            for f in files:
                if f.endswith(".yaml"):
                    raw = open(os.path.join(d, f), "rb").read()
                    got = _simple_yaml(raw)
                    fast += got is not None
                    assert got is None or got == yaml.safe_load(raw), os.path.join(d, f)
    assert fast > 20  # the run and experiment metas take the fast path

    tricky = st.sampled_from(["yes", "No", "on", "OFF", "true", "null", "~", "Null", "0x1F", "017", "1_000", "1:20",
                              "1e3", "1.5", ".inf", "-.inf", ".nan", "2001-12-14", "=", "<<", "-", "- a", "a: b",
                              "a #b", "#c", "'q'", "\"d\"", "é", "\u2028", "\ufeff", "a\tb", " lead", "trail ",
                              "y", "n", "", "12", "-0", "+5", "00", "file:///x/y", "[1]", "{a: 1}", "!t", "&a", "*a"])
    values = st.one_of(tricky, st.text(max_size=12), st.integers(), st.none(), st.booleans(),
                       st.floats(allow_nan=False), st.lists(st.integers(), max_size=1))

    @settings(max_examples=400, deadline=None)
    @given(st.dictionaries(st.sampled_from(["run_id", "status", "name", "yes", "null", "a_b", "x1"]), values,
                           max_size=5), st.booleans())
    def same(d, unicode):
        raw = yaml.safe_dump(d, allow_unicode=unicode, default_flow_style=False).encode("utf-8")
        got = _simple_yaml(raw)
        assert got is None or got == yaml.safe_load(raw), raw
        for line in raw.splitlines():  # and the lines as someone might write them by hand
            one = _simple_yaml(line + b"\n")
            if one is not None:
                assert one == yaml.safe_load(line), line
    same()
    for t in ["yes", "No", "on", "true", "null", "~", "0x1F", "017", "1_000", "1:20", "1e3", "1.5", ".inf", ".nan",
              "2001-12-14", "=", "<<", "- a", "a: b", "a #b", "'it''s'", "'q'", "\"d\"", "é", "a\tb", "12", "-0",
              "+5", "00", "file:///x/y", "[1]", "{a: 1}", "!t", "&a", "*a", "x:", "a b", "'", "''", "[]"]:
        raw = f"key: {t}\n".encode()
        try:
            want = yaml.safe_load(raw)
        except yaml.YAMLError:
            assert _simple_yaml(raw) is None, t
            continue
        got = _simple_yaml(raw)
        assert got is None or got == want, (t, got, want)
