"""A source that is not a SQL database (a Parquet snapshot, an MLflow FileStore) for an end that
reads its source with SQL (the MongoDB end: its layouts group, join and check references with
queries): the rows are first copied by the same orchestrator into a temporary SQLite file with
MLflow's schema at the source's revision, verified in full there, and the end reads that file.

SQLite's INTEGER is 64-bit, so 18- and 19-digit FileStore experiment ids keep their values. A
value SQLite cannot hold exactly is refused by its writer, naming the table, column and key (a
metric -0.0 becomes 0.0, counted, as MLflow's SQL store writes it): a staged copy is exact or the
run stops. The file is removed when the run ends, whatever the outcome."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import replace

from dbmigrate.config import Config
from dbmigrate.errors import MigrationError
from dbmigrate.report import Report
from dbmigrate.uri import DatabaseURI, parse_uri

log = logging.getLogger("dbmigrate")


class Staged:
    """The SQLite copy of a source and the SqlSource reading it; `close` removes the file."""

    def __init__(self, directory: str, source):
        self.directory, self.source = directory, source

    def close(self) -> None:
        try:
            self.source.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def stage(cfg: Config, src_uri: DatabaseURI, report: Report) -> Staged:
    from dbmigrate.orchestrator import run
    from dbmigrate.pipeline import Steps
    from dbmigrate.readers.sql import SqlSource
    directory = tempfile.mkdtemp(prefix="dbmigrate-stage-", dir=cfg.state_dir if cfg.state_dir and
                                 os.path.isdir(cfg.state_dir) else None)
    try:
        path = os.path.join(directory, "stage.db")
        dst = parse_uri(f"sqlite:///{path}", role="target")
        inner = Report(command="stage", source=report.source, target=dst.masked, layout="SQL (sqlite)")
        staged_cfg = replace(cfg, target=dst.raw, dry_run=False, resume=False, restart=False, verify="full",
                             target_revision=None, progress=False, state_dir=directory, report_json=None)
        log.info("staging %s in %s (the MongoDB end reads its source with SQL)", report.source, path)
        run(staged_cfg, src_uri, dst, inner, Steps(6))
        inner.finish()
        if inner.verification is None or not inner.verification.passed:
            raise MigrationError("The staged copy of the source failed verification: "
                                 + "; ".join(inner.verification.failures[:5] if inner.verification else []))
        report.notes.append(f"the source was staged in a temporary SQLite file ({inner.copy_rows or 0:,} rows, "
                            "verified in full) and read from there" + (
                                "; " + "; ".join(inner.notes) if inner.notes else ""))
        source = SqlSource(dst, connect_timeout=cfg.connect_timeout).open()
        return Staged(directory, source)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
