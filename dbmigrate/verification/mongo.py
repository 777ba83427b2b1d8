"""Verification of a MongoDB target against its SQL source.

- counts: source rows per table vs documents or embedded elements on the target;
- references: every run's experiment, metric's run, span's and assessment's trace, version's
  model, alias's version ... exists on the target (dangling exactly where the source dangles);
- values: the expected documents are rebuilt from the source with the same schema map and
  compared with the stored ones field by field (NaN equals NaN, infinities by sign, -0.0 is not
  0.0, types must agree). `sample` checks the first `sample_size` documents of each collection,
  `full` every document;
- indexes: every index the layout declares exists with its exact name, keys and options.
"""

from __future__ import annotations

import logging
import time

from dbmigrate.analyze import dangling_aliases
from dbmigrate.assemble import build_documents
from dbmigrate.compare import diff_documents
from dbmigrate.report import Check, Verification
from dbmigrate.writers.mongo import IN_BATCH, _hashable, find_by_ids

log = logging.getLogger("dbmigrate")

MAX_FAILURES_PER_COLLECTION = 50


def verify_mongo(plan, source, db, cfg, counts: dict, index_results=None, progress=None) -> Verification:
    """`progress` (dbmigrate.progress.Progress) counts the checks as they are done."""
    from dbmigrate.progress import Progress
    progress = progress or Progress()
    t0 = time.perf_counter()
    v = Verification(level=cfg.verify)
    deep = cfg.verify in ("sample", "full")
    progress.start_step(f"verify ({cfg.verify})", len(plan.map.get("counts", [])) + len(plan.map.get("references", []))
                        + (len(plan.table_form) + len(plan.collections) if deep else 0) + 1, "checks")
    tick = progress.next
    v.counts = check_counts(plan, source, db, counts, tick)
    v.references = check_references(plan, source, db, tick)
    if deep:
        v.checksums = check_checksums(plan, source, db, cfg, tick)
        equal = {c["name"]: c["rows"] for c in v.checksums if c["match"]}
        v.values, v.failures = check_values(plan, source, db, cfg, equal, tick)
    tick("indexes")
    if index_results is None:
        index_results = list_indexes(plan, db)
    v.indexes = [Check(f"index {r.collection}.{r.name}", r.ok, r.detail or "present") for r in index_results]
    progress.end_step()
    v.seconds = time.perf_counter() - t0
    return v


def _no_tick(what=""):
    pass


def _coll(plan, spec_name: str):
    cp = plan.collection(spec_name)
    return cp.name if cp else spec_name


# ----------------------------------------------------------------------------- counts
def check_counts(plan, source, db, counts: dict, tick=_no_tick) -> list[Check]:
    out = []
    q = source.q
    for spec in plan.map.get("counts", []):
        table = spec["table"]
        tick(f"count {table}")
        if table not in plan.schema.tables:
            continue
        coll = _coll(plan, spec["collection"])
        # Embedded rows need their parent document: count the rows whose parent exists. Other
        # rows count as they are read (orphans included unless they are skipped).
        expected = source.count(table, with_parent=True) if spec.get("unwind") else source.count(table)
        excl = spec.get("exclude_key")
        if excl:
            cond = source.orphan_condition(table, force=True)
            expected = source.count_where(table, f"{q(excl['column'])} <> {source._param}"
                                          + (f" AND {cond}" if cond else ""), (excl["value"],))
        if spec.get("plus") == "unmatched_logged_model_metrics":
            expected += unmatched_logged_model_metrics(source, plan.schema)
        if spec.get("unwind"):
            arr = spec["unwind"]
            pipeline = [{"$project": {"_x": f"${arr}"}}, {"$unwind": "$_x"}]
            if excl:
                pipeline.append({"$match": {f"_x.{excl['field']}": {"$ne": excl["value"]}}})
            pipeline.append({"$count": "n"})
            res = list(db[coll].aggregate(pipeline, allowDiskUse=True))
            found = res[0]["n"] if res else 0
            where = f"{coll}.{arr}[]"
        elif spec.get("match"):
            found = db[coll].count_documents(spec["match"])
            where = f"{coll} {spec['match']}"
        else:
            found = db[coll].count_documents({})
            where = coll
        name = f"{table} -> {where}" + (f" (without {excl['value']})" if excl else "")
        out.append(Check(name, found == expected, f"source {expected:,}, target {found:,}"))
    return out


