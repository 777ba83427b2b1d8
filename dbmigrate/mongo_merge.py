"""`--merge` into a MongoDB target that already holds MLflow data (a live mlflow-mongodb store, or a
database an earlier dbmigrate run made), changing nothing else on it.

The source's rows become documents exactly as in a copy into an empty database (the layout's
schema map), then each document is compared with the target's document of the same identity:

- identity: the `_id` (run ids, logged-model ids, trace ids; ids dbmigrate derives from a row's
  key), or, for documents the mlflow-mongodb store made with ids of its own (random ObjectIds),
  the fields the layout's map names under `merge_match` (a registered model's name; a model
  version's model and number; a metric's run, key, timestamp, step and value);
- containers (`merge_container` in the map: experiments and registered models) found by name are
  merged into: the target's document is kept, the source's embedded entries (tags, aliases) it
  lacks are added, counters take the larger value; an entry of the same key with another value is
  a conflict. The source experiment's id becomes the target's (every experiment_id read from the
  source is changed on the way, dbmigrate.rewrite); an experiment id the target gives another
  experiment moves to the next free id; a model version points at the target's model document;
- any other document: absent -> inserted; equal -> skipped; different -> a conflict, handled by
  `--on-conflict fail` (every conflict listed before anything is written), `skip` (the target's
  document stays) or `overwrite` (replaced by the source's, keeping the target's `_id`). A model
  version whose number the target holds with other content is such a conflict: never renumbered.

The mlflow-mongodb layout's `tables`-form copies of tables that are also embedded (inputs,
datasets, ...) are written only into a target that has them already: in a store MLflow made, a
partial copy would hide the store's own rows from a later read of it (dbmigrate.readers.mongo
reads such a group from the copies when they exist).

The same comparison, run again after the writes, is the verification: every document of the
source must now be on the target as compared (or be a conflict kept under `skip`), and each
collection must have grown by exactly the documents inserted. A merge run again changes nothing.
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import pymongo

from dbmigrate.compare import diff_documents, show
from dbmigrate.errors import TargetNotEmpty
from dbmigrate.report import Check, Verification
from dbmigrate.writers.mongo import _hashable, find_by_ids

log = logging.getLogger("dbmigrate")

LIST_KEYS = ("k", "key", "alias")  # the identity field of an embedded entry (tag, alias)


class MongoMerge:
    def __init__(self, plan, db, policy: str):
        self.plan, self.db, self.policy = plan, db, policy
        self.existing = {n: db[n].count_documents({}) for n in db.list_collection_names()}
        self.model_ids: dict = {}        # the stable ObjectId dbmigrate gives a model name -> the target's _id
        self.conflicts: list[str] = []
        self.identical, self.inserted, self.merged, self.updated = Counter(), Counter(), Counter(), Counter()
        self.overwritten, self.skipped = Counter(), Counter()
        self.merged_experiments: dict = {}
        self.remapped: dict = {}
        self.merged_models: dict = {}
        self.not_written: dict[str, str] = {}  # collection -> why

    # ------------------------------------------------------------------ before anything is read
    def prepare(self, source) -> None:
        """Experiment ids matched by name or moved off taken ids, model documents by name; the
        tables-form copies this target must not get."""
        from dbmigrate.converters import registry_object_id
        from dbmigrate.rewrite import Rewriter
        plan = self.plan
        exp = plan.collection("experiments")
        if exp is not None:
            theirs = list(self.db[exp.name].find({}, {"name": 1, "experiment_id": 1}))
            by_name = {d.get("name"): d.get("experiment_id", d["_id"]) for d in theirs}
            taken = {str(d.get("experiment_id", d["_id"])): d.get("name") for d in theirs}
            mine = [r for rows in source.stream("experiments", ["experiment_id", "name"], 10_000) for r in rows]
            small = [int(i) for i in list(taken) + [str(r[0]) for r in mine] if str(i).isdigit() and len(str(i)) < 10]
            nxt = max(small, default=0) + 1
            mapping = {}
            for sid, name in sorted(mine, key=lambda r: str(r[0])):
                if name in by_name:
                    tid = by_name[name]
                    self.merged_experiments[str(sid)] = str(tid)
                    if str(tid) != str(sid):
                        mapping[sid] = tid
                elif str(sid) in taken:
                    mapping[sid] = nxt
                    self.remapped[str(sid)] = nxt
                    nxt += 1
            if mapping:
                source.rewriter = source.rewriter or Rewriter()
                source.rewriter.map_experiment_ids(mapping)
        models = plan.collection("registered_models")
        if models is not None and plan.layout != "tables":
            names = [r[0] for rows in source.stream("registered_models", ["name"], 10_000) for r in rows]
            for d in find_in(self.db[models.name], "name", names, {"name": 1}):
                self.model_ids[registry_object_id(None, d["name"])] = d["_id"]
                self.merged_models[d["name"]] = str(d["_id"])
        for cp in plan.collections:
            if (cp.spec.get("tables_form") and plan.layout != "tables" and cp.table in plan.partial
                    and cp.name not in self.existing):
                self.not_written[cp.name] = (f"{cp.table} is embedded in the target's documents and the "
                                             f"target has no {cp.name} copy")

    def skips(self, cp) -> bool:
        return cp.name in self.not_written

    # ------------------------------------------------------------------ one batch of documents
    def decide(self, cp, docs: list[dict]) -> list[tuple]:
        """The writes that put `docs` on the target: ('insert', doc), ('update', _id, fields),
        ('replace', _id, doc); counts and conflicts recorded on the way."""
        name = cp.spec["name"]
        fix = self.model_ids if name in ("model_versions", "registered_models") else None
        if fix:
            for d in docs:
                for f in ("registered_model_id", "_id"):
                    v = d.get(f)
                    if v in fix and not (f == "_id" and name == "model_versions"):
                        d[f] = fix[v]
        found = self.lookup(cp, docs)
        container = cp.spec.get("merge_container")
        ops = []
        for d in docs:
            got = found[id(d)]
            if got is None:
                ops.append(("insert", d))
                self.inserted[cp.name] += 1
                continue
            diffs = diff_documents(canonical({**d, "_id": None}), canonical({**got, "_id": None}))
            if container is not None:  # merged into: the target's document stays, entries are added
                fields, clashes = merge_container(d, got, container, self.policy)
                for c in clashes:
                    self.conflict(cp, got, c)
                if fields:
                    ops.append(("update", got["_id"], fields))
                    self.updated[cp.name] += 1
                (self.merged if diffs else self.identical)[cp.name] += 1
                continue
            if not diffs:
                self.identical[cp.name] += 1
                continue
            self.conflict(cp, got, diffs[0] + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""), d)
            if self.policy == "overwrite":
                ops.append(("replace", got["_id"], {**d, "_id": got["_id"]}))
                self.overwritten[cp.name] += 1
            else:
                self.skipped[cp.name] += 1
        return ops

    def conflict(self, cp, got: dict, what: str, doc: dict | None = None) -> None:
        what = what.replace("source ", "the source has ").replace(", target ", ", the target ")
        where = f"{cp.name} _id={show(got['_id'])}"
        if cp.spec["name"] == "model_versions" and doc is not None:  # name the version the way MLflow does
            model = next((n for n, i in self.merged_models.items() if i == str(got.get("registered_model_id"))), None)
            where += (f" (model {model!r} version {doc.get('version')}: the target holds this number with other "
                      "content; a version is never renumbered)") if model else ""
        self.conflicts.append(f"{where}: {what}")

    def lookup(self, cp, docs: list[dict]) -> dict:
        """id(doc) -> the target's document of the same identity, or None."""
        coll = self.db[cp.name]
        out = {id(d): None for d in docs}
        if not docs:
            return out
        by_id = {_hashable(g["_id"]): g for g in find_by_ids(coll, [d["_id"] for d in docs])}
        rest = []
        for d in docs:
            g = by_id.get(_hashable(d["_id"]))
            if g is not None:
                out[id(d)] = g
            else:
                rest.append(d)
        match = cp.spec.get("merge_match")
        if match and rest:
            key = lambda x: tuple(_key_value(x.get(f)) for f in match)  # noqa: E731
            theirs = {}
            for g in find_in(coll, match[0], [d.get(match[0]) for d in rest]):
                theirs.setdefault(key(g), g)
            for d in rest:
                out[id(d)] = theirs.get(key(d))
        return out

    # ------------------------------------------------------------------ writes
    def apply(self, writer, collection: str, ops: list[tuple], dry_run: bool) -> None:
        """Inserts through the writer (a dry run's recording writer records them); updates and
        replacements of the target's documents in one unordered bulk write (none in a dry run)."""
        inserts = [op[1] for op in ops if op[0] == "insert"]
        if inserts:
            writer.write(collection, inserts)
        others = [pymongo.UpdateOne({"_id": op[1]}, {"$set": op[2]}) if op[0] == "update" else
                  pymongo.ReplaceOne({"_id": op[1]}, op[2]) for op in ops if op[0] != "insert"]
        if others and not dry_run:
            self.db[collection].bulk_write(others, ordered=False)

    # ------------------------------------------------------------------ report and refusal
    def summary(self) -> dict:
        out = {"on_conflict": self.policy, "inserted": dict(self.inserted), "identical": dict(self.identical),
               "merged_into": dict(self.merged), "merged_experiments": self.merged_experiments,
               "remapped_experiments": self.remapped, "merged_models": self.merged_models,
               "conflicts": list(self.conflicts)}
        if self.not_written:
            out["not_written"] = dict(self.not_written)
        if self.policy == "skip":
            out["conflicts_skipped"] = dict(self.skipped)
        if self.policy == "overwrite":
            out["overwritten"] = dict(self.overwritten)
        return out

    def refuse(self, target_masked: str) -> None:
        if self.conflicts:
            raise TargetNotEmpty(
                f"--merge into {target_masked}: {len(self.conflicts)} documents differ from the target's "
                "documents of the same identity; nothing was written:\n  " + "\n  ".join(self.conflicts),
                hint="--on-conflict skip keeps the target's documents, --on-conflict overwrite the source's; "
                     "--rename-experiment / --rename-model copy under other names")

    def reset(self) -> None:
        for c in (self.identical, self.inserted, self.merged, self.updated, self.overwritten, self.skipped):
            c.clear()
        self.conflicts = []


