"""Load, check and compile the schema maps in `schema_maps/*.json`.

A map says, as data, how source tables become target documents: for each target collection its
driving table, `_id`, fields and embedded children, and its indexes. Field values are small
expressions: a column name ("col", or "?col" when the column only exists in some MLflow
versions), {"const": v}, {"child": name}, {"field": name} (another field of the same document),
{"row": true}, {"cols": [...]} or {"fn": converter, "args": [...]}.

`compile_collection` turns one collection into a fast Python function (generated source, one list
comprehension for the whole batch where it can) bound to the columns the source really has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dbmigrate import converters
from dbmigrate.errors import ConfigError, DataError, SchemaError

MAP_DIR = Path(__file__).resolve().parent.parent / "schema_maps"
_PACKAGED_DIR = Path(__file__).resolve().parent / "schema_maps_data"

_COLLECTION_KEYS = {"name", "env", "source", "mode", "key", "id", "fields", "children", "merge",
                    "indexes", "note", "requires", "part_field", "merge_match", "merge_container"}
_CHILD_KEYS = {"name", "table", "on", "parent", "columns", "where", "children", "count"}


def map_path(layout: str) -> Path:
    for base in (MAP_DIR, _PACKAGED_DIR):
        p = base / f"{layout}.json"
        if p.exists():
            return p
    known = sorted(p.stem for p in MAP_DIR.glob("*.json")) if MAP_DIR.exists() else []
    raise ConfigError(f"Unknown layout {layout!r}", hint=f"known layouts: {', '.join(known)}")


def load_map(layout: str) -> dict:
    path = map_path(layout)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"Schema map {path.name} is not valid JSON: {exc}") from None
    check_map(data, path.name)
    return data


def check_map(data: dict, where: str) -> None:
    """Structural check: unknown keys and unknown converters are errors, named."""
    for coll in data.get("collections", []):
        unknown = set(coll) - _COLLECTION_KEYS
        if unknown:
            raise ConfigError(f"{where}: collection {coll.get('name')!r} has unknown keys {sorted(unknown)}")
        exprs = [coll.get("id")] + list(coll.get("fields", {}).values())
        if coll.get("merge"):
            m = coll["merge"]
            exprs += [m.get("match_id"), m.get("match_id_nan"), m.get("insert_id")]
            exprs += list(m.get("set", {}).values()) + list(m.get("insert_fields", {}).values())
        for e in exprs:
            _check_expr(e, f"{where}: {coll.get('name')}")
        for child in _walk_children(coll.get("children", [])):
            unknown = set(child) - _CHILD_KEYS
            if unknown:
                raise ConfigError(f"{where}: child {child.get('name')!r} has unknown keys {sorted(unknown)}")


def _walk_children(children):
    for c in children:
        yield c
        yield from _walk_children(c.get("children", []))


def _check_expr(e, where):
    if e is None or isinstance(e, str):
        return
    if not isinstance(e, dict):
        raise ConfigError(f"{where}: bad expression {e!r}")
    if "fn" in e:
        try:
            converters.get(e["fn"])
        except KeyError as exc:
            raise ConfigError(f"{where}: {exc.args[0]}") from None
        for a in e.get("args", []):
            _check_expr(a, where)
    elif not ({"const", "child", "field", "row", "cols"} & set(e)):
        raise ConfigError(f"{where}: bad expression {e!r}")


# ----------------------------------------------------------------------------- compiled plans
@dataclass
class ChildPlan:
    name: str
    table: str
    columns: list[str]           # columns present in the source, in select order
    missing: list[str]           # optional columns absent from this source (None in rows)
    on: list[str]                # child columns matched against parent values
    parent: list[str]            # parent columns (or parent-child columns) providing the values
    where: dict
    children: list["ChildPlan"] = field(default_factory=list)
    count: str = "rows"          # rows | distinct | none: how fetched rows count as migrated

    @property
    def fetch_column(self) -> str:
        return self.on[0]


@dataclass
class CollectionPlan:
    name: str                    # target collection (after env overrides)
    spec: dict
    table: str
    columns: list[str]           # source columns selected, in row-tuple order
    key: list[str]               # unique key for paging / identification
    children: list[ChildPlan]
    build_many: Callable         # (rows, children_per_row | None) -> list[dict]
    build_one: Callable          # (row, ch) -> dict, used to find the failing field
    field_fns: dict              # field -> fn(row, ch, done) for error reporting
    source: Any = None

    @property
    def grouped(self) -> bool:
        return bool(self.children)


def _col_name(ref: str) -> tuple[str, bool]:
    return (ref[1:], True) if ref.startswith("?") else (ref, False)


def compile_collection(spec: dict, table, *, target_name: str | None = None,
                       tables: dict | None = None) -> CollectionPlan:
    """Compile one collection spec against the reflected source `table` (readers.sql.Table)."""
    present = set(table.column_names)
    used: list[str] = []

    def col(ref: str, where: str) -> str | None:
        name, optional = _col_name(ref)
        if name not in present:
            if optional:
                return None
            raise SchemaError(f"Schema map {spec['name']!r} needs column {name!r}, which the source "
                              f"table lacks", table=table.name, column=name)
        if name not in used:
            used.append(name)
        return name

    key = [c for c in (col(k, "key") for k in spec.get("key", table.pk)) if c]
    consts: dict[str, Any] = {}
    fns: dict[str, Callable] = {}
    needs_rowdict = [False]
    field_order = list(spec.get("fields", {}))

    def expr(e, where: str) -> tuple[str, set[str]]:
        """Python source for expression `e`, plus the document fields it depends on."""
        if isinstance(e, str):
            c = col(e, where)
            return ("None" if c is None else f"row[{used.index(c)}]"), set()
        if "const" in e:
            name = f"_c{len(consts)}"
            consts[name] = e["const"]
            return name, set()
        if "child" in e:
            return f"ch[{e['child']!r}]", set()
        if "field" in e:
            return f"f_{e['field']}", {e["field"]}
        if "row" in e:
            needs_rowdict[0] = True
            return "_rowd", set()
        if "cols" in e:
            guard = e.get("if_column")
            if guard and guard not in present:
                return "None", set()
            parts = []
            for ref in e["cols"]:
                c = col(ref, where)
                parts.append(f"{_col_name(ref)[0]!r}: " + ("None" if c is None else f"row[{used.index(c)}]"))
            return "{" + ", ".join(parts) + "}", set()
        fname = f"_fn_{e['fn']}"
        fns[fname] = converters.get(e["fn"])
        srcs, deps = [], set()
        for a in e.get("args", []):
            s, d = expr(a, where)
            srcs.append(s)
            deps |= d
        return f"{fname}({', '.join(srcs)})", deps

    id_src, id_deps = expr(spec["id"], "_id") if spec.get("id") is not None else ("None", set())
    field_srcs: dict[str, tuple[str, set[str]]] = {}
    for fname, fexpr in spec.get("fields", {}).items():
        field_srcs[fname] = expr(fexpr, fname)

    # Fields other fields refer to become locals, evaluated in dependency order.
    referenced = set(id_deps).union(*(d for _, d in field_srcs.values())) if field_srcs else set(id_deps)
    order: list[str] = []

    def visit(f, stack=()):
        if f in order:
            return
        if f in stack:
            raise ConfigError(f"Schema map {spec['name']!r}: fields refer to each other in a cycle: {stack}")
        for d in field_srcs[f][1]:
            visit(d, stack + (f,))
        order.append(f)

    for f in sorted(referenced):
        if f not in field_srcs:
            raise ConfigError(f"Schema map {spec['name']!r}: field {f!r} is referenced but not defined")
        visit(f)

    # Make every selected column known before generating code (col() appends as it goes):
    # the columns children join on, and the primary key.
    for c in spec.get("children", []):
        for p in c.get("parent", []):
            col(p if p.startswith("?") else "?" + p, "children")
    for k in table.pk:
        if k in present and k not in used:
            used.append(k)
    if needs_rowdict[0]:  # {"row": true}: the converter sees every stored column
        used.extend(c.name for c in table.columns if c.name not in used and not c.generated)
    columns = list(used)

    lines_pre = []
    if needs_rowdict[0]:
        lines_pre.append("_rowd = dict(zip(_COLS, row))")
    for f in order:
        lines_pre.append(f"f_{f} = {field_srcs[f][0]}")
    items = []
    if spec.get("id") is not None:
        items.append(f"'_id': {id_src}")
    for f in field_order:
        items.append(f"{f!r}: " + (f"f_{f}" if f in order else field_srcs[f][0]))
    dict_src = "{" + ", ".join(items) + "}"

    ns: dict[str, Any] = {"_COLS": columns, **consts, **fns}
    if lines_pre:
        body = "\n".join("        " + ln for ln in lines_pre)
        src = (f"def build_many(rows, chs):\n    out = []\n    app = out.append\n"
               f"    for i, row in enumerate(rows):\n        ch = chs[i] if chs is not None else None\n"
               f"{body}\n        app({dict_src})\n    return out\n")
    else:
        src = (f"def build_many(rows, chs):\n"
               f"    if chs is None:\n        ch = None\n        return [{dict_src} for row in rows]\n"
               f"    return [{dict_src} for row, ch in zip(rows, chs)]\n")
    one_pre = "\n".join("    " + ln for ln in lines_pre)
    src += f"def build_one(row, ch):\n{one_pre}\n    return {dict_src}\n"
    exec(compile(src, f"<schema map {spec['name']}>", "exec"), ns)  # noqa: S102 - generated from the map

    # One function per field, to name the failing field and value when a row cannot be converted.
    field_fns = {}
    for f in (["_id"] if spec.get("id") is not None else []) + field_order:
        s = id_src if f == "_id" else field_srcs[f][0]
        pre = "_rowd = dict(zip(_COLS, row)); " if needs_rowdict[0] else ""
        fsrc = f"def _f(row, ch, done):\n    {pre}" + \
            "".join(f"f_{d} = done[{d!r}]; " for d in order) + f"\n    return {s}\n"
        fns_ns = dict(ns)
        exec(compile(fsrc.replace("; \n", "\n"), f"<field {f}>", "exec"), fns_ns)  # noqa: S102
        field_fns[f] = fns_ns["_f"]

    children = [_compile_child(c, tables or {}, spec["name"]) for c in spec.get("children", [])]
    return CollectionPlan(name=target_name or spec["name"], spec=spec, table=table.name,
                          columns=columns, key=key or list(table.pk), children=children,
                          build_many=ns["build_many"], build_one=ns["build_one"], field_fns=field_fns)


def _compile_child(c: dict, tables: dict, coll: str) -> ChildPlan:
    t = tables.get(c["table"])
    if t is None:
        # The table does not exist in this MLflow version: the child is always empty.
        return ChildPlan(c["name"], c["table"], [], [_col_name(x)[0] for x in c["columns"]],
                         [], [], c.get("where", {}), [], c.get("count", "rows"))
    present = set(t.column_names)
    cols, missing = [], []
    for ref in c["columns"]:
        name, optional = _col_name(ref)
        if name in present:
            cols.append(name)
        elif optional:
            missing.append(name)
        else:
            raise SchemaError(f"Schema map {coll!r} child {c['name']!r} needs column {name!r}",
                              table=c["table"], column=name)
    on, parent = [], []
    for o, p in zip(c["on"], c["parent"]):
        on_name, _ = _col_name(o)
        p_name, _ = _col_name(p)
        if on_name in present:
            on.append(on_name)
            parent.append(p_name)
    for o in on:
        if o not in cols:
            cols.append(o)
    grand = [_compile_child(g, tables, coll) for g in c.get("children", [])]
    return ChildPlan(c["name"], c["table"], cols, missing, on, parent, c.get("where", {}), grand,
                     c.get("count", "rows"))


def explain_failure(plan: CollectionPlan, row: tuple, ch, exc: Exception) -> DataError:
    """Find which field of which row failed, for a message that names table, key and column."""
    done: dict[str, Any] = {}
    key = tuple(row[plan.columns.index(k)] for k in plan.key if k in plan.columns)
    key = key[0] if len(key) == 1 else key
    for f, fn in plan.field_fns.items():
        try:
            done[f] = fn(row, ch, done)
        except Exception as inner:  # noqa: BLE001 - reported with context
            return DataError(f"Cannot convert a value for target field {plan.name}.{f}: "
                             f"{type(inner).__name__}: {inner}", table=plan.table, key=key,
                             column=_source_column(plan.spec, f))
    return DataError(f"Cannot build document for {plan.name}: {type(exc).__name__}: {exc}",
                     table=plan.table, key=key)


def _source_column(spec: dict, f: str) -> str | None:
    e = spec.get("id") if f == "_id" else spec.get("fields", {}).get(f)
    cols = []

    def walk(x):
        if isinstance(x, str):
            cols.append(_col_name(x)[0])
        elif isinstance(x, dict):
            for a in x.get("args", []):
                walk(a)
            for a in x.get("cols", []):
                walk(a)
    walk(e)
    return ", ".join(cols) or None
