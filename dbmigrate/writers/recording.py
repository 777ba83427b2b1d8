"""The dry-run writer: the real plan runs against it and it records what would be written
(documents, bytes, the largest document), checking what the target would check (document size),
while the target itself is only read (reachability, emptiness)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dbmigrate.errors import DataError

# The MongoDB writer's figures are imported where they are used: a dry run into a SQL target
# needs only RecordingSqlWriter, and pymongo's import is ~0.3 s of a small migration.


@dataclass
class RecordingWriter:
    target: object  # a MongoWriter used only for reads
    docs: dict = field(default_factory=dict)
    bytes: dict = field(default_factory=dict)
    largest: int = 0
    stats: dict = field(default_factory=dict)
    fresh: dict = field(default_factory=dict)   # collection -> [documents, bytes, largest] since take()

    @property
    def db(self):
        return self.target.db

    @property
    def is_cosmos(self) -> bool:
        return self.target.is_cosmos

    def ping(self):
        return self.target.ping()

    def require_empty(self, names, marker):
        return self.target.require_empty(names, marker)

    def drop_collections(self, names):
        return []

    def delete_part(self, collection, field, part):
        return 0

    def write(self, collection: str, docs: list[dict]):
        from bson import encode as _encode

        from dbmigrate.writers.mongo import MAX_DOC_BYTES, WriteStats
        stats = self.stats.setdefault(collection, WriteStats())
        # bson.encode, not BSON.encode (which copies the bytes into a BSON object), mapped over
        # the batch: the same bytes, one C call per document and no Python step per document.
        sizes = list(map(len, map(_encode, docs)))
        size, biggest = sum(sizes), max(sizes, default=0)
        if biggest > MAX_DOC_BYTES:
            i = next(i for i, n in enumerate(sizes) if n > MAX_DOC_BYTES)  # the first, as MongoDB would
            raise DataError(f"A document for {collection} would be {sizes[i] / 1e6:.1f} MB, over "
                            "MongoDB's 16 MB limit", key=docs[i].get("_id"), table=collection)
        self.largest = max(self.largest, biggest)
        self.docs[collection] = self.docs.get(collection, 0) + len(docs)
        self.bytes[collection] = self.bytes.get(collection, 0) + size
        fresh = self.fresh.setdefault(collection, [0, 0, 0])
        fresh[0] += len(docs)
        fresh[1] += size
        fresh[2] = max(fresh[2], biggest)
        stats.inserted += len(docs)
        return stats

    def take(self) -> dict:
        """What was recorded since the last take, to go back with a part's result: a worker
        process records in its own RecordingWriter, which the main process's never sees."""
        out, self.fresh = {"pid": os.getpid(), "collections": self.fresh}, {}
        return out

    def absorb(self, taken: dict) -> None:
        """Add what a worker process recorded (the main process's own records are here already)."""
        from dbmigrate.writers.mongo import WriteStats
        if taken.get("pid") == os.getpid():
            return
        for collection, (docs, size, largest) in taken.get("collections", {}).items():
            self.docs[collection] = self.docs.get(collection, 0) + docs
            self.bytes[collection] = self.bytes.get(collection, 0) + size
            self.largest = max(self.largest, largest)
            self.stats.setdefault(collection, WriteStats()).inserted += docs

    def find_ids(self, collection, ids):
        return set(ids[: len(ids) // 2])  # assume every merge finds its document

    def update_by_id(self, collection, updates):
        from dbmigrate.writers.mongo import WriteStats
        self.stats.setdefault(collection, WriteStats()).updated += len(updates)

    def write_marker(self, marker, doc):
        pass

    def create_indexes(self, collection, specs, on_index=None):
        from dbmigrate.writers.mongo import IndexResult
        if on_index:
            on_index(len(specs), "")
        return [IndexResult(collection, s["name"], s["keys"], bool(s.get("unique")), True,
                            "not created (dry run)") for s in specs]

    def summary(self) -> str:
        total = sum(self.docs.values())
        mb = sum(self.bytes.values()) / 1e6
        return f"{total:,} documents, {mb:,.1f} MB of BSON, largest document {self.largest / 1e3:,.1f} kB"

    def close(self):
        self.target.close()


class RecordingSqlWriter:
    """The dry-run writer of a SQL target: the copy hands it every batch, as it would the real
    writer, and it records rows and bytes per table; the target is only read (its schema, for the
    columns a batch fills), never written."""

    def __init__(self, target):
        self.target = target  # a SqlWriter opened read-only
        self.rows: dict[str, int] = {}
        self.bytes = 0

    def insert_rows(self, table: str, columns, rows: list[tuple], key_columns=()) -> None:
        self.rows[table] = self.rows.get(table, 0) + len(rows)
        self.bytes += sum(len(v) if isinstance(v, (str, bytes)) else 8 for r in rows for v in r)

    def write(self, table: str, columns, rows: list[tuple]) -> None:
        self.insert_rows(table, columns, rows)

    def delete_part(self, table, part) -> int:
        return 0

    def summary(self) -> str:
        return (f"{sum(self.rows.values()):,} rows into {len(self.rows)} tables, about "
                f"{self.bytes / 1e6:,.1f} MB of values")

    def __getattr__(self, name):  # reads go to the target
        return getattr(self.target, name)