def compare_all(merge: MongoMerge, docs_of) -> None:
    """Run `decide` over every document the source makes (nothing written)."""
    for cp in merge.plan.collections:
        if merge.skips(cp):
            continue
        for docs in docs_of(cp):
            merge.decide(cp, docs)


def verify_merge(merge: MongoMerge, docs_of, extra: dict) -> Verification:
    """The comparison again, after the writes: nothing left to insert or merge, conflicts only
    where --on-conflict skip kept the target's document; each collection grown by what was inserted
    (`extra`: documents the logged-model metric step added, dbmigrate.ends.mongo.merge_rows)."""
    ver = Verification(level="merge")
    inserted, skipped = dict(merge.inserted), dict(merge.skipped)
    merge.reset()
    compare_all(merge, docs_of)
    for cp in merge.plan.collections:
        if merge.skips(cp):
            continue
        left = merge.inserted[cp.name] + merge.updated[cp.name] + merge.overwritten[cp.name]
        kept = merge.skipped[cp.name]
        ok = left == 0 and kept == (skipped.get(cp.name, 0) if merge.policy == "skip" else 0)
        ver.values.append(Check(f"{cp.name} ({cp.table})", ok,
                                f"{merge.identical[cp.name]} equal on the target"
                                + (f", {kept} conflicts kept as the target has them" if kept else "")
                                + (f"; {left} documents still to write" if left else "")))
        before = merge.existing.get(cp.name, 0)
        now = merge.db[cp.name].count_documents({})
        grew, want = now - before, inserted.get(cp.name, 0) + extra.get(cp.name, 0)
        ver.counts.append(Check(f"{cp.name}", grew == want,
                                f"{before} documents before, {now} after: {grew} added, {want} inserted"))
    ver.failures += merge.conflicts if merge.policy != "skip" else []
    return ver


