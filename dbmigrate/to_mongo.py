"""Migrate a SQL source into MongoDB: plan, copy the parts (in parallel for PostgreSQL sources),
merge, index, verify; checkpointed so that `--resume` continues where a killed run stopped."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from dbmigrate import __version__
from dbmigrate.analyze import analyze_source, estimate_seconds
from dbmigrate.assemble import Accounts, build_documents
from dbmigrate.config import Config
from dbmigrate.engine import Part, PartResult, make_parts, run_parts
from dbmigrate.errors import DataError
from dbmigrate.plan import Plan, make_plan
from dbmigrate.progress import open_progress
from dbmigrate.readers.sql import SqlSource
from dbmigrate.report import Report, TableRow
from dbmigrate.state import State, open_checkpoint
from dbmigrate.uri import DatabaseURI, parse_uri

log = logging.getLogger("dbmigrate")


def make_writer(cfg: Config, dst: DatabaseURI):
    from dbmigrate.writers.mongo import MongoWriter
    from dbmigrate.writers.recording import RecordingWriter
    writer = MongoWriter(dst, timeout_ms=cfg.connect_timeout * 1000, flavor=cfg.target_flavor)
    return RecordingWriter(writer) if cfg.dry_run else writer


class MongoRunner:
    """Copies parts into MongoDB. In a worker process it opens its own connections (reading the
    main process's exported snapshot); inline it shares the main process's."""

    def __init__(self, cfg: Config, source, plan: Plan, writer, resuming: bool = False):
        self.cfg, self.source, self.plan, self.writer = cfg, source, plan, writer
        self.resuming = resuming  # parts may hold documents an interrupted run wrote

    @classmethod
    def in_worker(cls, cfg_fields: dict, src_raw: str, snapshot: str | None, schema, layout: str,
                  skip_unmapped: bool, dst_raw: str, resuming: bool) -> "MongoRunner":
        cfg = Config(**cfg_fields)
        source = SqlSource(parse_uri(src_raw, role="source"), connect_timeout=cfg.connect_timeout)
        source.open(snapshot_id=snapshot)
        source.schema = schema
        source.orphans = cfg.orphans
        plan = make_plan(schema, layout, skip_unmapped=skip_unmapped)
        return cls(cfg, source, plan, make_writer(cfg, parse_uri(dst_raw, role="target")), resuming)

    def run(self, part: Part, progress) -> PartResult:
        t0 = time.perf_counter()
        cp = next(c for c in self.plan.collections if c.name == part.target)
        accounts = Accounts()
        res = PartResult(part.id, part.target, part.table, account=self.plan.account_key(cp))
        if self.resuming:
            field = cp.spec.get("part_field") or (part.part[0] if part.part else None)
            cleared = self.writer.delete_part(cp.name, field, part.part)
            if cleared:
                log.info("part %s: removed %d documents an interrupted run wrote; copying it again",
                         part.id, cleared)
        if cp.grouped:
            batches = self.source.pages(cp.table, cp.columns, cp.key, self.cfg.batch_size, part=part.part)
        else:
            batches = self.source.stream(cp.table, cp.columns, self.cfg.batch_size, part=part.part)
        # One batch is written (by a thread: pymongo waits on the socket without the GIL) while the
        # next is read and converted, so the server is never idle waiting for us. At most two
        # batches are in memory; the part counts as done only after the last write returned.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbmigrate-write")
        pending = None
        try:
            for rows in batches:
                docs = build_documents(cp, self.source, rows, accounts)
                if pending is not None:
                    pending.result()  # re-raises the write's error here
                pending = pool.submit(self.writer.write, cp.name, docs)
                res.rows += len(rows)
                res.written += len(docs)
                res.batches += 1
                progress(part.table, len(rows))
            if pending is not None:
                pending.result()
        finally:
            pool.shutdown(wait=True)
        if hasattr(self.writer, "take"):  # dry run: what was recorded goes back with the result
            res.notes["recorded"] = self.writer.take()
        res.seconds = time.perf_counter() - t0
        res.accounts = {t: [a.rows, a.seconds, sorted(a.keys, key=repr)] for t, a in accounts.items()}
        return res


def migrate_to_mongo(cfg: Config, src_uri: DatabaseURI, dst_uri: DatabaseURI, layout: str,
                     report: Report, steps) -> None:
    source = writer = state = None
    progress = open_progress(cfg.progress)
    try:
        steps("connect: source %s, target %s", src_uri.masked, dst_uri.masked)
        source = SqlSource(src_uri, connect_timeout=cfg.connect_timeout).open()
        writer = make_writer(cfg, dst_uri)
        server = writer.ping()
        schema = source.inspect()
        source.orphans = cfg.orphans
        report.mlflow, report.revision = schema.version.describe(), schema.revision
        report.snapshot = source.snapshot_id or ""
        log.info("source: %s, %d tables; target: MongoDB %s, database %s",
                 schema.version.describe(), len(schema.tables), server.get("version"), server.get("database"))

        steps("plan and analyse the source (%s layout)", layout)
        plan = make_plan(schema, layout, skip_unmapped=cfg.skip_unmapped)
        counts = {t: source.count(t, raw=True) for t in schema.tables}
        report.plan = [{"table": t, "rows": counts[t], "destination": plan.destinations.get(t) or
                        f"skipped: {plan.skipped.get(t)}"} for t in sorted(schema.tables)]
        report.problems = analyze_source(source, schema, plan, counts)
        report.estimate_seconds = estimate_seconds(counts, plan, cfg.verify)
        if report.blocking_problems:
            raise DataError("The source has values the target cannot hold: "
                            + "; ".join(p.replace("BLOCKING: ", "") for p in report.blocking_problems))
        workers = cfg.effective_workers if source.dialect == "postgresql" else 1
        if source.dialect != "postgresql" and cfg.effective_workers > 1:
            report.notes.append(f"one worker: a {source.dialect} source has no snapshot that several "
                                "connections can share")
        if server.get("secantus") and workers > 1 and not cfg.dry_run:
            workers = 1
            report.notes.append(f"one worker: the target is SecantusDB {server['secantus']}, which deadlocks "
                                "under concurrent writes (WiredTiger write conflicts it does not retry)")
        setup = {"source": src_uri.masked, "target": dst_uri.masked, "layout": layout,
                 "skip_unmapped": cfg.skip_unmapped, "revision": schema.revision, "orphans": cfg.orphans}
        state = open_state(cfg, dst_uri, setup, writer, plan, report)  # a dry run: the same checks, no writes

        parts = []
        for cp in plan.collections:
            parts += make_parts(source, cp.name, cp.table, counts.get(cp.table, 0), workers)
        done = state.done_parts() if state else set()
        pending = [p for p in parts if p.id not in done]
        if state:
            state.register(parts)
        steps("copy %d collections from %d source tables in %d parts (%d to do, %d worker%s)",
              len(plan.collections), len(schema.tables), len(parts), len(pending), workers,
              "s" if workers != 1 else "")
        if not done and not cfg.dry_run:
            writer.write_marker(plan.marker, marker_doc(plan, src_uri, schema, "running"))
        if writer.is_cosmos and not cfg.dry_run:
            # Cosmos DB builds a unique index only on an empty collection: make those first.
            for cp in plan.collections:
                writer.create_indexes(cp.name, [i for i in cp.spec.get("indexes", []) if i.get("unique")])
            report.notes.append("Azure Cosmos DB: unique indexes made before loading; batches of at most "
                                "1000 documents / 4 MB; throttled writes retried after RetryAfterMs")
        accounts = Accounts()
        if state:
            load_accounts(state, accounts)
        before = sum(t.migrated for t in table_rows(plan, counts, accounts))  # by an interrupted run
        progress.start_copy(parts, {cp.name: counts.get(cp.table, 0) for cp in plan.collections},
                            state.part_rows() if state else {})

        def on_done(part: Part, res: PartResult):
            merge_accounts(accounts, res, end=time.perf_counter())
            progress.part_done(part.id, res.rows)
            if res.notes.get("recorded") and hasattr(writer, "absorb"):
                writer.absorb(res.notes["recorded"])  # a worker's dry-run records
            if state:
                state.mark_done(part.id, res.rows, res.seconds, {
                    "accounts": res.accounts, "account": res.account, "written": res.written,
                    "seconds": res.seconds, "batches": res.batches})
            log.debug("part %s: %d rows in %.2f s", part.id, res.rows, res.seconds)

        resuming = bool(done) or bool(cfg.resume)
        inline = MongoRunner(cfg, source, plan, writer, resuming)
        args = (cfg.as_dict(), src_uri.raw, source.snapshot_id if source.dialect == "postgresql" else None,
                schema, layout, cfg.skip_unmapped, dst_uri.raw, resuming)
        t_copy = time.perf_counter()
        try:
            run_parts(pending, MongoRunner.in_worker, args, workers, on_done, progress.advance,
                      inline_runner=inline)
        finally:
            progress.end_copy()
        log.info("copied %d parts in %.2f s", len(pending), time.perf_counter() - t_copy)
        if not (state and state.step_done("merge")):
            merge_rows(plan, source, writer, cfg, accounts)
            if state:
                state.mark_step("merge")
        report.tables = table_rows(plan, counts, accounts)
        report.copy_rows = sum(t.migrated for t in report.tables) - before  # embedded rows included
        report.skipped_tables = [{"table": t, "rows": counts[t], "reason": why}
                                 for t, why in sorted(plan.skipped.items())]
        if cfg.dry_run:
            report.notes.append(f"dry run: nothing was written to the target ({writer.summary()})")
        if done:
            report.notes.append(f"resumed: {len(done)} of {len(parts)} parts were copied by the interrupted "
                                "run (at its snapshot) and kept; the others were copied now")

        n_indexes = sum(len(c.spec.get("indexes", [])) for c in plan.collections)
        steps("build %d indexes", n_indexes)
        progress.start_step("indexes", n_indexes, "indexes")
        index_results = []
        for cp in plan.collections:
            index_results += writer.create_indexes(cp.name, cp.spec.get("indexes", []), on_index=progress.step)
        progress.end_step()

        if cfg.dry_run or cfg.verify == "none":
            steps("verify: skipped (%s)", "dry run" if cfg.dry_run else "--verify none")
        else:
            steps("verify (%s)", cfg.verify)
            from dbmigrate.verification.mongo import verify_mongo
            report.verification = verify_mongo(plan, source, writer.db, cfg, counts, index_results,
                                               progress=progress)
        if not cfg.dry_run:
            passed = None if report.verification is None else report.verification.passed
            writer.write_marker(plan.marker, {**marker_doc(plan, src_uri, schema, "complete"),
                                              "finished": _now(), "verified": passed})
            if state:
                state.mark_step("complete")
        steps("done")
    finally:
        progress.close()
        if report.copy_rows is None:  # interrupted or stopped: the rows of the parts it finished
            report.copy_rows = progress.this_run
        if state is not None:
            state.close()
        if source is not None:
            source.close()
        if writer is not None:
            writer.close()


def open_state(cfg: Config, dst_uri: DatabaseURI, setup: dict, writer, plan: Plan, report: Report) -> State:
    """The checkpoint catalog for this target: new, resumed (same setup) or restarted."""
    def clear_target():
        dropped = writer.drop_collections(plan.target_names + [plan.marker])
        report.notes.append(f"restarted: dropped {len(dropped)} collections of the earlier run")

    return open_checkpoint(cfg, dst_uri.masked, setup, check_resumable=lambda: None, clear_target=clear_target,
                           require_empty=lambda: writer.require_empty(plan.target_names, plan.marker))


def load_accounts(state: State, accounts: Accounts) -> None:
    import json
    for (detail,) in state.db.execute("SELECT detail FROM parts WHERE status = 'done'"):
        d = json.loads(detail or "{}")
        merge_accounts(accounts, PartResult("", "", "", written=d.get("written", 0), batches=d.get("batches", 0),
                                            seconds=d.get("seconds", 0.0), account=d.get("account", ""),
                                            accounts=d.get("accounts", {})))


def merge_accounts(accounts: Accounts, res: PartResult, end: float | None = None) -> None:
    for table, (rows, seconds, keys) in res.accounts.items():
        a = accounts[table]
        a.rows += rows
        a.seconds += seconds
        a.keys.update(tuple(k) if isinstance(k, list) else k for k in keys)
    if res.account:
        a = accounts[res.account]
        a.rows += res.written
        a.seconds += res.seconds
        a.batches += res.batches
        if end is not None:  # this run: the table's wall-clock span across its parts
            start = end - res.seconds
            a.start = min(a.start, start) if a.end else start
            a.end = max(a.end, end)


def marker_doc(plan: Plan, src_uri: DatabaseURI, schema, status: str) -> dict:
    return {"_id": "migration", "layout": plan.layout, "tool": f"dbmigrate {__version__}",
            "source": src_uri.masked, "source_revision": schema.revision,
            "mlflow": schema.version.release_range, "status": status, "updated": _now()}


def merge_rows(plan: Plan, source, writer, cfg: Config, accounts: Accounts):
    """Rows that belong on documents another table made (logged-model metrics on run metrics)."""
    for mp in plan.merges:
        t0 = time.perf_counter()
        merged = inserted = 0
        for rows in source.stream(mp.table, mp.plan.columns, cfg.batch_size):
            docs = build_documents(mp.plan, source, rows)
            ids = [d["__match"] for d in docs] + [d["__match_nan"] for d in docs]
            present = writer.find_ids(mp.collection, ids)
            updates, inserts = [], []
            for d in docs:
                match, match_nan = d.pop("__match"), d.pop("__match_nan")
                fields = {f: d[f] for f in mp.set_fields}
                if match in present:
                    updates.append((match, fields))
                elif match_nan in present and d.get("v") in (0, 0.0):  # SQL stored the NaN as 0
                    updates.append((match_nan, fields))
                else:
                    inserts.append(d)
            if updates:
                writer.update_by_id(mp.collection, updates)
            if inserts:
                writer.write(mp.collection, inserts)
            merged += len(updates)
            inserted += len(inserts)
        acct = accounts[mp.table]
        acct.rows += merged + inserted
        acct.seconds += time.perf_counter() - t0
        log.info("  %-24s %10d rows of %s merged into existing documents, %d added", mp.collection,
                 merged, mp.table, inserted)


def table_rows(plan: Plan, counts: dict, accounts: Accounts) -> list[TableRow]:
    rows = []

    def row(table, key, destination, note=""):
        acct = accounts.get(key)
        migrated = acct.migrated if acct else 0
        total = counts[table]
        return TableRow(table, destination, total, migrated, max(total - migrated, 0), 0,
                        acct.wall if acct else 0.0, note, acct.batches if acct else 0)

    for table in sorted(counts, key=lambda t: (t not in plan.destinations, t)):
        if table not in plan.destinations:
            rows.append(TableRow(table, "skipped", counts[table], 0, counts[table], 0, 0.0,
                                 plan.skipped.get(table, "")))
            continue
        note = ""
        if table in plan.partial:
            note = f"rows with a place in {plan.layout}: {plan.partial[table]['as']}"
            if table in plan.copies:
                note += f"; every row also in {plan.copies[table]}"
        rows.append(row(table, table, plan.destinations[table], note))
        if table in plan.partial and table in plan.copies:
            name = plan.copies[table]
            rows.append(row(table, name, name, "tables form (complete copy)"))
            rows[-1].table = f"{table} (copy)"
    return rows


def _now() -> str:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
