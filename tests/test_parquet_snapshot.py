"""Parquet snapshots (dbmigrate.writers.parquet, dbmigrate.readers.parquet): edge values written and
read back bit for bit, the manifest's checksums against dbmigrate.checksum computed from the input,
the types on disk read by pyarrow alone, refusals, a killed backup, every kind of damage named by
table and file, delete_part, the Arrow checksum against the verifier's, and a real MLflow 3.17.2
database backed up and restored into SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbmigrate.checksum import Checksum
from dbmigrate.errors import DataError, MigrationError, SchemaError, TargetNotEmpty
from dbmigrate.model import Column, Reader, Table, Writer
from dbmigrate.readers.parquet import ParquetSnapshot
from dbmigrate.writers.parquet import MANIFEST, MARKER, SnapshotWriter
from tests.support.edge_tables import LONG, ROWS, SCHEMA, checksum_of, rows_tokens, token

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_snapshot(directory, *, batch=4, **kw):
    w = SnapshotWriter(str(directory), row_group_rows=5, file_rows=12, **kw)
    w.prepare(SCHEMA, "dc11669786a5")
    for name, rows in ROWS.items():
        cols = SCHEMA[name].column_names
        for i in range(0, len(rows), batch):
            w.write(name, cols, rows[i:i + batch])
    stats = w.finalize()
    w.close()
    return stats


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    d = tmp_path_factory.mktemp("snap") / "backup"
    write_snapshot(d)
    return d


def test_round_trip_exact(snap):
    r = ParquetSnapshot(str(snap)).open()
    assert isinstance(r, Reader) and isinstance(SnapshotWriter("x"), Writer)
    assert r.revision == "dc11669786a5" and set(r.tables()) == set(SCHEMA)
    manifest = json.loads((snap / MANIFEST).read_text())
    for name, rows in ROWS.items():
        cols = SCHEMA[name].column_names
        back = [row for b in r.rows(name, cols, 3) for row in b]
        assert all(len(b) <= 3 for b in r.rows(name, cols, 3))
        assert rows_tokens(back) == rows_tokens(rows), name
        assert r.count(name) == len(rows) == manifest["tables"][name]["rows"]
        expected = checksum_of(rows, cols)
        assert manifest["tables"][name]["checksum"] == f"{expected.total:016x}"
        # a column subset, in another order, comes back as asked
        sub = [row for b in r.rows(name, cols[::-1][:2], 100) for row in b]
        assert rows_tokens(sub) == rows_tokens([r_[::-1][:2] for r_ in rows])
    # it grew past one part file and one row group
    files = manifest["tables"]["metrics"]["files"]
    assert len(files) >= 2 and [f["path"] for f in files][:2] == [f"metrics/part-0000{i}.parquet" for i in (0, 1)]
    assert sum(f["rows"] for f in files) == len(ROWS["metrics"])
    assert pq.ParquetFile(snap / files[0]["path"]).metadata.num_row_groups > 1
    assert manifest["tables"]["empty"]["files"][0]["rows"] == 0 and r.count("empty") == 0
    assert manifest["tool_version"] == __import__("dbmigrate").__version__


def test_types_on_disk_read_by_pyarrow_alone(snap):
    t = pq.read_table(snap / "metrics")
    assert [str(f.type) for f in t.schema] == ["large_string", "large_string", "int64", "double", "bool", "int64"]
    bits = [struct.pack(">d", v) if v is not None else None for v in t.column("value").to_pylist()]
    assert Counter(bits) == Counter(struct.pack(">d", r[3]) if r[3] is not None else None
                                    for r in ROWS["metrics"])
    x = pq.read_table(snap / "texts").to_pydict()
    assert x["s"][:2] == ["", None] and x["b"][:2] == [b"", None] and x["s"][2] == LONG
    assert str(pq.read_schema(snap / "texts" / "part-00000.parquet").field("b").type) == "large_binary"


def test_key_ranges_partition_a_table(snap):
    r = ParquetSnapshot(str(snap), verify="files").open()
    parts = [("run_uuid", None, "run1"), ("run_uuid", "run1", "run2"), ("run_uuid", "run2", None)]
    got = [row for p in parts for b in r.rows("metrics", ["run_uuid", "step"], 4, p) for row in b]
    assert Counter(got) == Counter((x[0], x[2]) for x in ROWS["metrics"])
    assert [r.count("metrics", p) for p in parts] == [sum(1 for x in ROWS["metrics"] if x[0] in s)
                                                      for s in ({"", "run0"}, {"run1"}, {"run2"})]


@pytest.mark.parametrize("column, value", [("step", 1.0), ("value", 1), ("is_nan", 0), ("key", b"loss"),
                                           ("run_uuid", 5), ("timestamp", "1")])
def test_refuses_values_it_would_convert(tmp_path, column, value):
    w = SnapshotWriter(str(tmp_path / "s"))
    w.prepare(SCHEMA, "dc11669786a5")
    cols = SCHEMA["metrics"].column_names
    row = list(ROWS["metrics"][0])
    row[cols.index(column)] = value
    with pytest.raises(DataError) as e:
        w.write("metrics", cols, [ROWS["metrics"][1], tuple(row)])
    assert "table metrics" in str(e.value) and f"column {column}" in str(e.value)
    key = tuple(row[cols.index(k)] for k in SCHEMA["metrics"].pk)  # the bad row, named by its key
    assert f"key {key!r}" in str(e.value)
    w.close()
    assert not (tmp_path / "s" / MANIFEST).exists()


def test_directory_rules(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(TargetNotEmpty, match="not a dbmigrate snapshot"):
        SnapshotWriter(str(foreign)).prepare(SCHEMA, "dc11669786a5")
    assert (foreign / "notes.txt").read_text() == "mine"
    done = tmp_path / "done"
    write_snapshot(done)
    with pytest.raises(TargetNotEmpty, match="complete snapshot"):
        SnapshotWriter(str(done)).prepare(SCHEMA, "dc11669786a5")
    write_snapshot(done, batch=100, overwrite=True)  # told to overwrite: the same rows in fewer files
    assert ParquetSnapshot(str(done)).open().count("metrics") == len(ROWS["metrics"])


KILL_SCRIPT = """
import os, signal, sys
from tests.support.edge_tables import SCHEMA, ROWS
from dbmigrate.writers.parquet import SnapshotWriter
w = SnapshotWriter(sys.argv[1], row_group_rows=2, file_rows=4)
w.prepare(SCHEMA, "dc11669786a5")
cols = SCHEMA["metrics"].column_names
for i, row in enumerate(ROWS["metrics"]):
    w.write("metrics", cols, [row])
    if i == 9:
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_backup_is_incomplete_and_a_rerun_repairs_it(tmp_path):
    d = tmp_path / "killed"
    res = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(d)], cwd=ROOT, capture_output=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert res.returncode == -signal.SIGKILL, res.stderr.decode()[-2000:]
    assert (d / MARKER).exists() and not (d / MANIFEST).exists()
    assert len(os.listdir(d / "metrics")) >= 2  # closed part files and one without its footer
    with pytest.raises(DataError, match="incomplete snapshot"):
        ParquetSnapshot(str(d)).open()
    write_snapshot(d)
    r = ParquetSnapshot(str(d)).open()
    back = [row for b in r.rows("metrics", SCHEMA["metrics"].column_names, 100) for row in b]
    assert rows_tokens(back) == rows_tokens(ROWS["metrics"]) and not (d / MARKER).exists()


