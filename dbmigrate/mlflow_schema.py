"""What dbmigrate knows about MLflow's SQL schema: the alembic revision chain, the releases that end
on each revision, which tables (and added columns) exist at a revision, load order, generated and
derived columns.

The facts about MLflow come from data, not from memory: ``mlflow_data/revisions.json``, written by
``scripts/mlflow_releases.py`` from the wheels of every final MLflow release 2.0.1 - 3.18.0 (their
``mlflow/store/db_migrations/versions``). The tables at a revision are exactly what
``InitialBase`` plus the chain of migrations up to that revision create (and do not drop or
rename away).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dbmigrate.errors import SchemaError

_DATA = json.loads((Path(__file__).parent / "mlflow_data" / "revisions.json").read_text("utf-8"))
DASH = "\u2013"  # en dash in release ranges: "3.0.1 \u2013 3.1.4"


def _release_key(release: str) -> tuple[int, ...]:
    return tuple(int(p) for p in release.split("."))


def _downs(info: dict) -> list[str]:
    d = info["down_revision"]
    return [] if d is None else list(d) if isinstance(d, list) else [d]


_INFO: dict[str, dict] = {r["revision"]: r for r in _DATA["revisions"]}
# Every revision, parents before children (the file's order).
REVISIONS: list[str] = [r["revision"] for r in _DATA["revisions"]]
_INDEX = {rev: i for i, rev in enumerate(REVISIONS)}
# Every final release the data covers, oldest first, and the head revision it ends on.
RELEASES: list[str] = sorted(_DATA["releases"], key=_release_key)
RELEASE_HEAD: dict[str, str] = {v: _DATA["releases"][v]["heads"][-1] for v in RELEASES}
HEAD = RELEASE_HEAD[RELEASES[-1]]
_RELEASES_BY_HEAD: dict[str, list[str]] = {}
for _v in RELEASES:
    _RELEASES_BY_HEAD.setdefault(RELEASE_HEAD[_v], []).append(_v)


def release_names(releases: list[str]) -> str:
    """'3.0.1, 3.1.1 \u2013 3.1.4': runs of consecutive releases (in RELEASES) joined by a dash."""
    pos = sorted(RELEASES.index(v) for v in releases)
    runs: list[list[int]] = []
    for p in pos:
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return ", ".join(RELEASES[a] if a == b else f"{RELEASES[a]} {DASH} {RELEASES[b]}"
                     for a, b in runs)


# head revision -> the releases that end on it, e.g. bda7b8c39065 -> "3.0.1, 3.1.1 - 3.1.4".
RELEASE_RANGE_BY_HEAD = {h: release_names(vs) for h, vs in _RELEASES_BY_HEAD.items()}


@lru_cache(maxsize=None)
def ancestors(revision: str) -> frozenset[str]:
    """`revision` and every revision it is built on."""
    seen, todo = set(), [revision]
    while todo:
        r = todo.pop()
        if r not in seen:
            seen.add(r)
            todo += _downs(_INFO[r])
    return frozenset(seen)


@lru_cache(maxsize=None)
def _schema_at(revision: str) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """(tables, columns the migrations create or add per table) once `revision` is applied:
    the initial tables, then every operation of every ancestor, in chain order."""
    tables = set(_DATA["initial_tables"])
    cols: dict[str, set[str]] = {t: set() for t in tables}
    mine = ancestors(revision)
    for rev in REVISIONS:
        if rev not in mine:
            continue
        for op in _INFO[rev]["ops"]:
            t, kind = op.get("table"), op["op"]
            if kind == "create_table":
                tables.add(t)
                cols[t] = set(op.get("columns") or ())
            elif kind == "drop_table":
                tables.discard(t)
                cols.pop(t, None)
            elif kind == "rename_table":
                tables.discard(t)
                tables.add(op["new_name"])
                cols[op["new_name"]] = cols.pop(t, set())
            elif kind == "add_column" and op.get("column"):
                cols.setdefault(t, set()).add(op["column"])
            elif kind == "drop_column" and op.get("column"):
                cols.get(t, set()).discard(op["column"])
            elif kind == "alter_column" and op.get("new_name"):
                cols.get(t, set()).discard(op["column"])
                cols.setdefault(t, set()).add(op["new_name"])
    return frozenset(tables), {t: frozenset(c) for t, c in cols.items() if t in tables}


# Table -> the revision that creates it and the lowest release that has it ("3.2.0").
TABLE_REVISION: dict[str, str] = {}
for _rev in REVISIONS:
    for _op in _INFO[_rev]["ops"]:
        if _op["op"] == "create_table":
            TABLE_REVISION.setdefault(_op["table"], _rev)
TABLE_SINCE: dict[str, str] = {t: RELEASES[0] for t in _DATA["initial_tables"]}
TABLE_SINCE.update({t: _INFO[r]["first_release"] for t, r in TABLE_REVISION.items()})

# Columns MLflow computes in the database: never written, read only for validation.
GENERATED_COLUMNS = {"spans": {"duration_ns"}}

# Derived tables MLflow can rebuild (`mlflow db delete-trace-rollups` clears them).
DERIVED_TABLES = {"sql_trace_metric_daily_rollups", "sql_span_cost_daily_rollups",
                  "sql_assessment_daily_rollups", "sql_trace_rollup_rebuild_queue"}
# Server runtime state: copied by the `tables` layout (lossless), reported like any other table.
RUNTIME_TABLES = {"jobs", "job_locks", "scheduler_leases", "webhook_events"}

# Parents before children (mlflow-schema.md section 7), then the newer tables.
LOAD_ORDER = [
    "alembic_version", "workspaces", "experiments", "experiment_tags", "runs", "params", "tags",
    "metrics", "latest_metrics", "datasets", "inputs", "input_tags", "logged_models",
    "logged_model_params", "logged_model_tags", "logged_model_metrics", "trace_info", "trace_tags",
    "trace_request_metadata", "spans", "assessments", "entity_associations", "registered_models",
    "registered_model_tags", "model_versions", "model_version_tags", "registered_model_aliases",
]


# (child table, child column, parent table, parent column): the references MLflow relies on,
# all of them foreign keys in its SQL schema. A child row whose parent is missing is an orphan.
RELATIONS = [
    ("runs", "experiment_id", "experiments", "experiment_id"),
    ("experiment_tags", "experiment_id", "experiments", "experiment_id"),
    ("tags", "run_uuid", "runs", "run_uuid"),
    ("params", "run_uuid", "runs", "run_uuid"),
    ("metrics", "run_uuid", "runs", "run_uuid"),
    ("latest_metrics", "run_uuid", "runs", "run_uuid"),
    ("datasets", "experiment_id", "experiments", "experiment_id"),
    ("logged_models", "experiment_id", "experiments", "experiment_id"),
    ("logged_model_params", "model_id", "logged_models", "model_id"),
    ("logged_model_tags", "model_id", "logged_models", "model_id"),
    ("logged_model_metrics", "model_id", "logged_models", "model_id"),
    ("trace_info", "experiment_id", "experiments", "experiment_id"),
    ("trace_tags", "request_id", "trace_info", "request_id"),
    ("trace_request_metadata", "request_id", "trace_info", "request_id"),
    ("spans", "trace_id", "trace_info", "request_id"),
    ("assessments", "trace_id", "trace_info", "request_id"),
    ("registered_model_tags", "name", "registered_models", "name"),
    ("registered_model_aliases", "name", "registered_models", "name"),
    ("model_versions", "name", "registered_models", "name"),
    ("model_version_tags", "name", "registered_models", "name"),
]

ORPHAN_PARENT = {child: (ccol, parent, pcol) for child, ccol, parent, pcol in RELATIONS}



@dataclass(frozen=True)
class SchemaVersion:
    revision: str
    release: str          # the lowest release that has this revision (the one to install)
    release_range: str    # the releases that end on it ("3.0.1, 3.1.1 - 3.1.4"), or what it is
    is_head: bool         # some release ends on it (False: a development build or interrupted upgrade)

    def has_table(self, table: str) -> bool:
        return table in _schema_at(self.revision)[0]

    def has_column(self, table: str, column: str) -> bool:
        """`column` was created or added by the chain up to here (the initial tables' own
        columns are not listed in the data)."""
        return column in _schema_at(self.revision)[1].get(table, ())

    def at_least(self, release: str) -> bool:
        """The schema has everything release `release` (e.g. "3.10" or "3.10.1") has."""
        matching = [v for v in RELEASES if v == release or v.startswith(release + ".")]
        if not matching:
            raise ValueError(f"no MLflow release {release!r} in the data")
        return RELEASE_HEAD[matching[0]] in ancestors(self.revision)

    @property
    def expected_tables(self) -> set[str]:
        return set(_schema_at(self.revision)[0])

    def describe(self) -> str:
        if self.is_head:
            return f"MLflow {self.release_range} (alembic revision {self.revision})"
        older = self.release == RELEASES[0]
        what = "an MLflow 1.x schema" if older else "a development build or an interrupted upgrade"
        return f"a schema {self.release_range} (alembic revision {self.revision}: {what})"


def _between(revision: str, release: str) -> str:
    """How a revision that is no release's head is named: between which heads it lies."""
    below = [h for h in _RELEASES_BY_HEAD if h != revision and h in ancestors(revision)]
    prev = max(below, key=revision_index) if below else None
    target = RELEASE_HEAD[release]
    steps = [r for r in REVISIONS if r in ancestors(target) and (prev is None or r not in ancestors(prev))]
    where = f"step {steps.index(revision) + 1} of {len(steps)}"
    if prev is None:
        return f"older than MLflow {release}, {where} towards its {target}"
    return (f"between MLflow {release}'s revisions, {where} from {prev} (MLflow "
            f"{RELEASE_RANGE_BY_HEAD[prev]}) to {target} (MLflow {release})")


