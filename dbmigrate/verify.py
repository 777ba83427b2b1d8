"""The `verify` command: compare an existing target with its source, without writing."""

from __future__ import annotations

import logging
import time

from dbmigrate.backends import open_source
from dbmigrate.config import Config
from dbmigrate.errors import MigrationError
from dbmigrate.pipeline import Steps, finish, layout_name, open_endpoints
from dbmigrate.plan import make_plan
from dbmigrate.readers.sql import SqlSource
from dbmigrate.report import Report
from dbmigrate.uri import mask_uri
from dbmigrate.verification.mongo import verify_mongo

log = logging.getLogger("dbmigrate")


def verify(cfg: Config) -> Report:
    t0 = time.perf_counter()
    report = Report(command="verify", source=mask_uri(cfg.source), target=mask_uri(cfg.target), layout="")
    try:
        src_uri, dst_uri = open_endpoints(cfg)
    except MigrationError as exc:
        report.error, report.exit_code = exc.describe(), exc.exit_code
        return finish(report, t0)
    layout = report.layout = layout_name(cfg, dst_uri)
    if cfg.verify == "none":
        from dataclasses import replace
        cfg = replace(cfg, verify="counts")
    if dst_uri.kind != "mongodb":
        from dbmigrate.verification.snapshot import verify_snapshot
        from dbmigrate.verification.sql import verify_sql
        try:
            (verify_snapshot if dst_uri.kind == "parquet" else verify_sql)(cfg, src_uri, dst_uri, report, Steps(3))
        except MigrationError as exc:
            report.error = exc.describe()
            report.exit_code = exc.exit_code
        return finish(report, t0)
    steps = Steps(3)
    source = writer = staged = None
    try:
        from dbmigrate.writers.mongo import MongoWriter
        steps("connect: source %s, target %s", src_uri.masked, dst_uri.masked)
        source = open_source(cfg, src_uri)
        if not isinstance(source, SqlSource):  # a snapshot, a FileStore: read through a staged SQLite copy
            from dbmigrate.staging import stage
            source.close()
            source = None
            staged = stage(cfg, src_uri, report)
            source = staged.source
        writer = MongoWriter(dst_uri, timeout_ms=cfg.connect_timeout * 1000)
        writer.ping()
        schema = source.inspect()
        source.orphans = cfg.orphans
        report.mlflow, report.revision = schema.version.describe(), schema.revision
        report.snapshot = source.snapshot_id or ""
        plan = make_plan(schema, layout, skip_unmapped=cfg.skip_unmapped)
        counts = {t: source.count(t, raw=True) for t in schema.tables}
        steps("verify (%s)", cfg.verify if cfg.verify != "none" else "counts")
        level = cfg.verify if cfg.verify != "none" else "counts"
        from dataclasses import replace
        from dbmigrate.progress import open_progress
        progress = open_progress(cfg.progress)
        try:
            report.verification = verify_mongo(plan, source, writer.db, replace(cfg, verify=level), counts,
                                               progress=progress)
        finally:
            progress.close()
        steps("done")
    except MigrationError as exc:
        report.error = exc.describe()
        report.exit_code = exc.exit_code
    finally:
        if source is not None:
            source.close()
        if staged is not None:
            staged.close()
        if writer is not None:
            writer.close()
    return finish(report, t0)
