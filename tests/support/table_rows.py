"""Every table's rows of a SQL database, for row-by-row comparisons in the sync tests.

pg_rows: PostgreSQL's own text form of each row (exact, PostgreSQL only).
canonical_rows: dbmigrate's SQL reader's canonical values (what its converters and checksums see),
so a PostgreSQL database and a MySQL/MariaDB or SQLite one can be compared table by table; floats
are compared by their bits (NaN, -0.0 and the infinities stay distinguishable)."""

from __future__ import annotations

import struct
from collections import Counter

import psycopg2


def pg_rows(uri: str) -> dict[str, set[str]]:
    """Every table's rows as PostgreSQL's text form."""
    conn = psycopg2.connect(uri)
    try:
        cur = conn.cursor()
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        out = {}
        for (t,) in cur.fetchall():
            cur.execute(f'SELECT t::text FROM "{t}" t')
            out[t] = {r[0] for r in cur.fetchall()}
        return out
    finally:
        conn.close()


def _value(v):
    if isinstance(v, float):
        return ("f", struct.pack("<d", v))
    return v


def canonical_rows(uri: str, tables=None) -> dict[str, Counter]:
    """Per MLflow table (alembic_version included), the multiset of its rows as dbmigrate's reader
    gives them, columns in name order; generated columns left out."""
    from dbmigrate.readers.sql import SqlSource
    from dbmigrate.uri import parse_uri
    src = SqlSource(parse_uri(uri, role="source")).open()
    try:
        schema = src.inspect()
        out = {}
        for t in sorted(tables or schema.tables):
            cols = sorted(c.name for c in schema.tables[t].columns if not c.generated)
            rows = Counter()
            for batch in src.rows(t, cols, 5000):
                rows.update(tuple(_value(v) for v in r) for r in batch)
            out[t] = rows
        return out
    finally:
        src.close()


def mongo_docs(uri: str) -> dict[str, dict]:
    """Every collection's documents by _id (as repr, so ObjectIds and strings compare), each as its
    BSON bytes: equal means equal field for field, in order and type (and NaN equals NaN)."""
    import bson
    import pymongo
    client = pymongo.MongoClient(uri)
    try:
        db = client.get_default_database()
        return {c: {repr(d["_id"]): bson.encode(d) for d in db[c].find()} for c in db.list_collection_names()}
    finally:
        client.close()
