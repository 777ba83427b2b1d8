"""Write documents to MongoDB (or Cosmos DB / any MongoDB-wire server) in large unordered bulks.

A batch is acknowledged by the server before `write` returns, so a checkpoint taken after it
is safe. Duplicate keys are never ignored blindly: the stored document is compared with the new
one; an identical one is skipped (a rerun), a different one is replaced (the source is the truth)
and counted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import pymongo
from bson import BSON
from pymongo.write_concern import WriteConcern
from pymongo.errors import (AutoReconnect, BulkWriteError, ConnectionFailure, DocumentTooLarge,
                            OperationFailure, ServerSelectionTimeoutError)

from dbmigrate.compare import same_value
from dbmigrate.errors import ConnectionFailed, DataError, MigrationError, TargetNotEmpty, TransientError
from dbmigrate.uri import DatabaseURI, mask_text

log = logging.getLogger(__name__)

MAX_BATCH_DOCS = 10_000
MAX_BATCH_BYTES = 16 * 1024 * 1024
MAX_DOC_BYTES = 16 * 1024 * 1024
# Ids per {_id: {$in: [...]}} lookup. Small enough for servers whose $in is not index-driven
# (SecantusDB's cost grows with the square of the list), large enough to keep round trips few.
IN_BATCH = 250
# Azure Cosmos DB for MongoDB: smaller requests (its per-request and RU limits), more patience.
COSMOS_BATCH_DOCS = 1000
COSMOS_BATCH_BYTES = 4 * 1024 * 1024
THROTTLE_ATTEMPTS = 20


def find_by_ids(coll, ids: list, projection=None) -> list[dict]:
    out = []
    for i in range(0, len(ids), IN_BATCH):
        out.extend(coll.find({"_id": {"$in": ids[i:i + IN_BATCH]}}, projection))
    return out


@dataclass
class WriteStats:
    inserted: int = 0
    skipped_identical: int = 0
    replaced: int = 0
    updated: int = 0
    throttled: int = 0


@dataclass
class IndexResult:
    collection: str
    name: str
    keys: list
    unique: bool
    ok: bool
    detail: str = ""


@dataclass
class MongoWriter:
    uri: DatabaseURI
    timeout_ms: int = 10_000
    flavor: str = "auto"
    stats: dict = field(default_factory=dict)

    def __post_init__(self):
        try:
            self.client = pymongo.MongoClient(
                self.uri.raw, serverSelectionTimeoutMS=self.timeout_ms,
                connectTimeoutMS=self.timeout_ms, socketTimeoutMS=max(self.timeout_ms * 30, 300_000),
                appname="dbmigrate")
            # A write returns once the server has it in its journal: a part is checkpointed only
            # after all of its writes did.
            self.db = self.client.get_default_database(write_concern=WriteConcern(j=True))
        except Exception as exc:  # noqa: BLE001 - malformed URI, bad options
            raise ConnectionFailed(f"Cannot use target {self.uri.masked}: {mask_text(str(exc))}") from None

    # ------------------------------------------------------------------ checks
    def ping(self) -> dict:
        try:
            self.client.admin.command("ping")
            info = self.client.server_info()
        except OperationFailure as exc:
            if exc.code in (13, 18):
                raise ConnectionFailed(f"Target {self.uri.masked} refused the credentials: "
                                       f"{mask_text(str(exc.details.get('errmsg', exc)))}") from None
            raise ConnectionFailed(f"Target {self.uri.masked}: {mask_text(str(exc))}") from None
        except (ServerSelectionTimeoutError, ConnectionFailure) as exc:
            raise ConnectionFailed(f"Cannot reach target {self.uri.masked} within "
                                   f"{self.timeout_ms // 1000} s: {_short(exc)}") from None
        return {"version": info.get("version"), "database": self.db.name,
                "secantus": info.get("secantusVersion")}

    def existing_collections(self) -> dict[str, int]:
        """Non-empty collections of the target database and their sizes (estimated)."""
        out = {}
        for name in self.db.list_collection_names():
            if name.startswith("system."):
                continue
            n = self.db[name].estimated_document_count()
            if n:
                out[name] = n
        return out

    def delete_part(self, collection: str, field: str | None, part: tuple | None) -> int:
        """Remove what an interrupted run wrote for one part (a key range of `field`, or the whole
        collection), so that copying it again cannot leave anything twice or stale."""
        query: dict = {}
        if part:
            _, lo, hi = part
            cond = {}
            if lo is not None:
                cond["$gte"] = lo
            if hi is not None:
                cond["$lt"] = hi
            if cond:
                query = {field: cond}
        return _retry(lambda: self.db[collection].delete_many(query), f"clear a part of {collection}").deleted_count

    def drop_collections(self, names: list[str]) -> list[str]:
        existing = set(self.db.list_collection_names())
        dropped = [n for n in names if n in existing]
        for n in dropped:
            self.db.drop_collection(n)
        return dropped

    def require_empty(self, names: list[str], marker: str) -> None:
        existing = self.existing_collections()
        clash = {n: c for n, c in existing.items() if n in names or n == marker}
        if clash:
            listing = ", ".join(f"{n} ({c} documents)" for n, c in sorted(clash.items()))
            raise TargetNotEmpty(
                f"The target database {self.db.name!r} already holds data: {listing}",
                hint="point --target at an empty database, or drop these collections first")

    # ------------------------------------------------------------------ writes
    @property
    def is_cosmos(self) -> bool:
        if self.flavor != "auto":
            return self.flavor == "cosmos"
        return "cosmos.azure.com" in self.uri.raw.lower()

    def write(self, collection: str, docs: list[dict]) -> WriteStats:
        stats = self.stats.setdefault(collection, WriteStats())
        limit = (COSMOS_BATCH_DOCS, COSMOS_BATCH_BYTES) if self.is_cosmos else (MAX_BATCH_DOCS, MAX_BATCH_BYTES)
        for chunk in _chunks(docs, *limit):
            self._insert(collection, chunk, stats)
        return stats

    def _insert(self, collection: str, docs: list[dict], stats: WriteStats) -> None:
        """One unordered bulk insert. Per document: a duplicate _id is compared with the stored
        document (a rerun); a throttled one (Cosmos DB 16500 / 429) is sent again after the wait
        the server asks for, alone with the other throttled ones; anything else stops the run."""
        coll = self.db[collection]
        pending, waits = docs, 0
        while pending:
            batch = pending
            try:
                res = _retry(lambda: coll.insert_many(batch, ordered=False), f"insert into {collection}")
                stats.inserted += len(res.inserted_ids)
                return
            except BulkWriteError as exc:
                details = exc.details
                errors = details.get("writeErrors", [])
                stats.inserted += details.get("nInserted", 0)
                throttled = [e for e in errors if _throttled_error(e) is not None]
                other = [e for e in errors if e.get("code") != 11000 and e not in throttled]
                if other:
                    e = other[0]
                    raise DataError(f"The target rejected a document in {collection}: "
                                    f"{mask_text(e.get('errmsg', ''))}", key=batch[e["index"]].get("_id"),
                                    table=collection) from None
                dups = [batch[e["index"]] for e in errors if e.get("code") == 11000]
                if dups:
                    self._resolve_duplicates(coll, dups, stats)
                pending = [batch[e["index"]] for e in throttled]
                if pending:
                    waits += 1
                    if waits > THROTTLE_ATTEMPTS:
                        raise TransientError(f"The target kept throttling writes to {collection} "
                                             f"({len(pending)} documents refused {waits} times)",
                                             table=collection) from None
                    delay = max(_throttled_error(e) for e in throttled)
                    stats.throttled += len(pending)
                    log.warning("Target throttled %d of %d documents for %s; sending them again in %.1f s",
                                len(pending), len(batch), collection, delay)
                    time.sleep(delay)
            except DocumentTooLarge:
                big = max(batch, key=lambda d: len(BSON.encode(d)))
                raise DataError(f"A document for {collection} is larger than MongoDB's 16 MB limit "
                                f"({len(BSON.encode(big)) / 1e6:.1f} MB)", key=big.get("_id"),
                                table=collection) from None

    def _resolve_duplicates(self, coll, docs: list[dict], stats: WriteStats) -> None:
        by_id = {_hashable(d["_id"]): d for d in docs}
        stored = {_hashable(d["_id"]): d for d in find_by_ids(coll, [d["_id"] for d in docs])}
        replace = []
        for key, doc in by_id.items():
            if key in stored and same_value(stored[key], doc):
                stats.skipped_identical += 1
            else:
                replace.append(pymongo.ReplaceOne({"_id": doc["_id"]}, doc, upsert=True))
        if replace:
            try:
                _retry(lambda: coll.bulk_write(replace, ordered=False), f"replace in {coll.name}")
            except BulkWriteError as exc:
                e = exc.details.get("writeErrors", [{}])[0]
                raise DataError(f"Cannot write a document of {coll.name}: {mask_text(e.get('errmsg', ''))}",
                                table=coll.name, key=e.get("op", {}).get("_id")) from None
            stats.replaced += len(replace)

    def find_ids(self, collection: str, ids: list) -> set:
        return {_hashable(d["_id"]) for d in find_by_ids(self.db[collection], ids, {"_id": 1})}

    def update_by_id(self, collection: str, updates: list[tuple]) -> None:
        """updates: (_id, {field: value}) pairs, applied with $set."""
        stats = self.stats.setdefault(collection, WriteStats())
        ops = [pymongo.UpdateOne({"_id": _id}, {"$set": fields}) for _id, fields in updates]
        for i in range(0, len(ops), MAX_BATCH_DOCS):
            chunk = ops[i:i + MAX_BATCH_DOCS]
            res = _retry(lambda: self.db[collection].bulk_write(chunk, ordered=False), f"update {collection}")
            stats.updated += res.matched_count

    def write_marker(self, marker: str, doc: dict) -> None:
        _retry(lambda: self.db[marker].replace_one({"_id": doc["_id"]}, doc, upsert=True), "write marker")

    # ------------------------------------------------------------------ indexes
    def create_indexes(self, collection: str, specs: list[dict], on_index=None) -> list[IndexResult]:
        """Build `specs` on `collection`; on_index(0, name) as each starts, on_index(1, "") when built."""
        results = []
        coll = self.db[collection]
        for spec in specs:
            if on_index:
                on_index(0, f"{collection}.{spec['name']}")
            keys = [(k, int(d)) for k, d in spec["keys"]]
            unique = bool(spec.get("unique", False))
            kwargs = {"name": spec["name"]}
            if unique:
                kwargs["unique"] = True
            try:
                _retry(lambda: coll.create_index(keys, **kwargs), f"index {spec['name']}")
            except OperationFailure as exc:
                if exc.code == 11000 or "duplicate key" in str(exc):
                    raise DataError(f"Unique index {spec['name']} cannot be built on {collection}: "
                                    f"the data has duplicates ({_short(exc)})", table=collection,
                                    hint="two source rows map to the same unique key (e.g. equal names "
                                         "in different MLflow workspaces)") from None
                raise MigrationError(f"Cannot create index {spec['name']} on {collection}: {_short(exc)}") from None
            if on_index:
                on_index(1, "")
        found = {ix["name"]: ix for ix in coll.list_indexes()}
        for spec in specs:
            ix = found.get(spec["name"])
            want = [(k, int(d)) for k, d in spec["keys"]]
            ok = ix is not None and list(ix["key"].items()) == want and \
                bool(ix.get("unique", False)) == bool(spec.get("unique", False))
            results.append(IndexResult(collection, spec["name"], want, bool(spec.get("unique")), ok,
                                       "" if ok else f"found {dict(ix) if ix else 'nothing'}"))
        return results

    def close(self) -> None:
        self.client.close()


def _chunks(docs: list[dict], max_docs: int = None, max_bytes: int = None):
    """Slices of at most `max_docs` documents and roughly `max_bytes` (estimated from a sample)."""
    max_docs = max_docs or MAX_BATCH_DOCS
    max_bytes = max_bytes or MAX_BATCH_BYTES
    if len(docs) <= min(1000, max_docs):
        yield docs
        return
    start = 0
    sample = max(1, len(docs) // 50)
    avg = sum(len(BSON.encode(docs[i])) for i in range(0, len(docs), sample)) / len(range(0, len(docs), sample))
    per = max(1, min(max_docs, int(max_bytes / max(avg, 1))))
    while start < len(docs):
        yield docs[start:start + per]
        start += per


def _retry(fn, what: str, attempts: int = 6):
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except (AutoReconnect, ConnectionFailure) as exc:
            if attempt == attempts:
                raise TransientError(f"Target unavailable during {what} after {attempts} attempts: "
                                     f"{_short(exc)}") from None
            log.warning("Transient target error during %s (attempt %d/%d): %s; retrying in %.1f s",
                        what, attempt, attempts, _short(exc), delay)
        except OperationFailure as exc:
            retry_after = _throttled(exc)
            if retry_after is None or attempt == attempts:
                raise
            delay = max(delay, retry_after)
            log.warning("Target throttled %s (code %s); retrying in %.1f s", what, exc.code, delay)
        time.sleep(delay)
        delay = min(delay * 2, 30)


def _throttled_error(e: dict) -> float | None:
    """A per-document write error that is Cosmos DB throttling: seconds to wait, else None."""
    if e.get("code") in (16500, 429) or "TooManyRequests" in str(e.get("errmsg", "")):
        import re
        m = re.search(r"RetryAfterMs[=:]\s*(\d+)", str(e.get("errmsg", "")))
        return int(m.group(1)) / 1000 if m else 1.0
    return None


def _throttled(exc: OperationFailure) -> float | None:
    """Cosmos DB request-rate errors (16500 / 429): how long the server asks us to wait."""
    if exc.code in (16500, 429) or "TooManyRequests" in str(exc):
        text = str(exc.details or exc)
        import re
        m = re.search(r"RetryAfterMs[=:]\s*(\d+)", text)
        return int(m.group(1)) / 1000 if m else 1.0
    return None


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return mask_text(text[:300])


def _hashable(v):
    if isinstance(v, dict):
        return tuple((k, _hashable(x)) for k, x in v.items())
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    return v


# ----------------------------------------------------------------------------- the Writer protocol
class MongoTablesWriter:
    """A Writer (dbmigrate.model) of the lossless `tables` layout: one collection per table, the
    same documents the MongoDB end (dbmigrate.ends.mongo) writes for that layout (schema_maps/tables.json compiled by
    dbmigrate.plan.tables_spec, converters of dbmigrate.converters), through a MongoWriter.

    The marker document (`_dbmigrate_meta`, _id "migration") says layout `tables`, the MLflow
    revision, the status, and the schema it was given (columns with type tags, primary keys), so
    dbmigrate.readers.mongo reads every table back with its exact types."""

    def __init__(self, uri: DatabaseURI, *, timeout_ms: int = 10_000, flavor: str = "auto"):
        self.mongo = MongoWriter(uri, timeout_ms=timeout_ms, flavor=flavor)
        self.plans: dict = {}
        self.schema: dict = {}
        self.revision: str | None = None
        self._caps = None

    @property
    def capabilities(self):
        from dbmigrate.model import Capabilities
        if self._caps is None:
            secantus = bool(self.mongo.ping().get("secantus"))
            self._caps = Capabilities(
                # SecantusDB deadlocks under concurrent writes (see dbmigrate.ends.mongo).
                parallel_writers=1 if secantus else None,
                unique_indexes_first=self.mongo.is_cosmos,
                durable_writes=True,        # acknowledged with j=True before write returns
                keeps_negative_zero=True)   # a BSON double keeps every bit
        return self._caps

    def begin(self, schema, revision: str | None) -> None:
        """Compile each table's collection; refuse (TargetNotEmpty) a complete copy or foreign
        data; accept an interrupted run of this layout (its parts are cleared by delete_part);
        record the marker (status "running") and make every collection, empty ones too."""
        from dbmigrate.plan import tables_spec
        from dbmigrate.schema_maps import compile_collection, load_map
        rules = load_map("tables")
        self.marker = rules.get("marker_collection", "_dbmigrate_meta")
        self.schema, self.revision = dict(schema), revision
        self.plans = {name: compile_collection(tables_spec(t, rules, name), t, target_name=name,
                                               tables=self.schema)
                      for name, t in self.schema.items()}
        found = self.mongo.db[self.marker].find_one({"_id": "migration"})
        if found and (found.get("status") == "complete" or found.get("layout") != "tables"):
            raise TargetNotEmpty(f"The target database {self.mongo.db.name!r} already holds a "
                                 f"{found.get('status')} copy in the {found.get('layout')} layout",
                                 hint="point the target at an empty database, or drop it first")
        if not found:
            self.mongo.require_empty(list(self.plans), self.marker)
        existing = set(self.mongo.db.list_collection_names())
        for name in self.plans:
            if name not in existing:
                self.mongo.db.create_collection(name)
        if self.mongo.is_cosmos:
            for name, cp in self.plans.items():
                self.mongo.create_indexes(name, [i for i in cp.spec.get("indexes", []) if i.get("unique")])
        self._marker("running")

    def _marker(self, status: str) -> None:
        import datetime as dt
        from dbmigrate import __version__
        self.mongo.write_marker(self.marker, {
            "_id": "migration", "layout": "tables", "tool": f"dbmigrate {__version__}",
            "source_revision": self.revision, "status": status,
            "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "schema": {name: {"columns": [[c.name, c.type, c.nullable] for c in t.columns],
                              "primary_key": list(t.pk)} for name, t in self.schema.items()}})

    def write(self, table: str, columns, rows: list[tuple]) -> None:
        """Rows of canonical values -> the tables-layout documents -> one unordered bulk insert
        (a rerun's identical documents are skipped, see MongoWriter). A value of a type its column
        does not allow is refused, never converted (the converters would turn 1 into True)."""
        from dbmigrate.assemble import build_documents
        from dbmigrate.model import CANONICAL_TYPES
        cp = self.plans.get(table)
        if cp is None:
            raise MigrationError(f"Table {table!r} was not in the schema given to begin()", table=table)
        if not rows:
            return
        columns = list(columns)
        missing = [c for c in cp.columns if c not in columns]
        if missing:
            raise DataError(f"The rows lack columns {missing}: a tables-layout document has every column",
                            table=table, column=missing[0])
        t = self.schema[table]
        kidx = [columns.index(k) for k in t.pk if k in columns]
        for i, name in enumerate(columns):
            col = t.column(name)
            allowed = CANONICAL_TYPES[col.type] if col else ()
            for row in rows:
                v = row[i]
                if v is not None and type(v) not in allowed:
                    k = tuple(row[j] for j in kidx)
                    raise DataError(f"{type(v).__name__} value {v!r:.60} in a column of type "
                                    f"{col.type if col else 'unknown'}; nothing is converted silently",
                                    table=table, column=name, key=(k[0] if len(k) == 1 else k) or None)
        order = [columns.index(c) for c in cp.columns]
        if order != list(range(len(columns))):
            rows = [tuple(r[j] for j in order) for r in rows]
        self.mongo.write(table, build_documents(cp, None, rows))

    def delete_part(self, table: str, part) -> int:
        return self.mongo.delete_part(table, part[0] if part else None, part)

    def finalize(self) -> dict:
        """Build each collection's indexes (after the data), mark the copy complete; returns
        {table: {"rows": documents in the collection, "indexes": n}}."""
        out = {}
        for name, cp in self.plans.items():
            results = self.mongo.create_indexes(name, cp.spec.get("indexes", []))
            bad = [r for r in results if not r.ok]
            if bad:
                raise MigrationError(f"Index {bad[0].name} is not as specified: {bad[0].detail}", table=name)
            out[name] = {"rows": self.mongo.db[name].count_documents({}), "indexes": len(results)}
        self._marker("complete")
        return out

    def close(self) -> None:
        if self.mongo is not None:
            self.mongo.close()
