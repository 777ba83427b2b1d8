"""An MLflow FileStore (mlruns) into every target, through the command line.

FileStores written by MLflow 3.17.2's and 2.22.5's own clients (tests/support/make_filestore.py)
go by `dbmigrate migrate --source file:///.../mlruns --verify full` into SQLite, PostgreSQL,
MariaDB, MongoDB in both layouts and a Parquet snapshot; every copy must pass its own full
verification and `dbmigrate verify` from the FileStore. The judges beyond dbmigrate itself:
MLflow 3.17.2 reading each SQL target answers what it answers from the FileStore (experiment ids
remapped where INTEGER cannot hold the FileStore's 18-19-digit ids, as the report says), and MLflow
with the mlflow-mongodb plugin reading the mlflow-mongodb layout answers the same too. The six
copies of one store run side by side (each is a subprocess that mostly waits on MLflow's schema
migrations or a server), so the file stays within its time budget.
"""

from __future__ import annotations

import copy
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pymongo
import pytest

from dbmigrate.readers.filestore import FileStoreSource
from dbmigrate.sql_rows import INT32_MAX
from tests.conftest import run_cli
from tests.support import servers
from tests.support.make_filestore import make_filestore
from tests.support.mlflow_api import snapshot
from tests.test_e2e_postgres_to_mongo import expected_from_source
from tests.test_filestore_reader import RELEASES, expected_from_filestore, same_representation

os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3.17.2 reads a FileStore only with it

TARGETS = ["sqlite", "postgresql", "mysql", "mongodb-mlflow-mongodb", "mongodb-tables", "parquet"]


def _tree(path: str) -> list:
    """Every file under path with its size and modification time: the source is only read."""
    out = []
    for root, _dirs, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(root, f))
            out.append((os.path.relpath(os.path.join(root, f), path), st.st_size, st.st_mtime_ns))
    return sorted(out)


class Copy:
    """One `migrate` of a FileStore into one target, and `verify` of it from the FileStore."""

    def __init__(self, target: str, uri: str, layout: list[str]):
        self.target, self.uri, self.layout = target, uri, layout
        self.migrate = self.verify = self.report = self.verify_report = None

    def run(self, source: str, workdir) -> "Copy":
        rj, vj = workdir / f"{self.target}.json", workdir / f"{self.target}-verify.json"
        self.migrate = run_cli("migrate", "--source", source, "--target", self.uri, *self.layout, "--verify", "full",
                               "--no-progress", "--report-json", rj)
        self.report = json.loads(rj.read_text()) if rj.exists() else None
        if self.migrate.returncode == 0:
            self.verify = run_cli("verify", "--source", source, "--target", self.uri, *self.layout, "--verify",
                                  "full", "--no-progress", "--report-json", vj)
            self.verify_report = json.loads(vj.read_text()) if vj.exists() else None
        return self

    def check_passed(self) -> dict:
        out = self.migrate.stdout[-4000:] + self.migrate.stderr[-3000:]
        assert self.migrate.returncode == 0, out
        assert self.report["status"] == "SUCCESS" and self.report["verification"]["passed"], out
        assert self.report["verification"]["level"] == "full"
        assert self.verify is not None and self.verify.returncode == 0, self.verify.stdout[-4000:]
        assert self.verify_report["verification"]["passed"] and self.verify_report["status"] == "SUCCESS"
        return self.report


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """version -> (file:// URI of the mlruns MLflow wrote, its ids, MLflow's answers from it)."""
    made = {}

    def get(version):
        if version not in made:
            d = tmp_path_factory.mktemp(f"fst-{version}")
            ids = make_filestore(version, str(d))
            uri = "file://" + str(d / "mlruns")
            made[version] = (uri, ids, json.loads(json.dumps(snapshot(uri), default=str)))
        return made[version]
    return get


