"""Conformance: every Writer and every Reader of dbmigrate.model against its real server.

For each backend (PostgreSQL, MariaDB, SQLite files, a MongoDB-wire server in the lossless
`tables` layout, Parquet snapshot directories) the edge tables of tests/support/edge_tables.py are
written through the Writer protocol and read back through the matching Reader, value by value,
floats by their bits. A value an engine cannot hold must be refused by the writer with a DataError
naming table, column and key; the refusals each backend must make are listed below (EXPECTED_REFUSED)
and compared both ways, so a silent change and a needless refusal both fail. Capabilities are
checked against what the server does. Readers: counts equal the rows yielded, key ranges partition a
table, every value is of its type tag's canonical Python type, batches are at most batch_size.
"""

from __future__ import annotations

import math
import struct
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from dbmigrate.errors import DataError, MigrationError, TargetNotEmpty
from dbmigrate.model import CANONICAL_TYPES, Capabilities, Reader, Writer
from dbmigrate.uri import parse_uri
from tests.support import servers
from tests.support.edge_tables import ROWS, SCHEMA, rows_tokens

BACKENDS = ["postgresql", "mysql", "sqlite", "mongodb", "parquet"]
REVISION = "451aebb31d03"  # the oldest revision dbmigrate knows: its store has only the initial tables

# (table, key, column) of the edge values each backend's writer must refuse: nothing else may be
# refused, and each of these must be (a silent change would fail the comparison anyway).
_NAN, _PINF, _NINF, _NZERO = 0, 1, 2, 3   # positions in edge_tables.FLOATS (repeated 3 times)


def _metric_keys(*positions):
    return {("metrics", (f"run{i % 3}", "loss", i), "value") for i in range(30) if i % 10 in positions}


EXPECTED_REFUSED = {
    # timestamp without time zone would drop the offset; text cannot hold NUL; NUMERIC has no -0
    "postgresql": {("texts", 3, "t"), ("texts", 4, "s"), ("texts", 4, "n")},
    # DOUBLE holds no NaN, no infinity, no -0.0; DECIMAL(65,30) rounds 1e-300 to 0; DATETIME has no zone
    "mysql": _metric_keys(_NAN, _PINF, _NINF, _NZERO) | {("metrics", ("", "", 0), "value"),
                                                         ("texts", 3, "t"), ("texts", 4, "n"), ("texts", 5, "n")},
    # REAL stores NaN as NULL and -0.0 as 0; a JSON (NUMERIC affinity) column turns the text '1' into 1
    "sqlite": _metric_keys(_NAN, _NZERO) | {("metrics", ("", "", 0), "value"), ("texts", 4, "n"),
                                            ("texts", 5, "j")},
    "mongodb": set(),
    "parquet": set(),
}

# Type tags a reader gives back differently from the ones written, with the reason. MariaDB's JSON
# is an alias of LONGTEXT (with a json_valid CHECK), which reflection reports as LONGTEXT: the SQL
# reader tags such a column str. The values are the same str either way.
TAG_READ_BACK = {("mysql", "texts", "j"): "str"}


