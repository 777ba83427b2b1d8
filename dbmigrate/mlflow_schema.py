"""What dbmigrate knows about MLflow's SQL schema: the alembic revision chain and the release each
revision belongs to, which tables exist at a revision, load order, generated and derived columns.

Facts from MLflow's own migrations (mlflow/store/db_migrations/versions), 2.0 to 3.18.0.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbmigrate.errors import SchemaError

# (release that first ships the revision, revisions in chain order). Linear chain.
_CHAIN: list[tuple[str, list[str]]] = [
    ("2.0", ["451aebb31d03", "90e64c465722", "181f10493468", "df50e92ffc5e", "7ac759974ad8",
             "89d4b8295536", "2b4d017a5e9b", "cfd24bdc0731", "0a8213491aaa", "728d730b5ebd",
             "27a6a02d2cf1", "84291f40a231", "a8c4a736bde6", "39d1c3be5f05", "c48cb773bb87",
             "bd07f7e963c5", "0c779009ac13", "cc1f77228345", "97727af70f4d"]),
    ("2.3", ["3500859a5d39"]),
    ("2.4", ["7f2a7d5fae7d"]),
    ("2.8", ["2d6e25af4d3e", "acf3f17fdcc7"]),
    ("2.13", ["867495a8f9d4"]),
    ("2.14", ["5b0e9adcef9c"]),
    ("2.15", ["4465047574b1"]),
    ("2.17", ["f5a4f2784254"]),
    ("2.18", ["0584bdc529eb"]),
    ("3.0", ["400f98739977", "6953534de441"]),
    ("3.2", ["bda7b8c39065", "cbc13b556ace", "770bee3ae1dd"]),
    ("3.3", ["a1b2c3d4e5f6", "de4033877273", "1a0cddfcaa16"]),
    ("3.4", ["534353b11cbc", "71994744cf8e"]),
    ("3.5", ["3da73c924c2f", "bf29a5ff90ea"]),
    ("3.8", ["1bd49d398cd23"]),
    ("3.9", ["b7c8d9e0f1a2", "5d2d30f0abce", "c9d4e5f6a7b8", "2c33131f4dae", "d3e4f5a6b7c8"]),
    ("3.10", ["d0e1f2a3b4c5", "c8d9e0f1a2b3", "1b5f0d9ad7c1"]),
    ("3.11", ["e1f2a3b4c5d6", "76601a5f987d", "c3d6457b6d8a"]),
    ("3.12", ["a5b4c3d2e1f0", "ae8bbe7743c9", "7d34483879f0"]),
    ("3.13", ["da6fb0208061"]),
    ("3.14", ["89d3d66ed43f", "b7e4c1a90f23"]),
    ("3.15", ["a8b9c0d1e2f3", "c1d2e3f4a5b6", "c3d9e7f1a2b4", "6f8d9c3b2a1e"]),
    ("3.16", ["1971f2d9a75b", "17e22815139b", "b7e2c1a4d9f3"]),
    ("3.17", ["75868b020152", "dc11669786a5"]),
    ("3.18", ["e7d1f4b2a9c6", "8b6ad64cb8f5", "f4a9b2c7d1e6"]),
]

# Releases that share a head share a schema: head -> the releases that end on it.
RELEASE_RANGE_BY_HEAD = {
    "97727af70f4d": "2.0 - 2.2", "3500859a5d39": "2.3", "7f2a7d5fae7d": "2.4 - 2.7",
    "acf3f17fdcc7": "2.8 - 2.12", "867495a8f9d4": "2.13", "5b0e9adcef9c": "2.14",
    "4465047574b1": "2.15 - 2.16", "f5a4f2784254": "2.17", "0584bdc529eb": "2.18 - 2.22",
    "6953534de441": "3.0 - 3.1", "770bee3ae1dd": "3.2", "1a0cddfcaa16": "3.3",
    "71994744cf8e": "3.4", "bf29a5ff90ea": "3.5 - 3.7", "1bd49d398cd23": "3.8",
    "d3e4f5a6b7c8": "3.9", "1b5f0d9ad7c1": "3.10", "c3d6457b6d8a": "3.11",
    "7d34483879f0": "3.12", "da6fb0208061": "3.13", "b7e4c1a90f23": "3.14",
    "6f8d9c3b2a1e": "3.15", "b7e2c1a4d9f3": "3.16", "dc11669786a5": "3.17",
    "f4a9b2c7d1e6": "3.18",
}

REVISIONS: list[str] = [rev for _, revs in _CHAIN for rev in revs]
_INDEX = {rev: i for i, rev in enumerate(REVISIONS)}
_RELEASE_OF = {rev: release for release, revs in _CHAIN for rev in revs}
HEAD = REVISIONS[-1]

# Table -> release that first has it (no table was dropped between 2.0 and 3.18).
TABLE_SINCE: dict[str, str] = {}
for _rel, _tables in [
    ("2.0", "experiments experiment_tags runs tags params metrics latest_metrics registered_models "
            "registered_model_tags model_versions model_version_tags"),
    ("2.3", "registered_model_aliases"),
    ("2.4", "datasets inputs input_tags"),
    ("2.13", "trace_info trace_tags trace_request_metadata"),
    ("3.0", "logged_models logged_model_params logged_model_tags logged_model_metrics"),
    ("3.2", "assessments"),
    ("3.3", "spans entity_associations webhooks webhook_events"),
    ("3.4", "evaluation_datasets evaluation_dataset_tags evaluation_dataset_records scorers "
            "scorer_versions"),
    ("3.5", "jobs"),
    ("3.8", "secrets endpoints model_definitions endpoint_model_mappings endpoint_bindings "
            "endpoint_tags"),
    ("3.9", "online_scoring_configs trace_metrics"),
    ("3.10", "span_metrics workspaces"),
    ("3.11", "budget_policies issues"),
    ("3.12", "guardrails guardrail_configs"),
    ("3.14", "label_schemas review_queues review_queue_items review_queue_label_schemas "
             "review_queue_users"),
    ("3.15", "mcp_servers mcp_server_versions mcp_server_tags mcp_server_version_tags "
             "mcp_server_aliases mcp_access_endpoints"),
    ("3.17", "job_locks scheduler_leases sql_trace_metric_daily_rollups sql_span_cost_daily_rollups "
             "sql_assessment_daily_rollups sql_trace_rollup_rebuild_queue"),
    ("3.18", "skills skill_versions skill_tags skill_version_tags skill_aliases issue_categories"),
]:
    for _t in _tables.split():
        TABLE_SINCE[_t] = _rel

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


def _release_key(release: str) -> tuple[int, ...]:
    return tuple(int(p) for p in release.split("."))


@dataclass(frozen=True)
class SchemaVersion:
    revision: str
    release: str          # first release that ships this revision
    release_range: str    # releases whose schema this is, e.g. "2.18 - 2.22"
    is_head: bool         # a release head (False: a development build or interrupted upgrade)

    def has_table(self, table: str) -> bool:
        since = TABLE_SINCE.get(table)
        return since is not None and _release_key(since) <= _release_key(self.release)

    def at_least(self, release: str) -> bool:
        return _release_key(self.release) >= _release_key(release)

    @property
    def expected_tables(self) -> set[str]:
        return {t for t in TABLE_SINCE if self.has_table(t)}

    def describe(self) -> str:
        kind = "" if self.is_head else " (between releases: a development build or interrupted upgrade)"
        return f"MLflow {self.release_range} (alembic revision {self.revision}){kind}"


def schema_version(revision: str) -> SchemaVersion:
    """The schema at an alembic revision; unknown revisions are refused with what we know."""
    if revision not in _INDEX:
        raise SchemaError(
            f"Unknown alembic revision {revision!r}: not part of MLflow 2.0 - 3.18 "
            f"(newest known: {HEAD}, MLflow 3.18.0)",
            table="alembic_version",
            hint="the database was made by a newer MLflow or a fork; upgrade dbmigrate")
    release = _RELEASE_OF[revision]
    is_head = revision in RELEASE_RANGE_BY_HEAD
    rng = RELEASE_RANGE_BY_HEAD.get(revision) or f"{release} (pre-release revision)"
    return SchemaVersion(revision=revision, release=release, release_range=rng, is_head=is_head)


def revision_index(revision: str) -> int:
    return _INDEX[revision]


def load_rank(table: str) -> tuple[int, str]:
    """Sort key: parents before children; unknown tables after the known ones, by name."""
    try:
        return (LOAD_ORDER.index(table), table)
    except ValueError:
        return (len(LOAD_ORDER), table)
