"""Command line: `dbmigrate migrate|verify|analyze`, and the `run_migration.py` entry point.

Each command calls the library function of the same name. Only this module configures logging.
Exit codes: 0 migrated and verified (or a clean dry run); 1 verification failed or unexpected
error; 2 bad configuration; 3 cannot connect; 4 not an MLflow database / unknown version;
5 target not empty; 6 a value the target cannot hold; 7 verification found differences.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dbmigrate import __version__
from dbmigrate import config as config_mod
from dbmigrate.errors import MigrationError
from dbmigrate.uri import mask_text

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


def add_common(p: argparse.ArgumentParser, *, legacy: bool = False) -> None:
    conn = p.add_argument_group("connections")
    if legacy:
        conn.add_argument("--postgres-uri", "--source", dest="source", metavar="URI",
                          help="source database URI (PostgreSQL, MySQL/MariaDB or SQLite); "
                               "env DBMIGRATE_SOURCE_URI")
        conn.add_argument("--mongodb-uri", "--target", dest="target", metavar="URI",
                          help="target MongoDB URI naming the database; env DBMIGRATE_TARGET_URI")
    else:
        conn.add_argument("--source", metavar="URI",
                          help="source database URI (PostgreSQL, MySQL/MariaDB or SQLite); "
                               "env DBMIGRATE_SOURCE_URI")
        conn.add_argument("--target", metavar="URI",
                          help="target MongoDB URI naming the database; env DBMIGRATE_TARGET_URI")
    conn.add_argument("--config", metavar="FILE", help="JSON config file (see migration_config.example.json)")
    opt = p.add_argument_group("options")
    opt.add_argument("--layout", choices=config_mod.LAYOUTS,
                     help="MongoDB layout: mlflow-mongodb (default; what the mlflow-mongodb store "
                          "reads) or tables (lossless: one collection per SQL table)")
    opt.add_argument("--skip-unmapped", action="store_const", const=True,
                     help="mlflow-mongodb layout: do not copy the tables it has no place for "
                          "(default: copied in tables form as mlflow_sql.<table>); they are reported")
    opt.add_argument("--batch-size", type=int, metavar="N",
                     help="rows per read batch and documents per write batch (default 10000)")
    opt.add_argument("--workers", type=int, metavar="N",
                     help="worker processes copying key ranges of the big tables in parallel "
                          "(default: one per CPU; PostgreSQL sources only, others use one)")
    opt.add_argument("--verify", choices=config_mod.VERIFY_LEVELS,
                     help="verification after the copy: none, counts (counts + references), "
                          "sample (default: also the first --sample-size documents of each "
                          "collection field by field) or full (every document)")
    opt.add_argument("--sample-size", type=int, metavar="N", help="documents per collection for --verify sample (default 1000)")
    opt.add_argument("--report-json", metavar="PATH", help="also write the report as JSON to PATH")
    opt.add_argument("--orphans", choices=["copy", "skip"],
                     help="rows whose parent row does not exist in the source (a metric of a missing "
                          "run, ...): copy them as they are (default; MongoDB targets) or skip them "
                          "(needed for SQL targets, whose foreign keys refuse them); reported either way")
    opt.add_argument("--target-flavor", choices=["auto", "mongodb", "cosmos"],
                     help="cosmos: Azure Cosmos DB for MongoDB (unique indexes before loading, smaller "
                          "batches, throttling honoured); auto (default) detects it from the URI")
    opt.add_argument("--target-revision", metavar="REV|head",
                     help="SQL targets: after the copy is verified at the source's MLflow schema "
                          "revision, upgrade the target to REV (head: the installed MLflow's newest) "
                          "with MLflow's own migrations, as `mlflow db upgrade` would")
    opt.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                     help="no progress bars (they are off anyway when stderr is not a terminal)")
    opt.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                     help="log detail on stderr (default INFO)")


def add_resume(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("checkpoints")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--resume", action="store_const", const=True,
                   help="continue an interrupted migration into the same target: parts already "
                        "copied are kept, the others are copied (refused if the setup differs)")
    x.add_argument("--restart", action="store_const", const=True,
                   help="start an interrupted migration over: what it wrote to the target is removed")
    g.add_argument("--state-dir", metavar="DIR",
                   help="where the checkpoint catalog is kept (default .dbmigrate-state; env "
                        "DBMIGRATE_STATE_DIR)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dbmigrate", description="Copy an MLflow tracking + registry database to MongoDB "
        "(layouts mlflow-mongodb and tables), keeping every id, timestamp and value, and verify it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dbmigrate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    m = sub.add_parser("migrate", help="copy source to target, build indexes, verify",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(m)
    add_resume(m)
    m.add_argument("--dry-run", action="store_const", const=True,
                   help="analyse and run the plan without writing anything to the target")
    v = sub.add_parser("verify", help="compare a target with its source (counts, references, values)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(v)
    a = sub.add_parser("analyze", help="the dry run: what would go where, problems, estimated time",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(a)
    return parser


def build_legacy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_migration.py", description="Migrate an MLflow database (PostgreSQL, MySQL/MariaDB, "
        "SQLite) into MongoDB. Same as `dbmigrate migrate`.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"dbmigrate {__version__}")
    add_common(p, legacy=True)
    add_resume(p)
    p.add_argument("--dry-run", action="store_const", const=True,
                   help="analyse and run the plan without writing anything to the target")
    return p


CLI_FIELDS = ("source", "target", "layout", "batch_size", "workers", "verify", "sample_size",
              "report_json", "progress", "log_level", "dry_run", "skip_unmapped", "resume", "restart",
              "state_dir", "orphans", "target_flavor", "target_revision")


def run(args: argparse.Namespace, command: str) -> int:
    cli = {f: getattr(args, f, None) for f in CLI_FIELDS}
    if command == "analyze":
        cli["dry_run"] = True
    try:
        cfg = config_mod.build(cli, getattr(args, "config", None))
    except MigrationError as exc:
        setup_logging("INFO")
        print(f"error: {exc.describe()}", file=sys.stderr)
        return exc.exit_code
    setup_logging(cfg.log_level)
    try:
        if command == "verify":
            from dbmigrate.verify import verify
            report = verify(cfg)
        else:
            from dbmigrate.pipeline import migrate
            report = migrate(cfg)
    except MigrationError as exc:
        print(f"error: {exc.describe()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
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
