"""The migration plan: which target collection each source table feeds, in which order, and what
happens to tables a layout has no place for (copied in `tables` form under a prefix, or, with
--skip-unmapped, reported as skipped: never dropped silently)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dbmigrate.errors import ConfigError
from dbmigrate.mlflow_schema import DERIVED_TABLES, load_rank
from dbmigrate.readers.sql import SourceSchema, Table
from dbmigrate.schema_maps import CollectionPlan, compile_collection, load_map


@dataclass
class MergePlan:
    collection: str     # target collection the rows merge into
    table: str          # source table
    plan: CollectionPlan
    set_fields: list[str]


@dataclass
class Plan:
    layout: str
    map: dict
    schema: SourceSchema
    collections: list[CollectionPlan] = field(default_factory=list)
    merges: list[MergePlan] = field(default_factory=list)
    destinations: dict[str, str] = field(default_factory=dict)   # source table -> where it goes
    copies: dict[str, str] = field(default_factory=dict)         # source table -> tables-form collection
    skipped: dict[str, str] = field(default_factory=dict)        # source table -> why
    partial: dict[str, dict] = field(default_factory=dict)       # source table -> kept rows rule
    marker: str = "_dbmigrate_meta"

    @property
    def target_names(self) -> list[str]:
        return [c.name for c in self.collections]

    def collection(self, spec_name: str) -> CollectionPlan | None:
        return next((c for c in self.collections if c.spec["name"] == spec_name), None)

    def account_key(self, cp: CollectionPlan) -> str:
        """Whose row count a collection's documents add to: its source table, or, for the
        tables-form copy of a table that is also embedded elsewhere, the copy itself."""
        if cp.spec.get("tables_form") and self.copies.get(cp.table) == cp.name and cp.table in self.partial:
            return cp.name
        return cp.table

    @property
    def table_form(self) -> list[CollectionPlan]:
        """Collections in `tables` form (one per table, columns as fields)."""
        return [c for c in self.collections if c.spec.get("tables_form")]


def collection_name(spec: dict) -> str:
    """The collection name, honouring the store's MLFLOW_MONGODB_*_COLLECTION overrides."""
    name = os.environ.get(spec["env"], spec["name"]) if spec.get("env") else spec["name"]
    if not name or "\x00" in name or "$" in name or name.startswith("system."):
        raise ConfigError(f"Invalid MongoDB collection name {name!r} (from {spec.get('env')})")
    return name


def make_plan(schema: SourceSchema, layout: str, *, skip_unmapped: bool = False) -> Plan:
    data = load_map(layout)
    plan = Plan(layout=layout, map=data, schema=schema,
                marker=data.get("marker_collection", "_dbmigrate_meta"))
    if layout == "tables":
        for table in sorted(schema.tables, key=load_rank):
            _add_table_copy(plan, schema.tables[table], data, table)
            plan.destinations[table] = table
        return plan
    _add_mapped(plan, schema, data)
    tables_rules = load_map("tables")
    prefix = tables_rules["unmapped_prefix"]
    ignored = data.get("ignored_tables", {})
    for table in sorted(schema.tables, key=load_rank):
        if table in plan.destinations and table not in plan.partial:
            continue
        if skip_unmapped:
            if table not in plan.destinations:
                plan.skipped[table] = ignored.get(table, f"no place in the {layout} layout (--skip-unmapped)")
            continue
        name = prefix + table
        _add_table_copy(plan, schema.tables[table], tables_rules, name)
        plan.copies[table] = name
        if table not in plan.destinations:
            why = ignored.get(table, f"no place in the {layout} layout")
            plan.destinations[table] = f"{name} (tables form: {why})"
    return plan


def _add_mapped(plan: Plan, schema: SourceSchema, data: dict) -> None:
    tables = schema.tables
    for spec in data["collections"]:
        if spec["source"] not in tables:
            continue  # older MLflow: the table (and so the collection's content) does not exist
        name = collection_name(spec)
        cp = compile_collection(spec, tables[spec["source"]], target_name=name, tables=tables)
        plan.collections.append(cp)
        plan.destinations.setdefault(spec["source"], name)
        for child in _children(cp.children):
            if child.count != "none" and child.on:
                plan.destinations.setdefault(child.table, f"{name} (embedded as {child.name})")
        if spec.get("merge") and spec["merge"]["table"] in tables:
            m = spec["merge"]
            merge_spec = {"name": f"{name} <- {m['table']}", "id": m["insert_id"],
                          "key": [], "fields": {"__match": m["match_id"], "__match_nan": m["match_id_nan"],
                                                **m["insert_fields"]}}
            mp = compile_collection(merge_spec, tables[m["table"]], target_name=name, tables=tables)
            mp.key = list(tables[m["table"]].pk)
            plan.merges.append(MergePlan(name, m["table"], mp, list(m["set"])))
            plan.destinations.setdefault(m["table"], f"{name} (model_id/dataset on the matching metric)")
    plan.partial = {t: v for t, v in data.get("partial_tables", {}).items() if t in tables}


def tables_spec(table: Table, rules: dict, name: str) -> dict:
    """The `tables`-layout collection spec of one SQL table, derived from its reflected columns."""
    types = rules["types"]
    cols = {c.name: c for c in table.columns}

    def expr(col):
        fn = types.get(col.type)
        return {"fn": fn, "args": [col.name]} if fn else col.name

    pk = table.pk or [c.name for c in table.columns if not c.generated]
    if len(pk) == 1:
        id_expr = expr(cols[pk[0]])
    else:
        id_expr = {"fn": "pk_document", "args": [{"const": list(pk)}] + [expr(cols[c]) for c in pk]}
    fields = {c.name: expr(c) for c in table.columns}
    return {"name": name, "source": table.name, "mode": "stream", "key": list(pk), "id": id_expr,
            "fields": fields, "indexes": table_indexes(table, rules, name),
            "tables_form": True, "generated": [c.name for c in table.columns if c.generated],
            "derived": table.name in DERIVED_TABLES,
            # --merge (dbmigrate.mongo_merge): an experiment / registered model of the same name is merged into
            **({"merge_container": {}} if table.name in ("experiments", "registered_models") else {})}


def table_indexes(table: Table, rules: dict, name: str) -> list[dict]:
    cols = set(table.column_names)
    out, seen = [], set()
    for ix in rules.get("indexes", {}).get(table.name, []):
        if ix.get("if_column") and ix["if_column"] not in cols:
            continue
        if ix.get("unless_column") and ix["unless_column"] in cols:
            continue
        keys = [list(k) for k in ix["keys"]]
        if any(k[0] not in cols for k in keys):
            continue
        out.append({"name": ix["name"], "keys": keys, **({"unique": True} if ix.get("unique") else {})})
        seen.add(tuple(k[0] for k in keys))
    not_null = {c.name for c in table.columns if not c.nullable}
    pk = tuple(table.pk)
    for ix in sorted(table.indexes, key=lambda i: (i["columns"], not i["unique"])):
        key = tuple(ix["columns"])
        if key in seen or key == pk:
            continue
        seen.add(key)
        unique = ix["unique"] and all(c in not_null for c in key)
        spec = {"name": f"{table.name}_{'_'.join(key)}"[:120], "keys": [[c, 1] for c in key]}
        if unique:
            spec["unique"] = True
        out.append(spec)
    return out


def _add_table_copy(plan: Plan, table: Table, rules: dict, name: str) -> None:
    spec = tables_spec(table, rules, name)
    cp = compile_collection(spec, table, target_name=name, tables=plan.schema.tables)
    plan.collections.append(cp)


def _children(children):
    for c in children:
        yield c
        yield from _children(c.children)
