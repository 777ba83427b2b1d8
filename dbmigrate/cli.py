"""Command line: `dbmigrate migrate|verify|analyze`, and the `run_migration.py` entry point.

Each command calls the library function of the same name. Only this module configures logging.
Exit codes: 0 migrated and verified (or a clean dry run); 1 verification failed or unexpected
error; 2 bad configuration; 3 cannot connect; 4 not an MLflow database / unknown version;
5 target not empty; 6 a value the target cannot hold; 7 verification found differences.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import textwrap
from pathlib import Path

from dbmigrate import __version__
from dbmigrate import config as config_mod
from dbmigrate.errors import Interrupted, MigrationError
from dbmigrate.uri import SCHEME_NAMES, mask_text

EPILOG = """\
URIs: postgresql://user:pw@host:5432/db (plain postgresql:// picks the installed driver),
mysql://user:pw@host/db (or mariadb://), sqlite:////abs/path.db, mongodb://host:27017/db
(the MongoDB URI must name the database). Prefer DBMIGRATE_SOURCE_URI / DBMIGRATE_TARGET_URI
to keep passwords off the command line. Passwords never appear in output.

Exit codes: 0 success, 2 bad configuration, 3 connection failed, 4 not an MLflow database or
unknown version, 5 target not empty, 6 value the target cannot hold, 7 verification failed,
1 any other error.
"""


class _MaskingFilter(logging.Filter):
    def filter(self, record):
        record.msg = mask_text(record.getMessage())
        record.args = ()
        return True


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    handler.addFilter(_MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("dbmigrate").setLevel(level.upper())


def _on_sigterm(signum, frame):
    """SIGTERM stops the run like Ctrl-C does: workers stopped, report written, exit 143."""
    raise Interrupted(signum)


URI_HELP = ("{role} database URI: " + ", ".join(SCHEME_NAMES) + "; env DBMIGRATE_{ROLE}_URI")

# Every flag once: (names, argparse keywords, group, the commands that take it). `--help` of
# each command lists exactly its own; the README's flag table says the same (a test checks).
MIGRATE, ANALYZE, VERIFY, SYNC = "migrate", "analyze", "verify", "sync"
ALL = (MIGRATE, ANALYZE, VERIFY)
FLAGS = [
    (("--source",), dict(metavar="URI", help=URI_HELP.format(role="source", ROLE="SOURCE")),
     "connections", ALL + (SYNC,)),
    (("--target",), dict(metavar="URI", help=URI_HELP.format(role="target", ROLE="TARGET")),
     "connections", ALL + (SYNC,)),
    (("--config",), dict(metavar="FILE", help="JSON config file (see migration_config.example.json)"),
     "connections", ALL + (SYNC,)),
    (("--layout",), dict(choices=config_mod.LAYOUTS, help="MongoDB target layout: mlflow-mongodb (default; "
                         "what the mlflow-mongodb store reads) or tables (lossless: one collection per SQL table)"),
     "target", ALL),
    (("--skip-unmapped",), dict(action="store_const", const=True, help="mlflow-mongodb layout: do not copy "
                                "the tables it has no place for (default: copied in tables form as "
                                "mlflow_sql.<table>); they are reported"), "target", ALL),
    (("--target-flavor",), dict(choices=["auto", "mongodb", "cosmos"], help="cosmos: Azure Cosmos DB for "
                                "MongoDB (unique indexes before loading, smaller batches, throttling honoured); "
                                "auto (default) detects it from the URI"), "target", ALL),
    (("--orphans",), dict(choices=["copy", "skip"], help="rows whose parent row does not exist in the "
                          "source (a metric of a missing run, ...): copy them as they are (default; MongoDB "
                          "targets) or skip them (needed for SQL targets, whose foreign keys refuse them); "
                          "reported either way"), "target", ALL + (SYNC,)),
    (("--target-revision",), dict(metavar="REV|head", help="SQL targets: after the copy is verified at the "
                                  "source's MLflow schema revision, upgrade the target to REV (head: the "
                                  "installed MLflow's newest) with MLflow's own migrations, as `mlflow db "
                                  "upgrade` would"), "target", (MIGRATE, ANALYZE)),
    (("--experiments",), dict(metavar="ID|NAME,...", help="copy only these experiments (ids or names) with "
                              "everything in them and what that needs (see --runs)"), "selection", (MIGRATE, ANALYZE)),
    (("--runs",), dict(metavar="ID,...", help="copy only these runs, with their experiment, metrics, params, "
                       "tags, inputs, datasets, logged models and linked traces"), "selection", (MIGRATE, ANALYZE)),
    (("--models",), dict(metavar="NAME[:VERSION|@ALIAS],...", help="copy only these registered models (all "
                         "versions, one version, or the version an alias points at), with each version's run, "
                         "logged model and aliases"), "selection", (MIGRATE, ANALYZE)),
    (("--since",), dict(metavar="TIMESTAMP", help="copy only the runs started or ended at or after TIMESTAMP "
                        "(ISO 8601, UTC unless it says otherwise, or epoch ms), with their closure"),
     "selection", (MIGRATE, ANALYZE)),
    (("--with-parents",), dict(action="store_const", const=True, help="selected nested runs also bring their "
                               "parent runs (mlflow.parentRunId), up to the top"), "selection", (MIGRATE, ANALYZE)),
    (("--rewrite-artifact-uri",), dict(metavar="OLD_PREFIX=NEW_PREFIX", action="append", help="rewrite artifact "
                                       "locations starting with OLD_PREFIX (experiments, runs, model versions, "
                                       "logged models, trace artifact tags); repeatable, the first matching rule "
                                       "wins; counted per column in the report"), "target", (MIGRATE, ANALYZE)),
    (("--merge",), dict(action="store_const", const=True, help="copy into a target that already holds MLflow "
                        "data (same schema revision): identical rows are skipped, different ones are conflicts "
                        "(--on-conflict); nothing else on the target changes"), "merge", (MIGRATE, ANALYZE)),
    (("--on-conflict",), dict(choices=["fail", "skip", "overwrite"], help="--merge: a row whose key the target "
                              "holds with other values: fail (default: list every conflict, write nothing), "
                              "skip (keep the target's) or overwrite (the source's wins)"), "merge", (MIGRATE, ANALYZE)),
    (("--rename-experiment",), dict(metavar="OLD=NEW", action="append", help="write experiment OLD under the "
                                    "name NEW (repeatable)"), "merge", (MIGRATE, ANALYZE)),
    (("--rename-model",), dict(metavar="OLD=NEW", action="append", help="write registered model OLD (its "
                               "versions, tags, aliases) under the name NEW (repeatable)"), "merge", (MIGRATE, ANALYZE)),
    (("--batch-size",), dict(type=int, metavar="N", help="rows per read batch and documents per write "
                             "batch (default 10000)"), "copy", ALL + (SYNC,)),
    (("--workers",), dict(type=int, metavar="N", help="worker processes copying key ranges of the big "
                          "tables in parallel (default: one per CPU; PostgreSQL sources only, others use "
                          "one); --executor dask: parts running at once on the cluster (default: its "
                          "worker threads)"), "copy", (MIGRATE, ANALYZE)),
    (("--executor",), dict(choices=config_mod.EXECUTORS, help="where the parts are copied: local (default: "
                           "worker processes on this machine) or dask (the workers of a Dask cluster; PostgreSQL "
                           "sources and server targets only; needs dbmigrate[dask])"), "copy", (MIGRATE, ANALYZE)),
    (("--scheduler",), dict(metavar="tcp://HOST:PORT", help="--executor dask: the Dask scheduler to run the "
                            "parts on (default: a LocalCluster started for the run, --workers processes)"),
     "copy", (MIGRATE, ANALYZE)),
    (("--dry-run",), dict(action="store_const", const=True, help="analyse and run the plan without "
                          "writing anything to the target (the same as `dbmigrate analyze`)"),
     "copy", (MIGRATE,)),
    (("--verify",), dict(choices=config_mod.VERIFY_LEVELS, help="depth of verification: none, counts "
                         "(counts + references), sample (default: also the first --sample-size documents of "
                         "each collection field by field) or full (every document); verify: none = counts"),
     "verification", (MIGRATE, VERIFY)),
    (("--sample-size",), dict(type=int, metavar="N", help="documents per collection for --verify sample "
                              "(default 1000)"), "verification", (MIGRATE, VERIFY)),
    (("--report-json",), dict(metavar="PATH", help="also write the report as JSON to PATH"), "output", ALL + (SYNC,)),
    (("--no-progress",), dict(dest="progress", action="store_const", const=False, help="no progress bars "
                              "(they are off anyway when stderr is not a terminal)"), "output", ALL + (SYNC,)),
    (("--log-level",), dict(choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                            help="log detail on stderr (default INFO)"), "output", ALL + (SYNC,)),
]
RESUME_FLAGS = [
    (("--resume",), dict(action="store_const", const=True, help="continue an interrupted migration "
                         "into the same target: parts already copied are kept, the others are copied "
                         "(refused if the setup differs)")),
    (("--restart",), dict(action="store_const", const=True, help="start an interrupted migration over: "
                          "what it wrote to the target is removed")),
]
STATE_DIR_FLAG = (("--state-dir",), dict(metavar="DIR", help="where the checkpoint catalog is kept "
                                         "(default .dbmigrate-state; env DBMIGRATE_STATE_DIR)"))
GROUP_TITLES = {"connections": "connections", "target": "target layout and data",
                "copy": "copying", "verification": "verification", "output": "output",
                "selection": "selection (part of the source, with its closure)", "merge": "merge into a live target",
                "checkpoints": "checkpoints"}
# run_migration.py's other names for --source / --target
LEGACY_NAMES = {"--source": "--postgres-uri", "--target": "--mongodb-uri"}


def add_flags(p: argparse.ArgumentParser, command: str, *, legacy: bool = False) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}

    def group(name):
        if name not in groups:
            groups[name] = p.add_argument_group(GROUP_TITLES[name])
        return groups[name]
    for names, kw, gname, commands in FLAGS:
        if command not in commands:
            continue
        if legacy and names[0] in LEGACY_NAMES:
            names = (LEGACY_NAMES[names[0]], *names)
            kw = {**kw, "dest": names[1].lstrip("-")}
        group(gname).add_argument(*names, **kw)
    if command in (MIGRATE, ANALYZE):
        g = group("checkpoints")
        x = g.add_mutually_exclusive_group()
        for names, kw in RESUME_FLAGS:
            x.add_argument(*names, **kw)
        g.add_argument(*STATE_DIR_FLAG[0], **STATE_DIR_FLAG[1])


def command_flags(command: str) -> set[str]:
    """The flags `command` takes (for the README check)."""
    p = argparse.ArgumentParser(add_help=False)
    add_flags(p, command)
    return {o for a in p._actions for o in a.option_strings}


DESCRIPTION = ("Copy an MLflow tracking + model-registry database between PostgreSQL, MySQL/MariaDB, "
               "SQLite and MongoDB (layouts mlflow-mongodb and tables), keeping every id, timestamp and "
               "value, and verify the copy.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dbmigrate", description=textwrap.fill(DESCRIPTION, 79), epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dbmigrate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command, text in ((MIGRATE, "copy source to target, build indexes, verify"),
                          (VERIFY, "compare a target with its source (counts, references, values); writes nothing"),
                          (ANALYZE, "the dry run: what would go where, problems, estimated time; writes nothing"),
                          (SYNC, "after a migration: copy only what changed on the source since (SQL ends), "
                                 "comparing per-key-range checksums")):
        p = sub.add_parser(command, help=text, description=text, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_flags(p, command)
    return parser


def build_legacy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_migration.py", description=textwrap.fill(
            DESCRIPTION + " The same as `dbmigrate migrate`; --postgres-uri and --mongodb-uri are other "
            "names for --source and --target.", 79), epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"dbmigrate {__version__}")
    add_flags(p, MIGRATE, legacy=True)
    return p


CLI_FIELDS = ("source", "target", "layout", "batch_size", "workers", "verify", "sample_size",
              "report_json", "progress", "log_level", "dry_run", "skip_unmapped", "resume", "restart",
              "state_dir", "orphans", "target_flavor", "target_revision", "experiments", "runs", "models",
              "since", "with_parents", "rewrite_artifact_uri", "merge", "on_conflict", "rename_experiment",
              "rename_model", "executor", "scheduler")


def run(args: argparse.Namespace, command: str) -> int:
    cli = {f: getattr(args, f, None) for f in CLI_FIELDS}
    for f in ("rewrite_artifact_uri", "rename_experiment", "rename_model"):  # repeatable: lists
        if cli[f] is not None:
            cli[f] = tuple(cli[f])

    if command == "analyze":
        cli["dry_run"] = True
    try:
        cfg = config_mod.build(cli, getattr(args, "config", None))
    except MigrationError as exc:
        setup_logging("INFO")
        print(f"error: {exc.describe()}", file=sys.stderr)
        return exc.exit_code
    setup_logging(cfg.log_level)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if command == "verify":
            from dbmigrate.verify import verify
            report = verify(cfg)
        elif command == "sync":
            from dbmigrate.sync import sync
            report = sync(cfg)
        else:
            from dbmigrate.pipeline import migrate
            report = migrate(cfg)
    except MigrationError as exc:
        print(f"error: {exc.describe()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else 130
        print(f"interrupted ({signal.Signals(code - 128).name})", file=sys.stderr)
        return code
    except Exception as exc:  # noqa: BLE001 - last resort: masked, one line, non-zero
        logging.getLogger("dbmigrate").debug("unexpected error", exc_info=True)
        print(f"error: unexpected {type(exc).__name__}: {mask_text(str(exc))}", file=sys.stderr)
        return 1
    print(report.to_text())
    if cfg.report_json:
        Path(cfg.report_json).write_text(report.to_json() + "\n", encoding="utf-8")
    return report.exit_code


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run(args, args.command)


def legacy_main(argv=None) -> int:
    args = build_legacy_parser().parse_args(argv)
    return run(args, "migrate")


if __name__ == "__main__":
    sys.exit(main())
