"""The MongoDB end: a SQL source's rows become documents of a layout (mlflow-mongodb or tables,
through the schema maps), written unordered in bulk; indexes after the load (unique ones before
it where the server requires, Azure Cosmos DB); a marker document says which migration made the
database and whether it completed."""

from __future__ import annotations

import logging
import time

from dbmigrate import __version__
from dbmigrate.analyze import analyze_source, estimate_seconds
from dbmigrate.assemble import Accounts, build_documents
from dbmigrate.config import Config
from dbmigrate.engine import Part, PartResult, make_parts
from dbmigrate.errors import ConfigError, DataError
from dbmigrate.model import Capabilities
from dbmigrate.plan import Plan, make_plan
from dbmigrate.report import Report, TableRow
from dbmigrate.uri import DatabaseURI

log = logging.getLogger("dbmigrate")

SETTLE_STEP, SETTLE_SECONDS = 1.0, 120.0  # clear_part: how long a resume waits for a killed run's last insert


class MongoEnd:
    units = "collections"
    overlap_writes = True
    steps_total = 6

    def __init__(self, cfg: Config, uri: DatabaseURI):
        from dbmigrate.writers.mongo import MongoWriter
        from dbmigrate.writers.recording import RecordingWriter
        self.cfg, self.uri = cfg, uri
        self.layout = cfg.layout or "mlflow-mongodb"
        writer = MongoWriter(uri, timeout_ms=cfg.connect_timeout * 1000, flavor=cfg.target_flavor)
        self.writer = RecordingWriter(writer) if cfg.dry_run else writer
        self.capabilities = Capabilities()
        self.parallel_limit_reason = ""
        self.plan_: Plan | None = None
        self.counts: dict[str, int] = {}
        self.accounts = Accounts()
        self.index_results: list = []
        self.schema = None
        self.source_uri = ""
        self.merger = None  # dbmigrate.mongo_merge.MongoMerge of a --merge
        self.merge_fields: dict = {}  # collection -> _id -> fields merge_rows sets (a --merge compares them)
        self.merge_inserted: dict[str, int] = {}

    # ------------------------------------------------------------------ connect and plan
    def needs_sql_source(self, source) -> bool:
        """Whether `source` must first be staged in SQLite (dbmigrate.staging) for this end."""
        return not hasattr(source, "inspect")

    def connect(self, source, report: Report) -> None:
        if not hasattr(source, "inspect"):
            raise ConfigError(f"A MongoDB target takes a SQL source (PostgreSQL, MySQL/MariaDB, SQLite); "
                              f"{report.source} is not one",
                              hint="restore it into a SQL database first, then copy that into MongoDB")
        self.report = report
        server = self.writer.ping()
        self.schema = source.inspect()
        source.orphans = self.cfg.orphans
        self.source_uri = report.source
        report.mlflow, report.revision = self.schema.version.describe(), self.schema.revision
        report.snapshot = source.snapshot_id or ""
        log.info("source: %s, %d tables; target: MongoDB %s, database %s", self.schema.version.describe(),
                 len(self.schema.tables), server.get("version"), server.get("database"))
        # What this server can take, as a record the orchestrator plans by.
        if server.get("secantus") and not self.cfg.dry_run:
            self.capabilities = Capabilities(parallel_writers=1)
            self.parallel_limit_reason = (f"the target is SecantusDB {server['secantus']}, which deadlocks under "
                                          "concurrent writes (WiredTiger write conflicts it does not retry)")
        if self.writer.is_cosmos:
            from dbmigrate.writers.mongo import COSMOS_BATCH_BYTES, COSMOS_BATCH_DOCS
            self.capabilities = Capabilities(parallel_writers=self.capabilities.parallel_writers,
                                             unique_indexes_first=True, max_batch_rows=COSMOS_BATCH_DOCS,
                                             max_batch_bytes=COSMOS_BATCH_BYTES)
        if self.cfg.merge:
            self.capabilities = Capabilities(parallel_writers=1, max_batch_rows=self.capabilities.max_batch_rows,
                                             max_batch_bytes=self.capabilities.max_batch_bytes)
            self.parallel_limit_reason = "a merge compares each document with the target's as it goes"

    def plan_step(self) -> tuple:
        return ("plan and analyse the source (%s layout)", self.layout)

    def plan(self, source, report: Report) -> dict:
        schema, cfg = self.schema, self.cfg
        self.plan_ = plan = make_plan(schema, self.layout, skip_unmapped=cfg.skip_unmapped)
        self.counts = counts = {t: source.count(t, raw=True) for t in schema.tables}
        report.plan = [{"table": t, "rows": counts[t], "destination": plan.destinations.get(t) or
                        f"skipped: {plan.skipped.get(t)}"} for t in sorted(schema.tables)]
        report.problems = analyze_source(source, schema, plan, counts)
        report.estimate_seconds = estimate_seconds(counts, plan, cfg.verify)
        if report.blocking_problems:
            raise DataError("The source has values the target cannot hold: "
                            + "; ".join(p.replace("BLOCKING: ", "") for p in report.blocking_problems))
        if cfg.merge:
            self.plan_merge(source, report)
        setup = {"source": report.source, "target": self.uri.masked, "layout": self.layout,
                 "skip_unmapped": cfg.skip_unmapped, "revision": schema.revision, "orphans": cfg.orphans}
        options = cfg.resume_options()
        if options:  # a resume must select, rewrite and merge the same way
            setup["options"] = options
        return setup

    # ------------------------------------------------------------------ --merge
    def plan_merge(self, source, report: Report) -> None:
        """--merge (dbmigrate.mongo_merge): experiment ids and model documents matched, every
        document compared with the target's; the conflicts listed (and, under --on-conflict fail,
        refused) before anything is written."""
        from dbmigrate.mongo_merge import MongoMerge, compare_all
        from dbmigrate.verification.mongo import _merge_updates
        self.check_merge_target()
        self.merger = merger = MongoMerge(self.plan_, self.writer.db, self.cfg.conflict_policy)
        merger.prepare(source)
        # the fields the logged-model metric step sets on metric documents belong to what is compared
        self.merge_fields = _merge_updates(self.plan_, source, self.cfg)
        compare_all(merger, lambda cp: self.documents(source, cp))
        report.merge = merger.summary()
        report.remapped = {**report.remapped, **merger.remapped}
        if self.cfg.conflict_policy == "fail":
            merger.refuse(self.uri.masked)
        merger.reset()  # the copy decides again, batch by batch, the same way

    def check_merge_target(self) -> None:
        """The target holds MLflow data in this run's layout (or nothing), at the source's revision
        when a dbmigrate marker says which."""
        from dbmigrate.errors import SchemaError
        db = self.writer.db
        names = set(db.list_collection_names())
        marker = db[self.plan_.marker].find_one({"_id": "migration"}) if self.plan_.marker in names else None
        found = (marker or {}).get("layout") or ("tables" if "alembic_version" in names else
                                                 "mlflow-mongodb" if {"experiments", "runs"} & names else None)
        if found and found != self.layout:
            raise ConfigError(f"--merge: the target {self.uri.masked} holds the {found} layout; this run writes "
                              f"{self.layout}", hint=f"add --layout {found}")
        rev = (marker or {}).get("source_revision")
        if not rev and found == "tables" and "alembic_version" in names:  # no marker: the copied table says
            revs = {d.get("version_num") for d in db["alembic_version"].find()} - {None}
            rev = next(iter(sorted(revs - {self.schema.revision})), None)
        if rev and rev != self.schema.revision:
            raise SchemaError(f"--merge: the target was made from MLflow schema revision {rev}, the source is at "
                              f"{self.schema.revision}: documents can only be merged between equal revisions",
                              hint="upgrade the older one (`mlflow db upgrade` on its SQL form) first")

    def documents(self, source, cp):
        """The documents the source makes for one collection, in batches (what a merge writes)."""
        if cp.grouped:
            reads = source.pages(cp.table, cp.columns, cp.key, self.cfg.batch_size)
        else:
            reads = source.stream(cp.table, cp.columns, self.cfg.batch_size)
        for rows in reads:
            yield self.with_merged_fields(cp, build_documents(cp, source, rows))

    def with_merged_fields(self, cp, docs: list[dict]) -> list[dict]:
        from dbmigrate.writers.mongo import _hashable
        fields = self.merge_fields.get(cp.name)
        if fields:
            for d in docs:
                upd = fields.get(_hashable(d["_id"]))
                if upd:
                    d.update(upd)
        return docs

    # ------------------------------------------------------------------ checkpoint hooks
    def require_empty(self) -> None:
        if self.merger is not None:
            return  # --merge: a target that holds data (checked in plan_merge)
        self.writer.require_empty(self.plan_.target_names, self.plan_.marker)

    def prepare(self) -> None:
        pass  # collections come with their first documents

    def check_resumable(self) -> None:
        pass

    def clear_target(self) -> None:
        if self.merger is not None:  # never drop a merge target's collections: the merge is planned
            return                   # again and skips what an earlier run wrote
        dropped = self.writer.drop_collections(self.plan_.target_names + [self.plan_.marker])
        self.report.notes.append(f"restarted: dropped {len(dropped)} collections of the earlier run")

    # ------------------------------------------------------------------ parts
    def parts(self, source, state, workers: int, report: Report) -> list[Part]:
        out = []
        for cp in self.plan_.collections:
            if self.merger is not None and self.merger.skips(cp):
                continue
            out += make_parts(source, cp.name, cp.table, self.counts.get(cp.table, 0), workers)
        return out

    def before_copy(self, state, resumed: bool, report: Report) -> None:
        if self.cfg.dry_run or self.merger is not None:  # (a merge leaves the target's marker alone)
            return
        if not resumed:
            self.writer.write_marker(self.plan_.marker, self.marker("running"))
        if self.capabilities.unique_indexes_first:
            # Cosmos DB builds a unique index only on an empty collection: make those first.
            for cp in self.plan_.collections:
                self.writer.create_indexes(cp.name, [i for i in cp.spec.get("indexes", []) if i.get("unique")])
            report.notes.append("Azure Cosmos DB: unique indexes made before loading; batches of at most "
                                "1000 documents / 4 MB; throttled writes retried after RetryAfterMs")

    def expected_rows(self) -> dict[str, int]:
        return {cp.name: self.counts.get(cp.table, 0) for cp in self.plan_.collections}

    def worker_job(self) -> dict:
        return {"schema": self.schema, "layout": self.layout, "skip_unmapped": self.cfg.skip_unmapped}

    def attach_worker(self, source, job: dict) -> None:
        source.schema = job["schema"]
        source.orphans = self.cfg.orphans
        self.schema = job["schema"]
        self.plan_ = make_plan(job["schema"], job["layout"], skip_unmapped=job["skip_unmapped"])

    # ------------------------------------------------------------------ the batch path
    def _collection(self, part: Part):
        return next(c for c in self.plan_.collections if c.name == part.target)

    def account(self, part: Part) -> str:
        return self.plan_.account_key(self._collection(part))

    def clear_part(self, part: Part) -> int:
        if self.merger is not None:
            return 0  # a merge deletes nothing: its rerun skips the documents already written
        cp = self._collection(part)
        field = cp.spec.get("part_field") or (part.part[0] if part.part else None)
        removed = self.writer.delete_part(cp.name, field, part.part)
        # The killed run's last bulk insert may still be applied by the server after its client
        # died (a server finishes an operation it received): clear again until the part stays
        # empty, so those documents are not found as duplicates of this run's writes.
        waited = 0.0
        while removed and waited < SETTLE_SECONDS:
            time.sleep(SETTLE_STEP)
            waited += SETTLE_STEP
            late = self.writer.delete_part(cp.name, field, part.part)
            if not late:
                break
            log.info("part %s: %d documents of the interrupted run arrived after it was cleared; removed",
                     part.id, late)
            removed += late
        return removed

    def fast_copy(self, source, part: Part, on_rows):
        return None

    def batches(self, source, part: Part, res: PartResult):
        cp = self._collection(part)
        batch_size = self.cfg.batch_size
        if cp.grouped:
            reads = source.pages(cp.table, cp.columns, cp.key, batch_size, part=part.part)
        else:
            reads = source.stream(cp.table, cp.columns, batch_size, part=part.part)
        res.accounts = accounts = Accounts()
        for rows in reads:
            docs = build_documents(cp, source, rows, accounts)
            if self.merger is not None:
                docs = self.merger.decide(cp, self.with_merged_fields(cp, docs))
            yield len(rows), docs

    def write(self, part: Part, docs: list) -> None:
        if self.merger is not None:  # docs: the merge's writes (dbmigrate.mongo_merge)
            self.merger.apply(self.writer, part.target, docs, self.cfg.dry_run)
        else:
            self.writer.write(part.target, docs)

    def part_done(self, res: PartResult) -> None:
        res.accounts = {t: [a.rows, a.seconds, sorted(a.keys, key=repr)] for t, a in res.accounts.items()}
        if hasattr(self.writer, "take"):  # dry run: what was recorded goes back with the result
            res.notes["recorded"] = self.writer.take()

    # ------------------------------------------------------------------ bookkeeping
    def detail(self, res: PartResult) -> dict:
        return {"accounts": res.accounts, "account": res.account, "written": res.written,
                "seconds": res.seconds, "batches": res.batches, "recorded": res.notes.get("recorded")}

    def absorb(self, detail: dict, finished: float | None = None) -> None:
        if detail.get("recorded") and hasattr(self.writer, "absorb"):
            self.writer.absorb(detail["recorded"])  # a worker's dry-run records
        merge_accounts(self.accounts, PartResult("", "", "", written=detail.get("written", 0),
                                                 batches=detail.get("batches", 0),
                                                 seconds=detail.get("seconds", 0.0),
                                                 account=detail.get("account", ""),
                                                 accounts=detail.get("accounts", {})), end=finished)

    def rows_copied(self) -> int:
        return sum(t.migrated for t in table_rows(self.plan_, self.counts, self.accounts))

    def recorded(self) -> str:
        return self.writer.summary()

    # ------------------------------------------------------------------ after the copy
    def after_copy(self, source, state) -> None:
        if not (state and state.step_done("merge")):
            self.merge_inserted = merge_rows(self.plan_, source, self.writer, self.cfg, self.accounts,
                                             merger=self.merger)
            if state:
                state.mark_step("merge")
        if self.merger is not None:
            self.report.merge = self.merger.summary()

    def finalize_step(self) -> tuple:
        return ("build %d indexes", sum(len(c.spec.get("indexes", [])) for c in self.plan_.collections))

    def finalize(self, state, workers: int, progress, report: Report) -> None:
        n_indexes = sum(len(c.spec.get("indexes", [])) for c in self.plan_.collections)
        progress.start_step("indexes", n_indexes, "indexes")
        for cp in self.plan_.collections:
            if self.merger is not None and (cp.name in self.merger.existing or self.merger.skips(cp)
                                            or not self.merger.inserted[cp.name]):
                continue  # --merge: the target's collections keep their indexes; none made for nothing
            self.index_results += self.writer.create_indexes(cp.name, cp.spec.get("indexes", []),
                                                             on_index=progress.step)
        progress.end_step()
        report.skipped_tables = [{"table": t, "rows": self.counts[t], "reason": why}
                                 for t, why in sorted(self.plan_.skipped.items())]

    def table_rows(self) -> list[TableRow]:
        return table_rows(self.plan_, self.counts, self.accounts)

    def verify_step(self) -> tuple:
        return ("verify (%s)", self.cfg.verify)

    def verify(self, source, progress, report: Report):
        from dbmigrate.verification.mongo import verify_mongo
        if self.merger is not None:
            from dbmigrate.mongo_merge import verify_merge
            return verify_merge(self.merger, lambda cp: self.documents(source, cp), self.merge_inserted)
        return verify_mongo(self.plan_, source, self.writer.db, self.cfg, self.counts, self.index_results,
                            progress=progress)

    def complete(self, report: Report, steps) -> None:
        if not self.cfg.dry_run and self.merger is None:
            passed = None if report.verification is None else report.verification.passed
            self.writer.write_marker(self.plan_.marker, {**self.marker("complete"), "finished": _now(),
                                                         "verified": passed})

    def marker(self, status: str) -> dict:
        return {"_id": "migration", "layout": self.plan_.layout, "tool": f"dbmigrate {__version__}",
                "source": self.source_uri, "source_revision": self.schema.revision,
                "mlflow": self.schema.version.release_range, "status": status, "updated": _now()}

    def close(self) -> None:
        self.writer.close()


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


def merge_rows(plan: Plan, source, writer, cfg: Config, accounts: Accounts, merger=None) -> dict[str, int]:
    """Rows that belong on documents another table made (logged-model metrics on run metrics);
    returns the documents inserted per collection (rows that matched no document). Under --merge
    (`merger`) a row whose document the target holds under an _id of its own (a metric the
    mlflow-mongodb store logged, found by the map's merge_match) is not inserted again: the copy
    already compared that document with the fields this step sets."""
    added: dict[str, int] = {}
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
            if inserts and merger is not None:
                found = merger.lookup(next(c for c in plan.collections if c.name == mp.collection), inserts)
                inserts = [d for d in inserts if found[id(d)] is None]
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
        added[mp.collection] = added.get(mp.collection, 0) + inserted
    return added


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