def unmatched_logged_model_metrics(source, schema) -> int:
    """Logged-model metrics with no equal run metric: they become run_metrics documents of their own."""
    if "logged_model_metrics" not in schema.tables:
        return 0
    q = source.q
    cond = (f"NOT EXISTS (SELECT 1 FROM "
            f"{q('metrics')} m WHERE m.{q('run_uuid')} = l.{q('run_id')} AND m.{q('key')} = l.{q('metric_name')} "
            f"AND m.{q('timestamp')} = l.{q('metric_timestamp_ms')} AND m.{q('step')} = l.{q('metric_step')} "
            f"AND m.{q('value')} = l.{q('metric_value')})")
    return source.count_where("logged_model_metrics", cond, alias="l")


# ----------------------------------------------------------------------------- references
def check_references(plan, source, db, tick=_no_tick) -> list[Check]:
    out = []
    for ref in plan.map.get("references", []):
        tick(f"references {ref.get('name', '')}")
        if ref.get("kind") == "alias":
            out.append(_check_aliases(plan, source, db))
            continue
        src_child, src_col, src_parent, src_pcol = ref["source"]
        if src_child not in plan.schema.tables or src_parent not in plan.schema.tables:
            continue
        from_coll, from_field = _coll(plan, ref["from"][0]), ref["from"][1]
        to_coll, to_field = _coll(plan, ref["to"][0]), ref["to"][1]
        values = set(_hashable(x) for x in db[from_coll].distinct(from_field) if x is not None)
        present = set()
        vals = list(values)
        for i in range(0, len(vals), IN_BATCH):
            chunk = vals[i:i + IN_BATCH]
            present.update(_hashable(d[to_field]) for d in
                           db[to_coll].find({to_field: {"$in": chunk}}, {to_field: 1}))
        dangling = values - present
        expected = orphan_count_distinct(source, plan.schema, src_child, src_col, src_parent, src_pcol)
        ok = len(dangling) <= expected
        detail = f"{len(values):,} distinct references, {len(dangling)} dangling"
        if expected:
            detail += f" (the source has {expected} dangling: orphans copied as they are)"
        if not ok:
            sample = ", ".join(repr(x) for x in sorted(dangling, key=repr)[:5])
            detail += f"; e.g. {sample}"
        out.append(Check(ref["name"], ok, detail))
    return out


def orphan_count_distinct(source, schema, child, ccol, parent, pcol) -> int:
    q = source.q
    sql = (f"SELECT COUNT(DISTINCT c.{q(ccol)}) FROM {q(child)} c WHERE c.{q(ccol)} IS NOT NULL AND "
           f"NOT EXISTS (SELECT 1 FROM {q(parent)} p WHERE p.{q(pcol)} = c.{q(ccol)})")
    return int(source.query(sql)[0][0])


def _check_aliases(plan, source, db) -> Check:
    rm, mv = _coll(plan, "registered_models"), _coll(plan, "model_versions")
    versions = {(d["registered_model_id"], d["version"]) for d in
                db[mv].find({}, {"registered_model_id": 1, "version": 1})}
    total = dangling = 0
    bad = []
    for d in db[rm].find({"aliases.0": {"$exists": True}}, {"name": 1, "aliases": 1}):
        for a in d["aliases"]:
            total += 1
            if (d["_id"], a["version"]) not in versions:
                dangling += 1
                bad.append(f"{d['name']}@{a['alias']}->v{a['version']}")
    expected = dangling_aliases(source, plan.schema) if "registered_model_aliases" in plan.schema.tables else 0
    detail = f"{total} aliases, {dangling} pointing at a missing version"
    if bad and dangling > expected:
        detail += f": {', '.join(bad[:5])}"
    return Check("alias -> model version", dangling <= expected, detail)