def _edit_manifest(fn):
    def edit(d):
        m = json.loads((d / MANIFEST).read_text())
        fn(m)
        (d / MANIFEST).write_text(json.dumps(m))
    return edit


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


F = "metrics/part-00001.parquet"
DAMAGE = {  # name -> (how, error type, what the message must name)
    "file deleted": (lambda d: os.remove(d / F), DataError, ["table metrics", F, "missing"]),
    "file truncated": (lambda d: os.truncate(d / F, os.path.getsize(d / F) - 100), DataError,
                       ["table metrics", F, "truncated"]),
    "byte flipped": (lambda d: _flip_byte(d / F), DataError, ["table metrics", F, "altered"]),
    "manifest deleted": (lambda d: os.remove(d / MANIFEST), DataError, [MANIFEST, "metrics, texts"]),
    "table directory deleted": (lambda d: shutil.rmtree(d / "texts"), DataError, ["table texts", "texts"]),
    "unlisted file": (lambda d: shutil.copy(d / F, d / "metrics" / "part-00009.parquet"), DataError,
                      ["table metrics", "part-00009.parquet", "not listed"]),
    "count edited": (_edit_manifest(lambda m: m["tables"]["texts"].__setitem__("rows", 6)), DataError,
                     ["table texts", "texts/part-00000.parquet", "6 rows"]),
    "file count edited": (_edit_manifest(lambda m: m["tables"]["metrics"]["files"][1].__setitem__("rows", 11)),
                          DataError, ["table metrics", F, "11"]),
    "checksum edited": (_edit_manifest(lambda m: m["tables"]["texts"].__setitem__("checksum", "0" * 16)),
                        DataError, ["table texts", "texts/part-00000.parquet", "checksum"]),
    "unknown format version": (_edit_manifest(lambda m: m.__setitem__("format_version", 2)), SchemaError,
                               [MANIFEST, "format version 2"]),
    "manifest not JSON": (lambda d: (d / MANIFEST).write_text('{"format": '), DataError, [MANIFEST]),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damage_is_named(snap, tmp_path, case):
    how, kind, words = DAMAGE[case]
    d = tmp_path / "copy"
    shutil.copytree(snap, d)
    ParquetSnapshot(str(d)).open()  # sound before the damage
    how(d)
    with pytest.raises(kind) as e:
        ParquetSnapshot(str(d)).open()
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_delete_part_removes_exactly_its_rows(tmp_path):
    """A part rewritten after delete_part (key range or whole table) leaves the snapshot exactly as
    if it had been written once: rows, files and the manifest's checksum."""
    w = SnapshotWriter(str(tmp_path / "s"), row_group_rows=4, file_rows=8)
    w.prepare(SCHEMA, "dc11669786a5")
    cols, rows = SCHEMA["metrics"].column_names, ROWS["metrics"]
    run1 = [r for r in rows if "run1" <= r[0] < "run2"]
    assert w.delete_part("metrics", None) == 0  # nothing written yet
    w.write("metrics", cols, rows[:20])
    assert w.delete_part("metrics", ("run_uuid", "run1", "run2")) == sum(1 for r in rows[:20] if r in run1)
    assert w.delete_part("metrics", ("run_uuid", "run1", "run2")) == 0
    w.write("metrics", cols, rows[20:])  # rows still buffered are deleted too
    assert w.delete_part("metrics", ("run_uuid", "run1", "run2")) == sum(1 for r in rows[20:] if r in run1)
    w.write("metrics", cols, run1)
    w.write("texts", cols_t := SCHEMA["texts"].column_names, ROWS["texts"][:2])
    assert w.delete_part("texts", None) == 2
    w.write("texts", cols_t, ROWS["texts"])
    with pytest.raises(MigrationError, match="not among the columns"):
        w.delete_part("texts", ("nope", 1, 2))
    w.finalize()
    with pytest.raises(MigrationError, match="finalized"):
        w.write("texts", cols_t, ROWS["texts"])
    r = ParquetSnapshot(str(tmp_path / "s")).open()  # files, sizes, hashes and checksums all agree
    m = json.loads((tmp_path / "s" / MANIFEST).read_text())
    for name in ("metrics", "texts"):
        c = SCHEMA[name].column_names
        assert rows_tokens(x for b in r.rows(name, c, 10) for x in b) == rows_tokens(ROWS[name])
        assert m["tables"][name]["checksum"] == f"{checksum_of(ROWS[name], c).total:016x}"
    assert len(m["tables"]["metrics"]["files"]) > 2 and not list((tmp_path / "s").rglob("*.tmp"))


# ----------------------------------------------------------------------------- a real MLflow database
@pytest.fixture(scope="module")
def mlflow_snapshot(mlflow_source, tmp_path_factory):
    """MLflow 3.17.2 on PostgreSQL, every table filled, backed up table by table (small batches:
    many writes per table) through dbmigrate.snapshot.backup."""
    from dbmigrate.snapshot import backup
    uri, _ = mlflow_source("postgresql", 3)
    d = tmp_path_factory.mktemp("mlflow") / "backup"
    backup(uri, str(d), batch_size=7)
    return uri, d


def test_mlflow_backup_has_the_databases_checksums(mlflow_snapshot):
    from dbmigrate.checksum import source_checksum
    from dbmigrate.mlflow_schema import schema_version
    from dbmigrate.readers.sql import SqlSource
    from dbmigrate.uri import parse_uri
    uri, d = mlflow_snapshot
    snap = ParquetSnapshot(str(d)).open()  # every file and every checksum checked
    manifest = json.loads((d / MANIFEST).read_text())
    with SqlSource(parse_uri(uri, role="source")) as src:
        schema = src.inspect()
        assert snap.revision == schema.revision == "dc11669786a5"
        assert set(snap.tables()) == set(schema.tables)
        assert not [t for t in schema_version(schema.revision).expected_tables if snap.count(t) == 0]
        for name, table in schema.tables.items():
            expected = source_checksum(src, name, table.column_names, 1000)  # the verifier's path
            entry = manifest["tables"][name]
            assert (entry["rows"], entry["checksum"]) == (expected.count, f"{expected.total:016x}"), name
            assert [(c.name, c.type) for c in snap.table(name).columns] == \
                [(c.name, c.type) for c in table.columns], name
            cols = table.column_names
            assert rows_tokens(r for b in snap.rows(name, cols, 500) for r in b) == \
                rows_tokens(r for b in src.stream(name, cols, 500) for r in b), name
    tags = {c.type for t in snap.tables() for c in snap.table(t).columns}
    assert {"int", "float", "bool", "str", "bytes", "json", "date"} <= tags, tags


@pytest.mark.parametrize("engine", ["sqlite", "mysql"])
def test_mlflow_backup_of_other_engines(mlflow_source, tmp_path, engine):
    """The same through the SQLite and MariaDB readers' own normalisation (bools stored as
    integers, REALs holding whole numbers, BLOBs): the snapshot equals the database by
    snapshot.compare, i.e. the verifier's checksum of every table. (The session's MLflow sources
    are shared with test_sql_targets, so in a full run they cost nothing more.)"""
    from dbmigrate.readers.sql import SqlSource
    from dbmigrate.snapshot import SqlReader, backup, compare
    from dbmigrate.uri import parse_uri
    uri, _ = mlflow_source(engine, 3)
    backup(uri, str(tmp_path / "b"), batch_size=50)
    snap = ParquetSnapshot(str(tmp_path / "b")).open()
    reader = SqlReader(SqlSource(parse_uri(uri, role="source"))).open()
    try:
        assert len(snap.tables()) > 40 and compare(reader, snap) == []
    finally:
        reader.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mysql"])
def test_mlflow_snapshot_restores_into_sql(mlflow_snapshot, sql_db, engine):
    """The snapshot feeds the SQL end's own functions (source_rows, expected_checksum,
    verify_tables) as a non-SQL source; stock MLflow then shows the same as on the source."""
    from dbmigrate.config import Config
    from dbmigrate.mlflow_schema import schema_version
    from dbmigrate.report import Report
    from dbmigrate.sql_rows import INT32_MAX, INT64_MAX, ZERO_LOSSY, IdMap, NegativeZeros, source_rows
    from dbmigrate.ends.sql import fk_order
    from dbmigrate.verification.sql import expected_checksum, verify_tables
    from dbmigrate.uri import parse_uri
    from dbmigrate.writers.sql import SqlWriter
    from tests.test_sql_targets import _api, _same_api
    uri, d = mlflow_snapshot
    snap = ParquetSnapshot(str(d), verify="files").open()
    dst = parse_uri(sql_db(engine, "dbm_restore"), role="target")
    writer = SqlWriter(dst)
    writer.prepare(snap.revision)
    ids = IdMap(snap.plan_experiment_ids(INT64_MAX if engine == "sqlite" else INT32_MAX))
    zeros = NegativeZeros if engine in ZERO_LOSSY else (lambda: None)
    tables = [t for t in fk_order(writer, schema_version(snap.revision).expected_tables, False)
              if t in snap.tables()]
    checks = {}
    for t in tables:
        wanted = [c for c, info in writer.table_columns(t).items() if not info["generated"]]
        columns, batches = source_rows(snap, t, wanted, ids, 500, zeros())
        for rows in batches:
            writer.insert_rows(t, columns, rows, key_columns=snap.table(t).pk)
        checks[t] = expected_checksum(snap, t, wanted, ids, 500, zeros())
    writer.advance_sequences(tables)
    writer.close()
    v = verify_tables(dst, checks, Config(verify="full"), Report("restore", str(d), dst.masked, "sql"),
                          snap, ids)
    assert v.passed and not v.failures and len(v.checksums) == len(tables) > 40
    assert all(c["match"] and c["rows"] > 0 for c in v.checksums)
    _same_api(_api(uri), _api(dst.raw))


def test_edge_rows_from_postgresql_back_bit_for_bit(pg_base, tmp_path):
    """-0.0, 5e-324, +-max double, NULL vs '' tags, 8000-character params written straight into an
    MLflow-made PostgreSQL database: every table read from the snapshot equals, value for value and
    bit for bit, what SqlSource reads from the database."""
    from dbmigrate.readers.sql import SqlSource
    from dbmigrate.snapshot import SqlReader, backup, compare
    from dbmigrate.uri import parse_uri
    from tests.support import edge_cases, servers
    name = servers.create_pg_database(pg_base, "dbm_edge_pq")
    try:
        uri = servers.pg_database(pg_base, name)
        code = ("import sys; from mlflow import MlflowClient; "
                "print(MlflowClient(sys.argv[1]).create_experiment('edge 実験'))")
        out = subprocess.run([sys.executable, "-c", code, servers.mlflow_uri(uri)], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        edge_cases.add_edge_rows(servers.mlflow_uri(uri), int(out.strip().splitlines()[-1]))
        backup(uri, str(tmp_path / "b"))
        snap = ParquetSnapshot(str(tmp_path / "b")).open()
        with SqlSource(parse_uri(uri, role="source")) as src:
            for t, table in src.inspect().tables.items():
                cols = table.column_names
                db = rows_tokens(r for b in src.stream(t, cols, 1000) for r in b)
                assert rows_tokens(r for b in snap.rows(t, cols, 1000) for r in b) == db, t
        metrics = {r[0]: r[1] for b in snap.rows("metrics", ["key", "value"], 100) for r in b}
        assert token(metrics["neg_zero"]) == token(-0.0) and token(metrics["denormal"]) == token(5e-324)
        tags = {r[0]: r[1] for b in snap.rows("tags", ["key", "value"], 100) for r in b}
        assert tags["null_tag"] is None and tags["empty_tag"] == ""
        reader = SqlReader(SqlSource(parse_uri(uri, role="source"))).open()
        assert isinstance(reader, Reader) and compare(reader, snap) == []
        reader.close()
        import sqlalchemy as sa  # the database moves on: one more tag, one tag '' -> NULL
        eng = sa.create_engine(servers.mlflow_uri(uri))
        with eng.begin() as conn:
            conn.execute(sa.text("UPDATE tags SET value = NULL WHERE key = 'empty_tag'"))
            conn.execute(sa.text("INSERT INTO experiment_tags (key, value, experiment_id) "
                                 "SELECT 'late', '', MIN(experiment_id) FROM experiments"))
        eng.dispose()
        reader = SqlReader(SqlSource(parse_uri(uri, role="source"))).open()
        diff = compare(reader, snap)
        reader.close()
        assert [d.split(":")[0] for d in diff] == ["experiment_tags", "tags"], diff
    finally:
        servers.drop_pg_database(pg_base, name)


TAG_VALUES = {"int": st.integers(-(2**63), 2**63 - 1), "float": st.floats(allow_nan=True, width=64),
              "bool": st.booleans(), "str": st.text(), "bytes": st.binary(), "json": st.text(max_size=5),
              "date": st.text(max_size=3), "datetime": st.text(max_size=3), "decimal": st.floats()}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_arrow_checksum_equals_the_verifiers(data):
    """dbmigrate.arrow_rows (used by the writer and the reader) gives Checksum's numbers on
    any rows: random columns of every type tag, NULLs anywhere, any text and bytes, any double."""
    import pyarrow as pa
    from dbmigrate.arrow_rows import add_batch
    from dbmigrate.arrow_rows import arrow_schema
    tags = data.draw(st.lists(st.sampled_from(sorted(TAG_VALUES)), min_size=1, max_size=5))
    table = Table("t", [Column(f"c{i}_{tag}", tag, True) for i, tag in enumerate(tags)][::-1], [])
    cols = table.column_names
    rows = data.draw(st.lists(st.tuples(*[st.none() | TAG_VALUES[table.column(c).type] for c in cols]),
                              max_size=20))
    schema = arrow_schema(table, cols)
    batch = pa.RecordBatch.from_arrays([pa.array([r[i] for r in rows], type=f.type)
                                        for i, f in enumerate(schema)], schema=schema)
    got = Checksum()
    add_batch(got, batch, {c.name: c.type for c in table.columns})
    expected = checksum_of(rows, cols)
    assert (got.count, got.total) == (expected.count, expected.total)


def test_restore_verifies_the_target_against_the_manifests_checksums(mlflow_snapshot, sql_db, tmp_path):
    """A restore reads each table whole and unchanged, from files whose rows open() proved to give
    the manifest's checksum: the copy takes that checksum instead of computing it again, and the
    verification compares the target's rows with it (the checksum recorded at backup time)."""
    from tests.conftest import run_cli
    _uri, d = mlflow_snapshot
    manifest = json.loads((d / MANIFEST).read_text())["tables"]
    target = sql_db("postgresql", "dbm_restore_cli")
    report = tmp_path / "report.json"
    res = run_cli("migrate", "--source", f"parquet://{d}", "--target", target, "--no-progress",
                  "--verify", "full", "--report-json", str(report))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    checks = json.loads(report.read_text())["verification"]["checksums"]
    assert len(checks) > 40 and all(c["match"] for c in checks)
    from dbmigrate.mlflow_schema import GENERATED_COLUMNS
    whole = [c for c in checks if c["name"] not in GENERATED_COLUMNS]
    assert len(whole) > 40  # the others hold a generated column the target computes: not copied, not in the sum
    for c in whole:
        entry = manifest[c["name"]]
        assert c["source"] == str(Checksum(entry["rows"], int(entry["checksum"], 16))), c
