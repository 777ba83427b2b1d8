"""Plan, copy, index, verify: the `migrate` command as a library function.

STEP lines go to the `dbmigrate` logger; the caller (the CLI) decides where they appear.
A dry run is this same code with a recording writer: the plan, reads and conversions are real,
only the target is left untouched.
"""

from __future__ import annotations

import logging
import time

from dbmigrate.config import Config
from dbmigrate.errors import ConfigError, Interrupted, MigrationError
from dbmigrate.report import Report
from dbmigrate.uri import DatabaseURI, mask_uri, parse_uri, same_database

log = logging.getLogger("dbmigrate")


# The phase a STEP line begins, by its first word; the report gives each phase its own seconds.
PHASES = {"connect": "connect", "plan": "plan", "prepare": "schema", "read": "plan", "copy": "copy",
          "build": "indexes", "keys": "indexes", "verify": "verify", "upgrade": "upgrade"}


class Steps:
    """Numbered STEP lines; also times the phases they begin (connect, plan, schema, copy,
    indexes, verify), each until the next STEP line."""

    def __init__(self, total: int):
        self.n, self.total = 0, total
        self.times: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def __call__(self, text: str, *args):
        self.n += 1
        self._stop()
        word = text.split(" ", 1)[0].rstrip(":")
        if word in PHASES:
            self._current = (PHASES[word], time.perf_counter())
        log.info(f"STEP {self.n}/{self.total} {text}", *args)

    def _stop(self) -> None:
        if self._current is not None:
            name, t0 = self._current
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0
            self._current = None

    def phases(self) -> dict[str, float]:
        """Seconds per phase so far (a phase cut short by an error counts until now)."""
        self._stop()
        return dict(self.times)


def open_endpoints(cfg: Config) -> tuple[DatabaseURI, DatabaseURI]:
    src = parse_uri(cfg.source, role="source")
    dst = parse_uri(cfg.target, role="target")
    if same_database(src, dst):
        raise ConfigError(f"The source and the target are the same database ({src.masked} and {dst.masked})",
                          hint="point --target at another database; dbmigrate never writes to its source")
    if cfg.layout and dst.kind != "mongodb" and src.kind != "mongodb":
        raise ConfigError(f"--layout applies to MongoDB targets; the target {dst.masked} is {dst.kind}")
    if getattr(cfg, "target_revision", None) and dst.kind in ("mongodb", "parquet"):
        what = ("MongoDB, which has no MLflow schema revision (its marker document records the source's "
                "revision)") if dst.kind == "mongodb" else "a Parquet snapshot, which keeps the source's revision"
        raise ConfigError(f"--target-revision applies to SQL targets; the target {dst.masked} is {what}",
                          hint="leave --target-revision out")
    return src, dst


def layout_name(cfg: Config, dst: DatabaseURI) -> str:
    if dst.kind == "mongodb":
        return cfg.layout or "mlflow-mongodb"
    return "Parquet snapshot" if dst.kind == "parquet" else f"SQL ({dst.kind})"


def migrate(cfg: Config) -> Report:
    """Copy the source into the target, build indexes, verify. Never raises for data problems:
    the report carries the error and a non-zero exit code."""
    t_start = time.perf_counter()
    report = Report(command="migrate" if not cfg.dry_run else "migrate --dry-run",
                    source=mask_uri(cfg.source), target=mask_uri(cfg.target), layout="", dry_run=cfg.dry_run,
                    settings=settings_of(cfg))
    steps = Steps(6)
    dst_uri = None
    try:
        src_uri, dst_uri = open_endpoints(cfg)
        report.layout = layout_name(cfg, dst_uri)
        from dbmigrate.orchestrator import run
        run(cfg, src_uri, dst_uri, report, steps)
    except MigrationError as exc:
        report.error = exc.describe()
        report.exit_code = exc.exit_code
        log.error("%s", report.error)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (the CLI turns it into Interrupted)
        sig = exc if isinstance(exc, Interrupted) else Interrupted(2)
        report.error = f"interrupted by {sig.name}" + ("" if cfg.dry_run or dst_uri is None
                                                        else interrupted_progress(cfg, dst_uri))
        finish(report, t_start)
        report.status, report.exit_code = "INTERRUPTED", sig.exit_code
        return report
    finally:
        report.phases = steps.phases()  # the interrupted report's too (set before it is printed)
    return finish(report, t_start)


def interrupted_progress(cfg: Config, dst_uri: DatabaseURI) -> str:
    """What an interrupted run had durably copied, from its checkpoint catalog."""
    from dbmigrate.state import State, state_path
    path = state_path(cfg.state_dir, dst_uri.masked)
    if not path.exists():
        return ": nothing was copied yet"
    state = State.read_only(path)
    try:
        done, total = state.progress()
        rows = sum(state.part_rows().values())
    finally:
        state.close()
    return (f": {done} of {total} parts ({rows:,} rows) were copied and checkpointed; "
            "rerun with --resume to continue, or --restart to start over")


def finish(report: Report, t_start: float) -> Report:
    """Seconds, status and exit code of a finished command (migrate or verify): an error keeps
    its own code (1 if it had none), a failed verification is 7."""
    report.seconds = time.perf_counter() - t_start
    code = report.exit_code
    report.finish()
    if report.error:
        report.exit_code = code if code != 0 else 1
    elif report.status == "FAILED":
        report.exit_code = 7
    return report


def settings_of(cfg: Config) -> dict:
    return {"batch_size": cfg.batch_size, "verify": cfg.verify, "sample_size": cfg.sample_size,
            "layout": cfg.layout or "mlflow-mongodb", "dry_run": cfg.dry_run, "progress": cfg.progress,
            "skip_unmapped": cfg.skip_unmapped,
            "log_level": cfg.log_level, "report_json": cfg.report_json}


