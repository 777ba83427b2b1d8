"""The one copy loop, the same for every pair of ends:

    connect -> plan -> checkpoint (target prepared) -> parts -> workers: read -> convert -> write
    -> checkpoint each part -> finalize -> verify -> complete

What differs between targets lives in the target's end (dbmigrate.ends: sql, mongo, parquet),
chosen by URI kind in dbmigrate.backends; what differs between sources is the Reader. A batch's path
is a straight line (PartRunner.run): `end.batches(source, part)` reads a batch from the source and
converts it for the target; `end.write(part, payload)` hands it to the writer. A dry run is this
same loop with a recording writer in the end.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from dbmigrate.backends import open_source, target_end
from dbmigrate.config import Config
from dbmigrate.engine import Part, PartResult, levels
from dbmigrate.executors import check as check_executor, open_executor
from dbmigrate.progress import open_progress
from dbmigrate.report import Report
from dbmigrate.state import open_checkpoint
from dbmigrate.uri import DatabaseURI, parse_uri

log = logging.getLogger("dbmigrate")


class PartRunner:
    """Copies parts: in a worker process with its own source connection (reading the source's
    exported snapshot) and its own target end, or inline with the main process's."""

    def __init__(self, source, end, resuming: bool):
        self.source, self.end, self.resuming = source, end, resuming

    @classmethod
    def in_worker(cls, cfg_fields: dict, src_raw: str, snapshot: str | None, dst_raw: str, job: dict,
                  resuming: bool) -> "PartRunner":
        from dbmigrate.backends import TARGETS
        from dbmigrate.readers.sql import SqlSource
        cfg = Config(**cfg_fields)
        source = SqlSource(parse_uri(src_raw, role="source"), connect_timeout=cfg.connect_timeout)
        source.open(snapshot_id=snapshot)
        dst = parse_uri(dst_raw, role="target")
        end = TARGETS[dst.kind]()(cfg, dst)
        end.attach_worker(source, job)
        source.selection, source.rewriter = job.get("selection"), job.get("rewriter")
        return cls(source, end, resuming)

    def run(self, part: Part, progress) -> PartResult:
        t0 = time.perf_counter()
        end = self.end
        res = PartResult(part.id, part.target, part.table, account=end.account(part))
        if self.resuming:
            cleared = end.clear_part(part)  # what an interrupted run wrote of this part
            if cleared:
                log.info("part %s: removed %d rows an interrupted run wrote; copying it again", part.id, cleared)
        fast = end.fast_copy(self.source, part, lambda n: progress(part.table, n))
        if fast is not None:  # a declared (reader, writer) shortcut, e.g. PostgreSQL binary COPY
            res.rows = res.written = fast.rows
            res.batches, res.notes = 1, fast.notes
            res.seconds = time.perf_counter() - t0
            return res
        # One batch is written while the next is read and converted when the end allows it (a
        # MongoDB write waits on the socket without the GIL); at most two batches are in memory,
        # and the part is done only after its last write returned.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbmigrate-write") if end.overlap_writes else None
        pending = None
        try:
            for n, payload in end.batches(self.source, part, res):  # read + convert
                if pool is None:
                    end.write(part, payload)
                else:
                    if pending is not None:
                        pending.result()  # re-raises the write's error here
                    pending = pool.submit(end.write, part, payload)
                res.rows += n
                res.written += len(payload)
                res.batches += 1
                progress(part.table, n)
            if pending is not None:
                pending.result()
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        res.seconds = time.perf_counter() - t0
        end.part_done(res)  # the end's own figures (checksums, accounts, recorded writes)
        return res


