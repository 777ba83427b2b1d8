"""The schema knowledge made from MLflow's release wheels (dbmigrate/mlflow_data/revisions.json),
checked with no server: every final release 2.0.1 - 3.18.0 has a head, the tables expected at every
revision are exactly what the chain creates, and the source inspection accepts a database holding
exactly those tables (and refuses one table more or less). Names in messages come from the data."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from dbmigrate import mlflow_schema as ms
from dbmigrate.errors import SchemaError
from dbmigrate.readers.sql import SqlSource
from dbmigrate.uri import parse_uri

ROOT = Path(__file__).resolve().parent.parent
DATA = json.loads((ROOT / "dbmigrate" / "mlflow_data" / "revisions.json").read_text())


def _created_by_chain(revision: str) -> set[str]:
    """Replayed here from the raw data, independently of mlflow_schema: walk down_revision to the
    root, then apply every create/drop/rename in chain order."""
    info = {r["revision"]: r for r in DATA["revisions"]}
    chain, todo = set(), [revision]
    while todo:
        r = todo.pop()
        if r not in chain:
            chain.add(r)
            d = info[r]["down_revision"]
            todo += [] if d is None else d if isinstance(d, list) else [d]
    tables = set(DATA["initial_tables"])
    for r in DATA["revisions"]:
        if r["revision"] in chain:
            for op in r["ops"]:
                if op["op"] == "create_table":
                    tables.add(op["table"])
                elif op["op"] == "drop_table":
                    tables.discard(op["table"])
                elif op["op"] == "rename_table":
                    tables.discard(op["table"])
                    tables.add(op["new_name"])
    return tables


def test_every_final_release_is_in_the_data():
    releases = list(DATA["releases"])
    assert len(releases) == 97 and ms.RELEASES[0] == "2.0.1" and ms.RELEASES[-1] == "3.18.0"
    # The four yanked releases between them are not final releases on the index.
    assert not {"2.12.0", "2.22.3", "3.1.2", "3.11.0"} & set(releases)
    assert all(len(r["heads"]) == 1 for r in DATA["releases"].values())
    assert ms.HEAD == "f4a9b2c7d1e6" == ms.RELEASE_HEAD["3.18.0"]
    # Patch releases that end on a later revision than their minor number suggests.
    assert {v for v, h in ms.RELEASE_HEAD.items() if h == "bda7b8c39065"} == {"3.0.1", "3.1.1", "3.1.3", "3.1.4"}
    assert {v for v, h in ms.RELEASE_HEAD.items() if h == "5b0e9adcef9c"} >= {"2.13.1", "2.13.2", "2.13.3"}


@pytest.mark.parametrize("release", sorted(DATA["releases"], key=ms._release_key))
def test_release_head_tables_are_what_the_chain_creates(release):
    head = ms.RELEASE_HEAD[release]
    v = ms.schema_version(head)
    assert v.is_head and release in _names(v.release_range)
    assert v.expected_tables == _created_by_chain(head)
    assert ms.schema_version(head).release == min(
        (r for r, h in ms.RELEASE_HEAD.items() if ms.is_upgrade(head, h)), key=ms._release_key)


def _names(release_range: str) -> set[str]:
    """Every release a range such as '3.0.1, 3.1.1 - 3.1.4' stands for."""
    out = set()
    for part in release_range.split(", "):
        lo, _, hi = part.partition(f" {ms.DASH} ")
        i, j = ms.RELEASES.index(lo), ms.RELEASES.index(hi or lo)
        out |= set(ms.RELEASES[i:j + 1])
    return out


def test_release_names_come_from_the_data():
    assert ms.schema_version("bda7b8c39065").describe() == \
        "MLflow 3.0.1, 3.1.1 \u2013 3.1.4 (alembic revision bda7b8c39065)"
    assert ms.schema_version("6953534de441").release_range == "3.0.0, 3.1.0"
    assert ms.schema_version("5b0e9adcef9c").release_range == "2.13.1 \u2013 2.14.3"
    assert ms.schema_version("5b0e9adcef9c").release == "2.13.1"  # the one to install
    assert "assessments" not in ms.schema_version("bda7b8c39065").expected_tables
    assert ms.TABLE_SINCE["assessments"] == "3.2.0" and ms.TABLE_REVISION["assessments"] == "770bee3ae1dd"
    between = ms.schema_version("cbc13b556ace")
    assert not between.is_head and between.release == "3.2.0"
    assert "between MLflow 3.2.0's revisions, step 1 of 2 from bda7b8c39065" in between.describe()
    assert "development build or an interrupted upgrade" in between.describe()
    assert ms.schema_version("1b5f0d9ad7c1").has_column("experiments", "workspace")
    assert not ms.schema_version("d3e4f5a6b7c8").has_column("experiments", "workspace")
    assert ms.is_upgrade("4465047574b1", ms.HEAD) and not ms.is_upgrade(ms.HEAD, "4465047574b1")


def _sqlite_at(path: Path, revision: str, tables: set[str]) -> str:
    """A SQLite database at `revision` holding exactly `tables`, with the columns the data knows."""
    v = ms.schema_version(revision)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    conn.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    for t in sorted(tables):
        cols = {"dbm_id"} | {c for c in ms._schema_at(revision)[1].get(t, ()) if v.has_column(t, c)}
        conn.execute(f'CREATE TABLE "{t}" ({", ".join(f"{chr(34)}{c}{chr(34)} TEXT" for c in sorted(cols))})')
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def _inspect(uri: str):
    src = SqlSource(parse_uri(uri, role="source")).open()
    try:
        return src.inspect()
    finally:
        src.close()


@pytest.mark.parametrize("revision", [r for r in ms.REVISIONS if "experiments" in
                                      ms.schema_version(r).expected_tables])
def test_source_with_exactly_its_tables_is_accepted(tmp_path, revision):
    tables = ms.schema_version(revision).expected_tables
    schema = _inspect(_sqlite_at(tmp_path / "ok.db", revision, tables))
    assert schema.revision == revision and set(schema.tables) == tables | {"alembic_version"}


def test_source_missing_or_with_later_tables_is_refused(tmp_path):
    rev = "bda7b8c39065"  # MLflow 3.0.1: no assessments table yet
    tables = ms.schema_version(rev).expected_tables
    with pytest.raises(SchemaError, match=r"3\.0\.1, 3\.1\.1 \u2013 3\.1\.4 .* lacks tables \['logged_models'\]"):
        _inspect(_sqlite_at(tmp_path / "less.db", rev, tables - {"logged_models"}))
    with pytest.raises(SchemaError, match=r"has tables of later MLflow releases: assessments \(3\.2\.0\)"):
        _inspect(_sqlite_at(tmp_path / "more.db", rev, tables | {"assessments"}))


def test_parser_reads_the_installed_mlflow_as_the_data_says():
    """The parser of scripts/mlflow_releases.py (scripts/mlflow_migrations.py) reads the installed
    MLflow's migration files as the operations recorded in the data (no download needed)."""
    import importlib.util

    import mlflow
    spec = importlib.util.spec_from_file_location("mlflow_migrations", ROOT / "scripts" / "mlflow_migrations.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    base = Path(mlflow.__file__).parent / "store"
    models = [p.read_text() for p in base.rglob("dbmodels/*.py")]
    classes = mod.table_names_of_classes(models)
    info = {r["revision"]: r for r in DATA["revisions"]}
    files = sorted((base / "db_migrations" / "versions").glob("*.py"))
    assert len(files) > 60
    for f in files:
        m = mod.Migration(f.read_text(), classes).run()
        rev = m.consts.get("revision")
        if rev is None:
            continue
        assert m.ops == info[rev]["ops"], f.name


def test_install_hint_names_the_lowest_release_that_has_the_revision():
    """The installed MLflow (3.17.2) does not reach 3.18.0's head: the hint says what to install."""
    from dbmigrate.sql_schema import _check_installed_mlflow_knows
    with pytest.raises(SchemaError) as err:
        _check_installed_mlflow_knows(ms.HEAD)
    assert "MLflow 3.18.0 (alembic revision f4a9b2c7d1e6)" in err.value.message
    assert err.value.hint.startswith("install MLflow/mlflow-skinny >= 3.18.0")
    assert ms.schema_version("bda7b8c39065").release == "3.0.1"  # not 3.2, as it once said