@pytest.fixture(scope="module")
def copies(stores, pg_base, mysql_base, mongo_base, tmp_path_factory):
    """version -> {target: Copy}: the FileStore of `version` copied into the six targets at once."""
    made, dbs = {}, []

    def uri_for(target, version):
        tag = version.replace(".", "")
        if target == "postgresql":
            name = servers.create_pg_database(pg_base, f"dbm_fs{tag}")
            dbs.append(("postgresql", name))
            return servers.pg_database(pg_base, name)
        if target == "mysql":
            name = servers.create_mysql_database(mysql_base, f"dbm_fs{tag}")
            dbs.append(("mysql", name))
            return servers.mysql_database(mysql_base, name)
        if target.startswith("mongodb"):
            name = f"dbm_fs{tag}_{os.urandom(4).hex()}"
            dbs.append(("mongodb", name))
            return servers.with_database(mongo_base, name)
        d = tmp_path_factory.mktemp(f"fst-{target}-{tag}")
        return f"sqlite:///{d / 'mlflow.db'}" if target == "sqlite" else f"parquet://{d / 'snapshot'}"

    def get(version):
        if version not in made:
            source, _ids, _snap = stores(version)
            work = tmp_path_factory.mktemp(f"fst-reports-{version}")
            before = _tree(source[len("file://"):])
            jobs = [Copy(t, uri_for(t, version), ["--layout", t.split("-", 1)[1]] if t.startswith("mongodb") else [])
                    for t in TARGETS]
            with ThreadPoolExecutor(max_workers=3) as pool:  # subprocesses: waits on servers and migrations overlap
                made[version] = {c.target: c for c in pool.map(lambda c: c.run(source, work), jobs)}
            assert _tree(source[len("file://"):]) == before  # the FileStore is only read
        return made[version]
    yield get
    client = pymongo.MongoClient(mongo_base)
    for kind, name in dbs:
        if kind == "postgresql":
            servers.drop_pg_database(pg_base, name)
        elif kind == "mysql":
            servers.drop_mysql_database(mysql_base, name)
        else:
            client.drop_database(name)
    client.close()


def _fs_ids(stores, version) -> set[int]:
    source = stores(version)[0]
    return {int(e["experiment_id"]) for e in stores(version)[2]["experiments"]} | {
        r[0] for b in FileStoreSource(source).open().rows("experiments", ["experiment_id"], 100) for r in b}


def _want(stores, version, remap=None, negative_zero=False) -> dict:
    """MLflow's answers from the FileStore, as MLflow's SQL store keeps the same data."""
    _source, ids, snap = stores(version)
    want = same_representation(expected_from_filestore(copy.deepcopy(snap), remap, negative_zero))
    if version.startswith("3."):
        # MLflow's FileStore reads a metric line that names a dataset as step 0 (see
        # tests/test_filestore_reader.py); the line says step 1, which the copy keeps.
        hist = want["metric_history"][f"{ids['runs']['parent']}/model_score"]
        assert (hist[0]["timestamp"], hist[0]["step"]) == (1_700_000_000_500, 0)
        hist[0]["step"] = 1
    return want


def _same(want: dict, got: dict) -> None:
    assert want["experiments"] and want["runs"] and want["traces"] and want["registered_models"]
    assert len(want["metric_history"]) > 10 and "NaN" in str(want["metric_history"])
    for part in want:
        assert got[part] == want[part], part


# ---------------------------------------------------------------------------- SQL targets
@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mysql"])
@pytest.mark.parametrize("version", RELEASES)
def test_filestore_into_sql(stores, copies, version, engine):
    c = copies(version)[engine]
    report = c.check_passed()
    assert report["layout"] == "from an MLflow FileStore" and report["revision"] == "dc11669786a5"
    assert all(ch["match"] for ch in report["verification"]["checksums"])
    assert {t["table"]: t["migrated"] for t in report["tables"]}["metrics"] > 50
    fs_ids = _fs_ids(stores, version)
    assert len([e for e in fs_ids if len(str(e)) >= 18]) >= 4  # the FileStore's own 18-19-digit ids
    if engine == "sqlite":  # 64-bit INTEGER: every id kept
        assert not report.get("remapped")
        remap = None
    else:  # INTEGER: the ids beyond it get 1, 2, ... in creation order (Default's 0 fits), reported
        remapped = report["remapped"]
        assert {int(k) for k in remapped} == {e for e in fs_ids if e > INT32_MAX} == fs_ids - {0}
        assert sorted(remapped.values()) == list(range(1, len(fs_ids)))
        assert any("do not fit the target's INTEGER and were given new ids" in n for n in report["notes"])
        assert any("experiment ids inside values are not rewritten" in n for n in report["notes"])
        assert c.verify_report["verification"]["passed"]  # verify works out the same mapping
        remap = {int(k): v for k, v in remapped.items()}
    got = same_representation(json.loads(json.dumps(snapshot(servers.mlflow_uri(c.uri)), default=str)))
    _same(_want(stores, version, remap, negative_zero=engine == "postgresql"), got)
    if remap:
        assert {e["experiment_id"] for e in got["experiments"]} == {str(v) for v in remap.values()} | {"0"}
    import sqlalchemy as sa
    eng = sa.create_engine(servers.mlflow_uri(c.uri))
    with eng.connect() as conn:  # what `mlflow db upgrade` seeds in a new store, as migrate-filestore has it
        assert conn.execute(sa.text("SELECT name, description FROM workspaces")).all() == [
            ("default", "Default workspace for legacy resources")]
    eng.dispose()