def run(cfg: Config, src_uri: DatabaseURI, dst_uri: DatabaseURI, report: Report, steps) -> None:
    end = target_end(cfg, dst_uri)
    steps.total = end.steps_total
    source = staged = state = executor = None
    check_executor(cfg, src_uri, dst_uri)
    progress = open_progress(cfg.progress)
    try:
        steps("connect: source %s, target %s", src_uri.masked, dst_uri.masked)
        source = open_source(cfg, src_uri)
        if end.needs_sql_source(source):  # a MongoDB end reads with SQL: stage the rows in SQLite first
            from dbmigrate.staging import stage
            source.close()
            source = None
            source = stage(cfg, src_uri, report)
        end.connect(getattr(source, "source", source), report)
        executor = open_executor(cfg)  # a Dask cluster is reached (or started) before anything is written

        staged, source = source, getattr(source, "source", source)  # (staged: closing it removes the file)
        from dbmigrate.selection import attach
        attach(cfg, source, report)  # --experiments/--runs/--models/--since, --rewrite-artifact-uri, --rename-*
        steps(*end.plan_step())
        setup = end.plan(source, report)  # raises for what the target cannot take, before any write
        if end.capabilities.durable_writes:
            state = open_checkpoint(cfg, dst_uri.masked, setup, check_resumable=end.check_resumable,
                                    clear_target=end.clear_target, require_empty=end.require_empty,
                                    prepare=end.prepare)  # a dry run: the same checks, no writes
        else:  # rows are durable only when finalize returns: no parts to resume, a rerun starts over
            end.require_empty()
            if not cfg.dry_run:
                end.prepare()
        workers = choose_workers(cfg, source, end, report, executor.default_workers)
        parts = end.parts(source, state, workers, report)
        done = state.done_parts() if state else set()
        if state:
            state.register(parts)
            for detail in state.details():
                end.absorb(detail)
        pending = [p for p in parts if p.id not in done]
        end.before_copy(state, bool(done), report)
        steps("copy %d %s in %d parts (%d to do, %d worker%s)", len({p.target for p in parts}), end.units,
              len(parts), len(pending), workers, "s" if workers != 1 else "")

        before = end.rows_copied()  # by an interrupted run
        progress.start_copy(parts, end.expected_rows(), state.part_rows() if state else {})

        def on_done(part: Part, res: PartResult):
            detail = end.detail(res)
            end.absorb(detail, finished=time.perf_counter())
            progress.part_done(part.id, res.rows)
            if state:
                state.mark_done(part.id, res.rows, res.seconds, detail)
            log.debug("part %s: %d rows in %.2f s", part.id, res.rows, res.seconds)

        resuming = bool(done) or bool(cfg.resume)
        shared = getattr(source, "shared_snapshot", None) if executor.shares_snapshot(workers) else None
        job = {**end.worker_job(), "selection": getattr(source, "selection", None),
               "rewriter": getattr(source, "rewriter", None)}
        args = (cfg.as_dict(), src_uri.raw, shared, dst_uri.raw, job, resuming)
        inline = PartRunner(source, end, resuming)
        t_copy = time.perf_counter()
        try:
            for level in levels(pending):
                executor.run(level, PartRunner.in_worker, args, workers, on_done, progress.advance,
                             inline_runner=inline)
        finally:
            progress.end_copy()
        log.info("copied %d parts in %.2f s", len(pending), time.perf_counter() - t_copy)
        end.after_copy(source, state)

        steps(*end.finalize_step())
        end.finalize(state, workers, progress, report)
        report.tables = end.table_rows()
        report.copy_rows = end.rows_copied() - before
        if cfg.dry_run:
            report.notes.append(f"dry run: nothing was written to the target ({end.recorded()})")
        if done:
            report.notes.append(f"resumed: {len(done)} of {len(parts)} parts were copied by the interrupted "
                                "run (at its snapshot) and kept; the others were copied now")

        if cfg.dry_run or cfg.verify == "none":
            steps("verify: skipped (%s)", "dry run" if cfg.dry_run else "--verify none")
        else:
            steps(*end.verify_step())
            report.verification = end.verify(source, progress, report)
        end.complete(report, steps)
        if state:
            state.mark_step("complete")
        steps("done")
    finally:
        progress.close()
        if executor is not None:
            executor.describe(report)  # which executor, and how many parts ran where
            executor.close()
        if report.copy_rows is None:  # interrupted or stopped: the rows of the parts it finished
            report.copy_rows = progress.this_run
        if state is not None:
            state.close()
        if source is not None:
            source.close()
        if staged is not None and staged is not source:
            staged.close()
        end.close()


def choose_workers(cfg: Config, source, end, report: Report, default: int | None = None) -> int:
    """As many as asked (else `default`, else one per CPU) when the source's snapshot can be shared
    between connections (PostgreSQL exports one), within what the target declares it can take at
    once; otherwise one."""
    workers = cfg.workers or default or cfg.effective_workers
    if workers > 1 and not getattr(source, "shared_snapshot", None):
        kind = getattr(source, "dialect", None) or "non-SQL"
        report.notes.append(f"one worker: a {kind} source{' in WAL mode' if kind == 'sqlite' else ''} has no "
                            "snapshot that several connections can share")
        workers = 1
    limit = end.capabilities.parallel_writers
    if limit is not None and workers > limit:
        report.notes.append(f"{limit} worker{'s' if limit != 1 else ''}: {end.parallel_limit_reason}")
        workers = limit
    return workers