def schema_version(revision: str) -> SchemaVersion:
    """The schema at an alembic revision; unknown revisions are refused with what we know."""
    if revision not in _INFO:
        raise SchemaError(
            f"Unknown alembic revision {revision!r}: not part of MLflow {RELEASES[0]} {DASH} "
            f"{RELEASES[-1]} (newest known: {HEAD}, MLflow {RELEASE_RANGE_BY_HEAD[HEAD]})",
            table="alembic_version",
            hint="the database was made by a newer MLflow or a fork; upgrade dbmigrate")
    release = _INFO[revision]["first_release"]
    is_head = revision in RELEASE_RANGE_BY_HEAD
    rng = RELEASE_RANGE_BY_HEAD[revision] if is_head else _between(revision, release)
    return SchemaVersion(revision=revision, release=release, release_range=rng, is_head=is_head)


def revision_index(revision: str) -> int:
    return _INDEX[revision]


def is_upgrade(source: str, target: str) -> bool:
    """`target` is `source` or a revision built on it (what alembic can upgrade `source` to)."""
    return source in ancestors(target)


def load_rank(table: str) -> tuple[int, str]:
    """Sort key: parents before children; unknown tables after the known ones, by name."""
    try:
        return (LOAD_ORDER.index(table), table)
    except ValueError:
        return (len(LOAD_ORDER), table)