# ---------------------------------------------------------------------------- MongoDB
@pytest.mark.parametrize("layout", ["mlflow-mongodb", "tables"])
@pytest.mark.parametrize("version", RELEASES)
def test_filestore_into_mongodb(stores, copies, version, layout):
    c = copies(version)[f"mongodb-{layout}"]
    report = c.check_passed()
    assert any("staged in a temporary SQLite file" in n for n in report["notes"])
    assert not report.get("remapped")
    db = pymongo.MongoClient(c.uri).get_default_database()
    fs_ids = _fs_ids(stores, version)
    if layout == "tables":  # ids kept: the 18-19-digit numbers themselves
        assert {d["experiment_id"] for d in db.experiments.find()} == fs_ids
        assert db.metrics.count_documents({}) == FileStoreSource(stores(version)[0]).open().count("metrics")
    else:  # MLflow with the mlflow-mongodb plugin answers what MLflow answers from the FileStore
        assert {d["_id"] for d in db.experiments.find()} == {str(e) for e in fs_ids}
        got = same_representation(json.loads(json.dumps(snapshot(c.uri), default=str)))
        # The plugin keeps a logged model's NaN metric as logged (its documents are the run's
        # metric points); MLflow's SQL store keeps 0 there (expected_from_source says so).
        _same(expected_from_source(_want(stores, version)), got)


# ---------------------------------------------------------------------------- Parquet snapshot
@pytest.mark.parametrize("version", RELEASES)
def test_filestore_into_parquet_snapshot(stores, copies, version):
    c = copies(version)["parquet"]
    report = c.check_passed()
    manifest = json.loads(open(os.path.join(c.uri[len("parquet://"):], "manifest.json")).read())
    src = FileStoreSource(stores(version)[0]).open()
    assert manifest["mlflow_revision"] == src.revision == report["revision"]
    rows = {t: e["rows"] for t, e in manifest["tables"].items() if e["rows"]}
    assert rows == {t: src.count(t) for t in src.tables() if src.count(t)}
    assert {"experiments", "runs", "metrics", "params", "trace_info", "model_versions"} <= set(rows)
    assert len(c.verify_report["verification"]["checksums"]) >= len(rows)


# ---------------------------------------------------------------------------- refusals, dry run
def test_a_directory_that_is_no_filestore_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "mlflow.db"
    a_file.write_text("not a store")
    for path, code, words in [(empty, 4, "is not an MLflow FileStore"), (a_file, 4, "is a file"),
                              (tmp_path / "nowhere", 2, "does not exist")]:
        dst = tmp_path / f"{path.name}.db"
        res = run_cli("migrate", "--source", f"file://{path}", "--target", f"sqlite:///{dst}", "--no-progress")
        out = res.stdout + res.stderr
        assert res.returncode == code and str(path) in out and words in out, out[-2000:]
        assert not dst.exists()
    res = run_cli("migrate", "--source", str(empty), "--target", f"sqlite:///{tmp_path / 'x.db'}", "--no-progress")
    assert res.returncode == 4 and f"{empty} is not an MLflow FileStore" in res.stdout + res.stderr  # a plain path


def test_dry_run_from_a_filestore_writes_nothing(stores, mongo_base, tmp_path):
    source = stores("3.17.2")[0]
    before = _tree(source[len("file://"):])
    mongo = servers.with_database(mongo_base, f"dbm_fsdry_{os.urandom(4).hex()}")
    targets = [f"sqlite:///{tmp_path / 'dry.db'}", f"parquet://{tmp_path / 'dry-snapshot'}", mongo]

    def dry(target):
        rj = tmp_path / f"{abs(hash(target))}.json"
        src = source[len("file://"):] if target.startswith("parquet") else source  # a plain path is a FileStore too
        res = run_cli("migrate", "--dry-run", "--source", src, "--target", target, "--no-progress",
                      "--report-json", rj)
        return res, (json.loads(rj.read_text()) if rj.exists() else None)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(dry, targets))
    for target, (res, report) in zip(targets, results):
        assert res.returncode == 0 and report["status"] == "DRY RUN", res.stdout[-3000:] + res.stderr[-2000:]
        assert report["dry_run"] and any("dry run: nothing was written" in n for n in report["notes"]), target
        assert sum(t["migrated"] for t in report["tables"]) > 150, target  # the real plan ran
    assert not (tmp_path / "dry.db").exists() and not (tmp_path / "dry-snapshot").exists()
    client = pymongo.MongoClient(mongo_base)
    assert mongo.rsplit("/", 1)[1] not in client.list_database_names()
    client.close()
    assert _tree(source[len("file://"):]) == before
