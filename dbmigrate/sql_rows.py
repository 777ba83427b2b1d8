"""The rows a SQL target gets: the converters on a SQL target's side of the batch path.

- experiment ids the target's INTEGER cannot hold (an 18-digit FileStore id from SQLite, the
  mlflow-mongodb store's 39-digit ids) get the next free ids (`IdMap`), applied to every
  experiment_id column and to entity_associations;
- metric -0.0 becomes 0.0 on targets that store no negative zero (`NegativeZeros`, counted);
- only the columns the target has are sent (`source_rows`).
"""

from __future__ import annotations

from dbmigrate.readers.sql import SqlSource

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


class IdMap:
    """Experiment ids the target cannot hold, and their new values."""

    def __init__(self, mapping: dict):
        self.mapping = {int(k) if str(k).lstrip("-").isdigit() else k: v for k, v in mapping.items()}
        self.by_str = {str(k): v for k, v in mapping.items()}

    def __bool__(self):
        return bool(self.mapping)

    def rows(self, table: str, columns: list[str]):
        """A function rewriting experiment ids in rows of `table`, or None when nothing changes."""
        if not self.mapping:
            return None
        if "experiment_id" in columns:
            i = columns.index("experiment_id")
            m = self.mapping

            def fix(rows):
                return [r if r[i] not in m else r[:i] + (m[r[i]],) + r[i + 1:] for r in rows]
            return fix
        if table == "entity_associations" and {"source_type", "source_id"} <= set(columns):
            st, si = columns.index("source_type"), columns.index("source_id")
            dt, di = columns.index("destination_type"), columns.index("destination_id")
            by = self.by_str

            def fix_assoc(rows):
                out = []
                for r in rows:
                    r = list(r)
                    if r[st] == "experiment" and r[si] in by:
                        r[si] = str(by[r[si]])
                    if r[dt] == "experiment" and r[di] in by:
                        r[di] = str(by[r[di]])
                    out.append(tuple(r))
                return out
            return fix_assoc
        return None


def sql_experiment_map(source: SqlSource, max_id: int) -> dict:
    rows = source.query(f"SELECT {source.q('experiment_id')}, {source.q('creation_time')} FROM "
                        f"{source.q('experiments')}")
    fits = [r[0] for r in rows if 0 <= r[0] <= max_id]
    nxt = max(fits, default=0) + 1
    out = {}
    for exp_id, _ in sorted((r for r in rows if not 0 <= r[0] <= max_id), key=lambda r: (r[1] or 0, r[0])):
        out[exp_id] = nxt
        nxt += 1
    return out


# Metric value columns: a -0.0 there becomes 0.0 on SQLite and MySQL/MariaDB, which store no
# negative zero. MLflow's own SQL store never keeps -0.0 either (even PostgreSQL gets 0 from it);
# the change is counted and reported. A -0.0 in any other column is refused by the writer, by name.
ZERO_LOSSY = ("sqlite", "mysql")
METRIC_VALUE_COLUMNS = {"metrics": "value", "latest_metrics": "value", "logged_model_metrics": "metric_value"}


class NegativeZeros:
    def __init__(self):
        self.count: dict[str, int] = {}

    def rows(self, table: str, columns: list[str]):
        col = METRIC_VALUE_COLUMNS.get(table)
        if col not in columns:
            return None
        i = columns.index(col)

        def fix(rows):
            out = []
            for r in rows:
                v = r[i]
                if type(v) is float and v == 0.0 and str(v)[0] == "-":
                    r = r[:i] + (0.0,) + r[i + 1:]
                    self.count[table] = self.count.get(table, 0) + 1
                out.append(r)
            return out
        return fix


def source_rows(source, table: str, wanted: list[str] | None, ids: IdMap, batch_size: int,
                zeros: NegativeZeros | None = None, part: tuple | None = None):
    """(columns, batches) of `table` as the target should get them: only columns the target
    has (`wanted`, None = all), experiment ids remapped, metric -0.0 as 0.0 for SQLite."""
    if isinstance(source, SqlSource):
        t = source.schema.tables[table]
        produced = [c.name for c in t.columns if not c.generated]
        columns = [c for c in produced if wanted is None or c in wanted]
        batches = source.stream(table, columns, batch_size, part=part)
    else:
        produced, batches = source.produce(table, batch_size)
        if not produced:  # an empty collection names no fields: the table's rows have the target's columns
            return list(wanted or []), iter(())
        columns = [c for c in produced if wanted is None or c in wanted]
        if columns != produced:
            idx = [produced.index(c) for c in columns]
            batches = ([tuple(r[i] for i in idx) for r in b] for b in batches)
    for fix in (ids.rows(table, columns), zeros.rows(table, columns) if zeros else None):
        if fix:
            batches = map(fix, batches)
    return columns, batches
