"""Turn batches of source rows into target documents: fetch each page's children (and their
children) with one IN (...) query per child table, group them per parent, run the compiled map."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from dbmigrate.errors import MigrationError
from dbmigrate.schema_maps import ChildPlan, CollectionPlan, explain_failure


@dataclass
class TableAccount:
    """What happened to one source table's rows during a run."""

    rows: int = 0          # rows that reached the target (embedded, converted or copied)
    seconds: float = 0.0   # time spent reading (and, for driving tables, converting and writing)
    batches: int = 0       # read batches of a driving table
    start: float = 0.0     # wall-clock span of a driving table's parts (they may run in parallel)
    end: float = 0.0
    keys: set = field(default_factory=set)  # distinct keys, for tables counted as "distinct"

    @property
    def wall(self) -> float:
        return self.end - self.start if self.end else self.seconds

    @property
    def migrated(self) -> int:
        return len(self.keys) if self.keys else self.rows


class Accounts(dict):
    def __missing__(self, table):
        self[table] = TableAccount()
        return self[table]


def fetch_children(source, plans: list[ChildPlan], parents: list[dict],
                   accounts: Accounts | None = None) -> list[dict]:
    """For each parent (a dict of its columns) a dict child name -> list of child row dicts."""
    out = [dict() for _ in parents]
    for cp in plans:
        if not cp.on:  # table absent in this MLflow version
            for o in out:
                o[cp.name] = []
            continue
        t0 = time.perf_counter()
        values = [p.get(cp.parent[0]) for p in parents]
        values = [v for v in values if v is not None]
        raw = source.fetch_in(cp.table, cp.columns, cp.fetch_column, values, where=cp.where)
        rows = [dict(zip(cp.columns, r)) for r in raw]
        for name in cp.missing:
            for r in rows:
                r[name] = None
        if accounts is not None and cp.count != "none":
            acct = accounts[cp.table]
            acct.seconds += time.perf_counter() - t0
            if cp.count == "distinct":
                acct.keys.update(tuple(r[o] for o in cp.on) for r in rows)
            else:
                acct.rows += len(rows)
        if cp.children:
            for r, grand in zip(rows, fetch_children(source, cp.children, rows, accounts)):
                r.update(grand)
        groups: dict[tuple, list] = defaultdict(list)
        for r in rows:
            groups[tuple(r[o] for o in cp.on)].append(r)
        for p, o in zip(parents, out):
            o[cp.name] = groups.get(tuple(p.get(c) for c in cp.parent), [])
    return out


def build_documents(plan: CollectionPlan, source, rows: list[tuple],
                    accounts: Accounts | None = None) -> list[dict]:
    """Documents for one batch of driving-table rows (tuples in plan.columns order)."""
    chs = None
    if plan.children:
        parents = [dict(zip(plan.columns, r)) for r in rows]
        chs = fetch_children(source, plan.children, parents, accounts)
    try:
        return plan.build_many(rows, chs)
    except MigrationError:
        raise
    except Exception as exc:  # noqa: BLE001 - find the failing row and field
        for i, row in enumerate(rows):
            ch = chs[i] if chs is not None else None
            try:
                plan.build_one(row, ch)
            except Exception as inner:  # noqa: BLE001
                raise explain_failure(plan, row, ch, inner) from None
        raise explain_failure(plan, rows[0], chs[0] if chs else None, exc) from None


def iter_source_batches(plan: CollectionPlan, source, batch_size: int,
                        after: tuple | None = None) -> Iterator[list[tuple]]:
    """The driving table in batches: paged in key order when children must be joined (the
    connection has to stay free for their queries), streamed otherwise."""
    if plan.grouped or after is not None:
        yield from source.pages(plan.table, plan.columns, plan.key, batch_size, after=after)
    else:
        yield from source.stream(plan.table, plan.columns, batch_size)
