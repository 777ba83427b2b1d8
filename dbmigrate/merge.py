"""`--merge`: copy into a SQL target that already holds MLflow data, changing nothing else on it.

Before anything is written (`plan_merge`, also in a dry run), on the target read in one snapshot:

- experiments: one whose name (per workspace, after --rename-experiment) exists on the target is
  merged into it (the source id maps to the target's, the target's row is kept); one whose id is
  taken by another experiment gets the next free id (IdMap, applied to every experiment_id
  column); otherwise it keeps its id. Registered models: a name the target holds is merged into.
- every other row the copy would write is compared with the target's row of the same primary
  key: absent -> written; identical -> skipped; different -> a conflict. `--on-conflict fail`
  (default) lists every conflict and stops before any write; `skip` keeps the target's row;
  `overwrite` updates the target's row to the source's. A model version whose number the target
  holds with other content is such a conflict: it is never renumbered.

Because rows already on the target identically are skipped and experiments are matched by name,
running the same merge again changes nothing: a killed merge is finished by running it again
(`--resume` does exactly that; parts are never cleared on a merge target).
"""

from __future__ import annotations

import logging

from dbmigrate.errors import SchemaError, TargetNotEmpty
from dbmigrate.readers.sql import SqlSource
from dbmigrate.sql_rows import IdMap, source_rows

log = logging.getLogger("dbmigrate")

CONTAINERS = ("experiments", "registered_models")  # merged into by name: the target's row is kept


class MergePlan:
    def __init__(self):
        self.skip: dict[str, set] = {}        # table -> target PKs not to insert
        self.kept: dict[str, dict] = {}       # table -> PK -> the target's row (what verification expects)
        self.updates: dict[str, list] = {}    # table -> [(pk, columns, row)] (--on-conflict overwrite)
        self.conflicts: list[str] = []
        self.skipped: dict[str, int] = {}     # conflicting rows kept as the target has them (skip)
        self.identical: dict[str, int] = {}
        self.merged_experiments: dict = {}
        self.remapped: dict = {}
        self.merged_models: dict = {}

    def summary(self, policy: str) -> dict:
        out = {"on_conflict": policy, "identical": {t: n for t, n in self.identical.items() if n},
               "merged_experiments": self.merged_experiments, "remapped_experiments": self.remapped,
               "merged_models": self.merged_models, "conflicts": self.conflicts}
        if policy == "skip":
            out["conflicts_skipped"] = dict(self.skipped)
        if policy == "overwrite":
            out["overwritten"] = {t: len(v) for t, v in self.updates.items() if v}
        return out


def check_target(target: SqlSource, revision: str) -> None:
    schema = target.inspect()
    if schema.revision != revision:
        raise SchemaError(f"--merge: the target is at MLflow schema revision {schema.revision}, the source at "
                          f"{revision}: rows can only be merged between equal revisions",
                          hint="upgrade the older one with `mlflow db upgrade` first")


def experiment_ids(source, target: SqlSource, base: dict, max_id: int, plan: MergePlan) -> dict:
    """Source experiment id -> target id for the experiments the copy brings (merged by name, or
    moved to a free id when theirs is taken)."""
    ws = source.schema.tables["experiments"].column("workspace") is not None
    cols = ["experiment_id", "name"] + (["workspace"] if ws else [])
    theirs = {}
    for rows in target.stream("experiments", cols, 10_000):
        for r in rows:
            theirs[r[0]] = tuple(r[1:])
    by_name = {v: k for k, v in theirs.items()}
    mine = [r for rows in source.stream("experiments", cols, 10_000) for r in rows]
    taken = set(theirs) | {base.get(r[0], r[0]) for r in mine}
    nxt = max([i for i in taken if isinstance(i, int) and i <= max_id] + [0]) + 1
    out = dict(base)
    for r in sorted(mine, key=lambda r: (str(r[0]))):
        sid, key = base.get(r[0], r[0]), tuple(r[1:])
        if key in by_name:
            out[r[0]] = by_name[key]
            plan.merged_experiments[str(r[0])] = by_name[key]
        elif sid in theirs:
            out[r[0]] = nxt
            plan.remapped[str(r[0])] = nxt
            nxt += 1
    return {k: v for k, v in out.items() if k != v}