# ----------------------------------------------------------------------------- the ends
def _sql_tables(engine_kind: str) -> sa.MetaData:
    """The edge tables as SQL DDL, in a minimal MLflow store (alembic_version at REVISION and the
    initial tables) so that the SQL reader, which reads MLflow stores only, accepts it."""
    from sqlalchemy.dialects import mysql
    md = sa.MetaData()
    key = sa.String(255)
    sa.Table("alembic_version", md, sa.Column("version_num", sa.String(32), primary_key=True))
    sa.Table("experiments", md, sa.Column("experiment_id", sa.Integer, primary_key=True))
    sa.Table("runs", md, sa.Column("run_uuid", sa.String(32), primary_key=True))
    sa.Table("params", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("tags", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("metrics", md, sa.Column("run_uuid", key, primary_key=True), sa.Column("key", key, primary_key=True),
             sa.Column("step", sa.BigInteger, primary_key=True, autoincrement=False),
             sa.Column("value", sa.Float(53)), sa.Column("is_nan", sa.Boolean, nullable=False),
             sa.Column("timestamp", sa.BigInteger, nullable=False))
    sa.Table("texts", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("s", sa.Text), sa.Column("b", sa.LargeBinary), sa.Column("j", sa.JSON),
             sa.Column("d", sa.Date), sa.Column("t", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")),
             sa.Column("n", sa.Numeric().with_variant(mysql.DECIMAL(65, 30), "mysql")))
    sa.Table("empty", md, sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
             sa.Column("v", sa.Float(53)))
    return md


class End:
    """One backend: a fresh target, its Writer, and a Reader of what was written."""

    def __init__(self, kind: str, sql_db, mongo_db, tmp_path):
        self.kind = kind
        if kind in ("postgresql", "mysql", "sqlite"):
            self.uri = sql_db(kind, "dbm_conf")
            engine = sa.create_engine(servers.mlflow_uri(self.uri), poolclass=sa.pool.NullPool)
            _sql_tables(kind).create_all(engine)
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO alembic_version VALUES (:r)"), {"r": REVISION})
            engine.dispose()
        elif kind == "mongodb":
            self.uri = mongo_db("dbm_conf")
        else:
            self.uri = str(tmp_path / "snapshot")

    def writer(self):
        if self.kind in ("postgresql", "mysql", "sqlite"):
            from dbmigrate.writers.sql import SqlWriter
            return SqlWriter(parse_uri(self.uri, role="target"))
        if self.kind == "mongodb":
            from dbmigrate.writers.mongo import MongoTablesWriter
            return MongoTablesWriter(parse_uri(self.uri, role="target"))
        from dbmigrate.writers.parquet import SnapshotWriter
        return SnapshotWriter(self.uri)

    def revision(self):
        return None if self.kind in ("postgresql", "mysql", "sqlite") else REVISION

    def reader(self):
        if self.kind in ("postgresql", "mysql", "sqlite"):
            from dbmigrate.readers.sql import SqlSource
            return SqlSource(parse_uri(self.uri, role="source")).open()
        if self.kind == "mongodb":
            from dbmigrate.readers.mongo import MongoReader
            return MongoReader(parse_uri(self.uri, role="source")).open()
        from dbmigrate.readers.parquet import ParquetSnapshot
        return ParquetSnapshot(self.uri).open()


@pytest.fixture(params=BACKENDS)
def end(request, sql_db, mongo_db, tmp_path):
    return End(request.param, sql_db, mongo_db, tmp_path)


def _bits(v):
    return struct.pack("<d", v) if isinstance(v, float) else v


def _key(table, row):
    cols = SCHEMA[table].column_names
    k = tuple(row[cols.index(c)] for c in SCHEMA[table].pk)
    return k[0] if len(k) == 1 else k


def write_with_refusals(writer, table, rows, refused: set, batch: int = 7) -> list[tuple]:
    """Write `rows` in batches. A refused batch must name table, column and the row's key; that
    cell becomes NULL (so the row's other values are still tested) and the batch is sent again.
    Returns the rows as written."""
    cols = SCHEMA[table].column_names
    out = []
    for i in range(0, len(rows), batch):
        chunk = [list(r) for r in rows[i:i + batch]]
        while True:
            try:
                writer.write(table, cols, [tuple(r) for r in chunk])
                break
            except DataError as exc:
                assert exc.table == table and exc.column in cols, str(exc)
                hit = [r for r in chunk if _key(table, r) == exc.key]
                assert len(hit) == 1, f"the refusal names no row of the batch by its key: {exc}"
                assert (table, exc.key, exc.column) not in refused, f"refused twice: {exc}"
                refused.add((table, exc.key, exc.column))
                hit[0][cols.index(exc.column)] = None
        out += [tuple(r) for r in chunk]
    return out


def read_all(reader, table, columns=None, batch_size=4, part=None):
    columns = columns or reader.table(table).column_names
    batches = list(reader.rows(table, columns, batch_size, part))
    assert all(0 < len(b) <= batch_size for b in batches), [len(b) for b in batches]
    return [r for b in batches for r in b]


HALF_PART = ("run_uuid", "run1", "run2")


# ----------------------------------------------------------------------------- writers
def test_writer_round_trip(end):
    t0 = time.perf_counter()
    w = end.writer()
    assert isinstance(w, Writer) and isinstance(w.capabilities, Capabilities)
    caps = w.capabilities
    refused: set = set()
    written: dict[str, list] = {}
    try:
        w.begin(SCHEMA, end.revision())
        # a part half written by an interrupted run, cleared, then written whole
        in_part = [r for r in ROWS["metrics"] if r[0] == "run1"]
        others = [r for r in ROWS["metrics"] if r[0] != "run1"]
        write_with_refusals(w, "metrics", in_part[: len(in_part) // 2], set())
        written["metrics"] = write_with_refusals(w, "metrics", others, refused)
        assert w.delete_part("metrics", HALF_PART) == len(in_part) // 2
        if caps.durable_writes:  # durable before finalize: another connection sees exactly the others
            r = end.reader()
            try:
                assert rows_tokens(read_all(r, "metrics")) == rows_tokens(written["metrics"])
                assert r.count("metrics") == len(others)
            finally:
                r.close()
        else:  # the snapshot: nothing readable before finalize
            with pytest.raises(DataError, match="incomplete snapshot"):
                end.reader()
        written["metrics"] += write_with_refusals(w, "metrics", in_part, refused)
        written["texts"] = write_with_refusals(w, "texts", ROWS["texts"], refused)
        w.write("empty", SCHEMA["empty"].column_names, [])
        stats = w.finalize()
        assert stats["metrics"]["rows"] == len(ROWS["metrics"]) and stats["texts"]["rows"] == len(ROWS["texts"])
    finally:
        w.close()
        w.close()  # safe twice

    assert refused == EXPECTED_REFUSED[end.kind]
    negative_zero_cells = {(t, _key(t, r), c) for t in ("metrics", "texts") for r in ROWS[t]
                           for c, v in zip(SCHEMA[t].column_names, r)
                           if SCHEMA[t].column(c).type == "float" and v == 0 and math.copysign(1, v) < 0}
    assert len(negative_zero_cells) == 4
    if caps.keeps_negative_zero:
        assert not negative_zero_cells & refused
    else:
        assert negative_zero_cells <= refused

    r = end.reader()
    try:
        assert isinstance(r, Reader)
        assert set(SCHEMA) <= set(r.tables())
        for name in SCHEMA:
            cols = SCHEMA[name].column_names
            assert [(c.name, c.type) for c in r.table(name).columns] == \
                [(c.name, TAG_READ_BACK.get((end.kind, name, c.name), c.type)) for c in SCHEMA[name].columns]
            back = read_all(r, name)
            assert rows_tokens(back) == rows_tokens(written.get(name, [])), name
            assert r.count(name) == len(back)
            for row in back:
                for c, v in zip(cols, row):
                    assert v is None or type(v) in CANONICAL_TYPES[SCHEMA[name].column(c).type], (name, c, v)
        # bit-exact floats, the long text, NULL apart from ''
        bits = Counter(_bits(x[3]) for x in read_all(r, "metrics"))
        assert bits == Counter(_bits(x[3]) for x in written["metrics"])
        texts = {x[0]: x for x in read_all(r, "texts")}
        assert texts[1][1] == "" and texts[2][1] is None and texts[1][2] == b"" and texts[2][2] is None
        assert texts[3][1] == ROWS["texts"][2][1] and len(texts[3][1]) == 6000
        assert r.count("empty") == 0 and read_all(r, "empty") == []
    finally:
        r.close()
        r.close()

    if caps.advances_sequences:  # the next generated id comes after the copied ones
        engine = sa.create_engine(servers.mlflow_uri(end.uri), poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO texts (s) VALUES ('next')"))
            assert conn.execute(sa.text("SELECT id FROM texts WHERE s = 'next'")).scalar() > 5
        engine.dispose()
    if caps.fast_paths:
        assert caps.fast_paths == {"postgresql-binary-copy"} and end.kind == "postgresql"
    assert time.perf_counter() - t0 < 30


def test_writer_refuses_a_complete_copy(end):
    w = end.writer()
    try:
        w.begin(SCHEMA, end.revision())
        w.write("empty", ["id", "v"], [(1, 0.5)])
        w.finalize()
    finally:
        w.close()
    w = end.writer()
    try:
        with pytest.raises(TargetNotEmpty):
            w.begin(SCHEMA, end.revision())
    finally:
        w.close()


def test_sql_keys_live_during_the_load(sql_db, mongo_db, tmp_path):
    """defers_keys is False for SqlWriter: a duplicate key is refused when written."""
    e = End("sqlite", sql_db, mongo_db, tmp_path)
    w = e.writer()
    assert not w.capabilities.defers_keys
    try:
        w.begin(SCHEMA, None)
        w.write("empty", ["id", "v"], [(1, 0.5)])
        with pytest.raises(DataError, match="table empty"):
            w.write("empty", ["id", "v"], [(1, 0.25)])
    finally:
        w.close()


# ----------------------------------------------------------------------------- readers
def test_reader_contract(end):
    w = end.writer()
    try:
        w.begin(SCHEMA, end.revision())
        for name, rows in ROWS.items():
            write_with_refusals(w, name, rows, set())
        w.finalize()
    finally:
        w.close()
    r = end.reader()
    try:
        assert r.revision == REVISION
        names = r.tables()
        assert names.index("metrics") < names.index("texts")  # load order, known tables first
        for name in names:
            table = r.table(name)
            cols = table.column_names
            rows = read_all(r, name, cols, batch_size=3) if r.count(name) else []
            assert r.count(name) == len(rows), name
            for row in rows:
                for col, v in zip(table.columns, row):
                    assert v is None or type(v) in CANONICAL_TYPES[col.type], (name, col.name, v)
        # key ranges partition a table, with counts to match
        parts = [("run_uuid", None, "run1"), HALF_PART, ("run_uuid", "run2", None)]
        got = [x for p in parts for x in read_all(r, "metrics", ["run_uuid", "step"], 5, p)]
        assert Counter(got) == Counter((x[0], x[2]) for x in ROWS["metrics"])
        assert [r.count("metrics", p) for p in parts] == \
            [len(read_all(r, "metrics", ["step"], 100, p)) for p in parts] == [12, 10, 10]
        # a subset of the columns in another order
        sub = read_all(r, "texts", ["d", "id"], 10)
        assert sorted(sub, key=lambda x: x[1]) == [(x[4], x[0]) for x in ROWS["texts"]]
    finally:
        r.close()


# ----------------------------------------------------------------------------- MongoDB specifics
def test_mongo_types_from_mlflow_schema_and_store_layout(mongo_db):
    """Without a recorded schema the Mongo reader types its tables from MLflow's own schema at
    the revision; the mlflow-mongodb layout is read whole (a key range is refused by name)."""
    import pymongo
    from bson.int64 import Int64

    from dbmigrate.readers.mongo import MongoReader
    from dbmigrate.sql_schema import installed_head
    uri = mongo_db("dbm_conf")
    client = pymongo.MongoClient(uri)
    db = client.get_default_database()
    head = installed_head()
    # tables layout as an earlier dbmigrate wrote it: no schema in the marker
    db["_dbmigrate_meta"].insert_one({"_id": "migration", "layout": "tables", "source_revision": head})
    db["metrics"].insert_one({"_id": {"key": "k"}, "key": "k", "value": -0.0, "timestamp": Int64(5),
                              "run_uuid": "r", "step": Int64(0), "is_nan": False})
    r = MongoReader(parse_uri(uri, role="source")).open()
    try:
        t = r.table("metrics")
        tags = {c.name: c.type for c in t.columns}
        assert tags["value"] == "float" and tags["step"] == "int" and tags["is_nan"] == "bool"
        (row,) = read_all(r, "metrics", ["step", "value", "timestamp", "is_nan"])
        assert [type(v) for v in row] == [int, float, int, bool] and struct.pack("<d", row[1]) == _bits(-0.0)
        assert r.count("metrics") == 1
    finally:
        r.close()
    # the mlflow-mongodb layout (what the store itself writes)
    db = client.get_database(db.name + "_store")
    try:
        db["experiments"].insert_one({"_id": "7", "name": "e", "artifact_location": "a", "lifecycle_stage": "active",
                                      "creation_time": Int64(1), "last_update_time": 2,
                                      "tags": [{"k": "a", "v": "1"}, {"k": "b", "v": ""}]})
        r = MongoReader(parse_uri(servers.with_database(uri, db.name), role="source")).open()
        try:
            assert r.layout == "mlflow-mongodb"
            cols = r.table("experiments").column_names
            (row,) = read_all(r, "experiments", cols)
            assert dict(zip(cols, row))["experiment_id"] == 7 and type(dict(zip(cols, row))["creation_time"]) is int
            assert r.count("experiment_tags") == len(read_all(r, "experiment_tags")) == 2
            with pytest.raises(MigrationError, match="key range"):
                read_all(r, "experiment_tags", part=("key", "a", "b"))
        finally:
            r.close()
    finally:
        client.drop_database(db.name)
        client.close()


# ----------------------------------------------------------------------------- a read-only reader
def test_filestore_reader_contract(tmp_path):
    """The FileStore reader has no writer to fill it with the edge tables above: MLflow 3.17.2's
    client writes the store (tests/support/make_filestore.py), and the same contract is checked
    on every table it yields: exact counts, canonical types, batch sizes, key ranges that
    partition a table, a column subset in the order asked."""
    import os
    from dbmigrate.model import Reader
    from dbmigrate.readers.filestore import FileStoreSource
    from tests.support.make_filestore import make_filestore
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    make_filestore("3.17.2", str(tmp_path))
    r = FileStoreSource(str(tmp_path / "mlruns")).open()
    try:
        assert isinstance(r, Reader) and r.revision
        seen = 0
        for name in r.tables():
            table = r.table(name)
            rows = read_all(r, name, table.column_names, batch_size=3) if r.count(name) else []
            assert r.count(name) == len(rows), name
            seen += len(rows)
            for row in rows:
                for col, v in zip(table.columns, row):
                    assert v is None or type(v) in CANONICAL_TYPES[col.type], (name, col.name, v)
        assert seen > 100 and r.count("metrics") > 10
        runs = sorted(x[0] for x in read_all(r, "runs", ["run_uuid"], 100))
        cut = runs[len(runs) // 2]
        parts = [("run_uuid", None, cut), ("run_uuid", cut, None)]
        got = [x for p in parts for x in read_all(r, "metrics", ["run_uuid", "key", "step", "timestamp"], 5, p)]
        assert Counter(got) == Counter(read_all(r, "metrics", ["run_uuid", "key", "step", "timestamp"], 1000))
        assert [r.count("metrics", p) for p in parts] == [len(read_all(r, "metrics", ["step"], 100, p))
                                                          if r.count("metrics", p) else 0 for p in parts]
        assert all(r.count("metrics", p) for p in parts)
        sub = read_all(r, "params", ["value", "key"], 50)
        full = read_all(r, "params", ["key", "value"], 50)
        assert Counter((b, a) for a, b in sub) == Counter(full)
    finally:
        r.close()