def merge_container(src: dict, tgt: dict, rules: dict, policy: str) -> tuple[dict, list[str]]:
    """The fields to $set on the target's container document: embedded lists with the source's
    entries added (an entry of the same key with another value is a conflict: overwritten under
    `overwrite`), counters at the larger value. Everything else stays the target's."""
    fields, clashes = {}, []
    for f in rules.get("lists", []):
        mine, theirs = src.get(f) or [], list(tgt.get(f) or [])
        if not mine:
            continue
        kf = next((k for k in LIST_KEYS if k in mine[0]), None)
        index = {e.get(kf): i for i, e in enumerate(theirs)}
        changed = False
        for e in mine:
            i = index.get(e.get(kf))
            if i is None:
                theirs.append(e)
                changed = True
            elif diff_documents(canonical(e), canonical(theirs[i])):
                clashes.append(f"{f} {e.get(kf)!r}: the source has {show(e)}, the target {show(theirs[i])}")
                if policy == "overwrite":
                    theirs[i] = e
                    changed = True
        if changed:
            fields[f] = theirs
    for f in rules.get("max", []):
        a, b = src.get(f), tgt.get(f)
        if a is not None and (b is None or a > b):
            fields[f] = a
    return fields, clashes


def canonical(doc):
    """For comparison only: embedded entry lists in key order (the store keeps insertion order);
    a field holding null left out, so it equals a field the document lacks (the mlflow-mongodb
    store writes no deleted_time on a live run, MLflow reads both as None)."""
    if isinstance(doc, dict):
        return {k: canonical(v) for k, v in doc.items() if v is not None}
    if isinstance(doc, list):
        items = [canonical(v) for v in doc]
        if items and all(isinstance(v, dict) for v in items):
            kf = next((k for k in LIST_KEYS if all(k in v for v in items)), None)
            if kf:
                return sorted(items, key=lambda v: str(v[kf]))
        return items
    return doc


def find_in(coll, field: str, values: list, projection=None):
    uniq = list({_hashable(v): v for v in values if v is not None}.values())
    for i in range(0, len(uniq), 500):
        yield from coll.find({field: {"$in": uniq[i:i + 500]}}, projection)


def _key_value(v):
    if isinstance(v, float) and math.isnan(v):
        return ("nan",)
    return _hashable(v)