def plan_merge(source, target: SqlSource, tables: list[str], ids: IdMap, insertable, policy: str,
               batch_size: int, plan: MergePlan) -> MergePlan:
    """Compare every row the copy would write with the target's (see the module's docstring)."""
    from dbmigrate.compare import same_value, show
    if source.selection is not None:
        target.selection = source.selection.translated(
            ids.mapping, model_names=source.rewriter.model_names if source.rewriter else None)
    tschema = target.schema
    for table in tables:
        if table not in tschema.tables:
            continue
        pk = tschema.tables[table].pk
        columns, batches = source_rows(source, table, insertable(table), ids, batch_size)
        if not pk or not all(k in columns for k in pk):
            continue
        kidx = [columns.index(k) for k in pk]
        mine = {tuple(r[i] for i in kidx): r for b in batches for r in b}
        if not mine:
            continue
        theirs = {}
        for b in target.stream(table, columns, batch_size):
            for r in b:
                k = tuple(r[i] for i in kidx)
                if k in mine:
                    theirs[k] = r
        skip, kept, same = set(), {}, 0
        for k, row in theirs.items():
            new = mine[k]
            diff = [(c, a, b) for c, a, b in zip(columns, new, row) if not same_value(a, b)]
            skip.add(k)
            if not diff:
                same += 1
                continue
            if table in CONTAINERS:  # merged into the target's experiment / registered model
                kept[k] = row
                if table == "registered_models":
                    plan.merged_models[str(k[-1])] = None
                continue
            c, a, b = diff[0]
            plan.conflicts.append(f"{table} {_key(pk, k)}: {c} is {show(b)} on the target, {show(a)} in the source"
                                  + (f" (and {len(diff) - 1} more columns)" if len(diff) > 1 else ""))
            if policy == "overwrite":
                plan.updates.setdefault(table, []).append((k, columns, new))
            else:  # skip (or fail, which stops before writing anything)
                kept[k] = row
                plan.skipped[table] = plan.skipped.get(table, 0) + 1
        plan.identical[table] = same
        plan.skip[table] = skip
        plan.kept[table] = kept
    return plan


def refuse(plan: MergePlan, target_masked: str) -> None:
    if plan.conflicts:
        raise TargetNotEmpty(f"--merge into {target_masked}: {len(plan.conflicts)} rows differ from the target's "
                             "rows of the same key; nothing was written:\n  " + "\n  ".join(plan.conflicts),
                             hint="--on-conflict skip keeps the target's rows, --on-conflict overwrite the "
                                  "source's; --rename-experiment / --rename-model copy under other names")


def apply_updates(writer, plan: MergePlan, tschema) -> int:
    """--on-conflict overwrite: the target's conflicting rows take the source's values."""
    n = 0
    conn = writer.connect()
    mark = "?" if writer.dialect == "sqlite" else "%s"
    q = writer.q
    try:
        cur = conn.cursor()
        for table, items in plan.updates.items():
            pk = tschema.tables[table].pk
            for k, columns, row in items:
                sets = [(c, v) for c, v in zip(columns, row) if c not in pk]
                sql = (f"UPDATE {q(table)} SET {', '.join(f'{q(c)} = {mark}' for c, _ in sets)} WHERE "
                       + " AND ".join(f"{q(c)} = {mark}" for c in pk))
                cur.execute(sql, tuple(v for _, v in sets) + tuple(k))
                n += cur.rowcount
        conn.commit()
        cur.close()
    except Exception:
        conn.rollback()
        raise
    return n


def _key(pk, k) -> str:
    return "(" + ", ".join(f"{c}={v!r}" for c, v in zip(pk, k)) + ")"
