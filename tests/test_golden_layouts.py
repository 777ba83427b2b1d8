"""Golden snapshots of both MongoDB layouts, table by table.

For every table of an MLflow 3.17.2 database (a fixed source: tests/golden/make_golden.py ROWS +
OTHER_ROWS in an empty schema MLflow's own migrations built on PostgreSQL), the representative
source row and the exact documents the `tables` and `mlflow-mongodb` layouts make of it, as
canonical extended JSON (Int32 vs Int64, double, NaN, Binary, ObjectId and key order pinned), must
equal tests/golden/<table>.json. Any change in a schema map, a converter, the planner or the
reader that changes a stored document fails here, naming the table and showing the diff.

After an intended change: `python -m tests.golden.make_golden`, then review `git diff tests/golden`.
"""

from __future__ import annotations

import difflib

import pytest

from tests.golden.make_golden import GOLDEN_DIR, build_source, golden_files, snapshot
from tests.support import servers

GOLDEN = golden_files()


@pytest.fixture(scope="module")
def rebuilt(pg_base) -> dict[str, str]:
    name = servers.create_pg_database(pg_base, "dbm_golden")
    try:
        url = servers.pg_database(pg_base, name)
        build_source(url)
        return snapshot(url)
    finally:
        servers.drop_pg_database(pg_base, name)


def test_every_table_has_a_golden_file(rebuilt):
    assert len(GOLDEN) >= 65, f"golden files missing in {GOLDEN_DIR}"
    assert sorted(rebuilt) == sorted(GOLDEN), (
        f"tables without golden file: {sorted(set(rebuilt) - set(GOLDEN))}; "
        f"golden files without table: {sorted(set(GOLDEN) - set(rebuilt))}")


@pytest.mark.parametrize("table", sorted(GOLDEN))
def test_golden_documents(rebuilt, table):
    got = rebuilt.get(table)
    assert got is not None, f"the source has no table {table}"
    if got != GOLDEN[table]:
        diff = "".join(difflib.unified_diff(GOLDEN[table].splitlines(keepends=True), got.splitlines(keepends=True),
                                            f"tests/golden/{table}.json", "rebuilt", n=4))
        pytest.fail(f"{table}: the documents differ from the golden snapshot "
                    f"(if intended: python -m tests.golden.make_golden, then review the diff)\n{diff[:6000]}",
                    pytrace=False)