# ----------------------------------------------------------------------------- values
def check_checksums(plan, source, db, cfg, tick=_no_tick) -> list[dict]:
    """Count + order-independent hash of every tables-form collection and its source table."""
    from dbmigrate.checksum import documents_checksum, source_checksum
    out = []
    for cp in plan.table_form:
        tick(f"checksum {cp.name}")
        cols = [c.name for c in plan.schema.tables[cp.table].columns]
        a = source_checksum(source, cp.table, cols, cfg.batch_size)
        b = documents_checksum(db[cp.name], cols)
        out.append({"name": cp.name, "table": cp.table, "source": str(a), "target": str(b),
                    "match": (a.count, a.total) == (b.count, b.total), "rows": a.count})
    return out


def check_values(plan, source, db, cfg, checksum_equal=None, tick=_no_tick) -> tuple[list[Check], list[str]]:
    """Rebuild expected documents and compare them with the stored ones. A tables-form collection
    whose checksum equals its table's is equal row for row; it is compared document by document
    only when the checksums differ, to name the differences."""
    checks, failures = [], []
    merges = _merge_updates(plan, source, cfg)
    for cp in plan.collections:
        tick(f"values {cp.name}")
        if cp.name in (checksum_equal or {}):
            n = checksum_equal[cp.name]
            checks.append(Check(f"{cp.name} ({cp.table})", True, f"{n}/{n} passed (checksums equal)"))
            continue
        limit = None if cfg.verify == "full" or cp.spec.get("tables_form") else cfg.sample_size
        passed = checked = 0
        coll_failures: list[str] = []
        batch = min(cfg.batch_size, limit) if limit else cfg.batch_size
        batches = (source.pages(cp.table, cp.columns, cp.key, batch) if limit or cp.grouped
                   else source.stream(cp.table, cp.columns, batch))
        key_idx = [cp.columns.index(k) for k in cp.key if k in cp.columns]
        for rows in batches:
            if limit is not None:
                rows = rows[: limit - checked]
            expected = build_documents(cp, source, rows)
            if cp.name in merges:
                for d in expected:
                    upd = merges[cp.name].get(_hashable(d["_id"]))
                    if upd:
                        d.update(upd)
            ids = [d["_id"] for d in expected]
            stored = {_hashable(d["_id"]): d for d in find_by_ids(db[cp.name], ids)}
            for row, d in zip(rows, expected):
                checked += 1
                got = stored.get(_hashable(d["_id"]))
                diffs = ["document missing on the target"] if got is None else diff_documents(d, got)
                if diffs:
                    key = tuple(row[i] for i in key_idx)
                    key = key[0] if len(key) == 1 else key
                    for diff in diffs:
                        if len(coll_failures) < MAX_FAILURES_PER_COLLECTION:
                            coll_failures.append(f"{cp.name} (source {cp.table} key {key!r}, "
                                                 f"_id {d['_id']!r}) {diff}")
                else:
                    passed += 1
            if limit is not None and checked >= limit:
                break
        checks.append(Check(f"{cp.name} ({cp.table})", passed == checked, f"{passed}/{checked} passed"))
        failures += coll_failures
    return checks, failures


def _merge_updates(plan, source, cfg) -> dict:
    """Fields the merge step set on documents (logged-model metrics), keyed by document _id."""
    out: dict = {}
    for mp in plan.merges:
        if source.count(mp.table) > 1_000_000:
            continue  # too many to hold; merged fields are still checked by the counts
        upd = out.setdefault(mp.collection, {})
        for rows in source.stream(mp.table, mp.plan.columns, cfg.batch_size):
            for d in build_documents(mp.plan, source, rows):
                fields = {f: d[f] for f in mp.set_fields}
                upd.setdefault(_hashable(d["__match"]), fields)
                if d.get("v") in (0, 0.0):
                    upd.setdefault(_hashable(d["__match_nan"]), fields)
    return out


def list_indexes(plan, db):
    from dbmigrate.writers.mongo import IndexResult
    out = []
    for cp in plan.collections:
        found = {ix["name"]: ix for ix in db[cp.name].list_indexes()}
        for spec in cp.spec.get("indexes", []):
            ix = found.get(spec["name"])
            want = [(k, int(d)) for k, d in spec["keys"]]
            ok = ix is not None and list(ix["key"].items()) == want and \
                bool(ix.get("unique", False)) == bool(spec.get("unique", False))
            out.append(IndexResult(cp.name, spec["name"], want, bool(spec.get("unique")), ok,
                                   "" if ok else f"expected keys {want}, found {dict(ix['key']) if ix else 'no such index'}"))
    return out
