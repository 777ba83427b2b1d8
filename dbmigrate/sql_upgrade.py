"""``--target-revision REV|head``: a SQL target that ends at a newer MLflow schema than the source.

The target is made exactly as `mlflow db upgrade` would make an upgraded copy of the source: the
schema is created at the *source's* revision, the rows are copied and verified there, and then
MLflow's own alembic migrations (the installed MLflow's, in a child process, as for the schema
creation in sql_schema.py) upgrade the target to the requested revision, data migrations included
(the 3.10 workspace re-keying, the 3.17 analytics backfill, 3.18's issue_categories, ...).

``head`` is the newest revision the installed MLflow knows. Everything is checked before anything
is written: the revision must be one dbmigrate's release data knows, the installed MLflow must
reach it along MLflow's own chain, and it must be the source's revision or one built on it. A
downgrade or an unknown revision is a SchemaError (exit code 4) naming both revisions.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from dbmigrate.errors import MigrationError, SchemaError
from dbmigrate.mlflow_schema import is_upgrade, schema_version
from dbmigrate.uri import mask_text

log = logging.getLogger(__name__)
_PREFIX = "DBMIGRATE_RESULT "


def resolve(requested: str, source_revision: str, url: str) -> str:
    """The revision the target ends at: `requested` ("head" = the installed MLflow's newest), checked
    against the source's revision and the installed MLflow (in a child process; nothing is
    written). SchemaError for an unknown revision or a downgrade, ConfigError without MLflow."""
    requested = requested.strip()
    src = schema_version(source_revision)
    if requested.lower() != "head":
        try:
            schema_version(requested)
        except SchemaError as exc:
            raise SchemaError(f"--target-revision {requested}: {exc.message}; the source is at "
                              f"{src.describe()}", table="alembic_version",
                              hint="give head or an alembic revision from dbmigrate's MLflow release "
                                   "data (dbmigrate/mlflow_data/revisions.json)") from None
    target = _child(["resolve", requested], url)
    tv = schema_version(target)
    if not is_upgrade(source_revision, target):
        raise SchemaError(
            f"--target-revision {requested}: the target cannot end at {tv.describe()}, which is not "
            f"an upgrade of the source's {src.describe()}: MLflow's migrations only go forward",
            table="alembic_version",
            hint=f"give a revision at or after {source_revision} (or head), or leave "
                 "--target-revision out to keep the source's revision")
    return target


def upgrade(url: str, source_revision: str, target_revision: str) -> None:
    """Run the installed MLflow's alembic upgrade on the target, from the source's revision (where
    the copy left it) to `target_revision`, in a child process; then check the result."""
    log.info("Upgrading the target from %s to %s with MLflow's migrations",
             schema_version(source_revision).describe(), schema_version(target_revision).describe())
    _child(["upgrade", source_revision, target_revision], url)
    from dbmigrate.sql_schema import inspect_target
    state = inspect_target(url)
    missing = schema_version(target_revision).expected_tables - state.tables
    if state.revision != target_revision or missing:
        raise SchemaError(f"After MLflow's upgrade the target is at revision {state.revision}"
                          + (f" and lacks {', '.join(sorted(missing))}" if missing else "")
                          + f", not at {target_revision}", table="alembic_version")


def _child(args: list[str], url: str) -> str:
    """python -m dbmigrate.sql_upgrade ARGS with the URL in the environment (never on the command
    line); an error comes back as the same MigrationError subclass, message, table and hint."""
    env = dict(os.environ, DBMIGRATE_SCHEMA_URL=url)
    res = subprocess.run([sys.executable, "-m", "dbmigrate.sql_upgrade", *args], env=env,
                         capture_output=True, text=True)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(_PREFIX)]
    if res.returncode == 0 and lines:
        return json.loads(lines[-1][len(_PREFIX):])["result"]
    errors_ = [ln for ln in res.stdout.splitlines() if ln.startswith("DBMIGRATE_ERROR ")]
    if not errors_:
        raise SchemaError(f"MLflow's migrations ({args[0]}) failed: " + mask_text(
            (res.stderr.strip().splitlines() or ["(no output)"])[-1]))
    err = json.loads(errors_[-1].removeprefix("DBMIGRATE_ERROR "))
    from dbmigrate import errors
    cls = getattr(errors, err["type"], SchemaError)
    if not (isinstance(cls, type) and issubclass(cls, errors.MigrationError)):
        cls = SchemaError
    raise cls(err["message"], table=err.get("table"), hint=err.get("hint"))


# ----------------------------------------------------------------------------- child side
def _resolve_in_child(requested: str) -> str:
    from dbmigrate import sql_schema
    target = sql_schema.installed_head() if requested.lower() == "head" else requested
    sql_schema._check_installed_mlflow_knows(target)  # SchemaError/ConfigError with a hint
    return target


def _upgrade_in_child(url: str, source_revision: str, target_revision: str) -> str:
    import sqlalchemy as sa

    from dbmigrate import sql_schema
    db_utils, command, _sd, _ib, version = sql_schema._check_installed_mlflow_knows(target_revision)
    state = sql_schema.inspect_target(url)
    if state.revision != source_revision:
        raise SchemaError(f"The target is at revision {state.revision}, not at the source's "
                          f"{source_revision} that the copy left it at", table="alembic_version")
    engine = db_utils.create_sqlalchemy_engine(sql_schema._mlflow_url(url))
    try:
        sql_schema.alembic_upgrade(db_utils, command, engine, target_revision)
    except (sa.exc.SQLAlchemyError, Exception) as exc:  # noqa: BLE001 - reported with its cause
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise SchemaError(
            f"MLflow {version}'s migrations failed while upgrading the target from "
            f"{source_revision} to {target_revision}: {type(exc).__name__}: "
            f"{mask_text(detail[0] if detail else '')}",
            hint="the copy at the source's revision was complete and verified; the target may be "
                 "left partly upgraded (MySQL/MariaDB cannot roll back DDL): drop it and run again") from None
    finally:
        engine.dispose()
    return version


def _main(argv: list[str]) -> int:
    try:
        if argv[0] == "resolve":
            result = _resolve_in_child(argv[1])
        else:
            result = _upgrade_in_child(os.environ["DBMIGRATE_SCHEMA_URL"], argv[1], argv[2])
    except MigrationError as exc:
        print("DBMIGRATE_ERROR " + json.dumps({"type": type(exc).__name__, "message": exc.message,
                                               "table": exc.table, "hint": exc.hint}), flush=True)
        return 1
    print(_PREFIX + json.dumps({"result": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
