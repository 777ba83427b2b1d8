"""Values changed on the way from source to target, in every read of the source (copy, dry run
and verification alike, so the checksums compared are those of the rewritten rows):

- `--rewrite-artifact-uri OLD_PREFIX=NEW_PREFIX` (repeatable, first matching rule wins) on every
  column and tag that holds an artifact location (`ARTIFACT_COLUMNS`, `ARTIFACT_TAGS`: data taken
  from MLflow's schema, reference/mlflow-schema.md);
- `--rename-experiment OLD=NEW` on experiments.name, `--rename-model OLD=NEW` on the name column
  of the five registry tables.

The reader (dbmigrate.readers.sql.SqlSource) applies `Rewriter.rows` after its own value
normalisation, and asks `original_values` for the source's names when it is given renamed ones
(children fetched by a renamed parent's name).
"""

from __future__ import annotations

from dbmigrate.errors import ConfigError

# table -> columns holding an artifact location (URI)
ARTIFACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "experiments": ("artifact_location",),
    "runs": ("artifact_uri",),
    "model_versions": ("source", "storage_location"),
    "logged_models": ("artifact_location",),
}
# tag tables: (key column, value column, the keys whose value is an artifact location)
ARTIFACT_TAGS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "trace_tags": ("key", "value", ("mlflow.artifactLocation",)),
}
REGISTRY_NAME_TABLES = ("registered_models", "registered_model_tags", "model_versions", "model_version_tags",
                        "registered_model_aliases")


def parse_pairs(items, flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"{flag}: {item!r} is not OLD=NEW")
        old, new = item.split("=", 1)
        if not old:
            raise ConfigError(f"{flag}: {item!r} has an empty OLD part")
        if flag != "--rewrite-artifact-uri" and not new:
            raise ConfigError(f"{flag}: {item!r} has an empty NEW name")
        out.append((old, new))
    olds = [o for o, _ in out]
    dup = sorted({o for o in olds if olds.count(o) > 1})
    if dup:
        raise ConfigError(f"{flag}: {dup[0]!r} is given twice")
    return out


class Rewriter:
    def __init__(self, artifact_rules=(), experiment_names=None, model_names=None):
        self.rules = list(artifact_rules)
        self.experiment_names = dict(experiment_names or {})
        self.model_names = dict(model_names or {})
        self.model_back = {v: k for k, v in self.model_names.items()}
        self.experiment_back = {v: k for k, v in self.experiment_names.items()}
        self.experiment_ids: dict = {}  # a --merge into MongoDB: source experiment id -> the target's
        self.experiment_ids_back: dict = {}

    def map_experiment_ids(self, mapping: dict) -> None:
        """Every experiment_id read becomes the target's id (dbmigrate.mongo_merge); a read by
        experiment id is asked with the source's."""
        self.experiment_ids = dict(mapping)
        self.experiment_ids_back = {v: k for k, v in mapping.items()}

    @classmethod
    def from_config(cls, cfg) -> "Rewriter | None":
        rules = parse_pairs(cfg.rewrite_artifact_uri, "--rewrite-artifact-uri")
        exps = dict(parse_pairs(cfg.rename_experiment, "--rename-experiment"))
        models = dict(parse_pairs(cfg.rename_model, "--rename-model"))
        return cls(rules, exps, models) if (rules or exps or models) else None

    def __bool__(self):
        return bool(self.rules or self.experiment_names or self.model_names or self.experiment_ids)

    def uri(self, v):
        if isinstance(v, str):
            for old, new in self.rules:
                if v.startswith(old):
                    return new + v[len(old):]
        return v

    def rows(self, table: str, columns: list[str]):
        """A function rewriting a batch of `table`'s rows (tuples in `columns` order), or None."""
        fixes = []  # (index, fn)
        if self.rules:
            for c in ARTIFACT_COLUMNS.get(table, ()):
                if c in columns:
                    fixes.append((columns.index(c), self.uri))
        names = (self.experiment_names if table == "experiments" else
                 self.model_names if table in REGISTRY_NAME_TABLES else None)
        if names and "name" in columns:
            fixes.append((columns.index("name"), lambda v, m=names: m.get(v, v)))
        if self.experiment_ids and "experiment_id" in columns:
            fixes.append((columns.index("experiment_id"), lambda v, m=self.experiment_ids: m.get(v, v)))
        tag = ARTIFACT_TAGS.get(table) if self.rules else None
        tag_idx = None
        if tag and tag[0] in columns and tag[1] in columns:
            tag_idx = (columns.index(tag[0]), columns.index(tag[1]), tag[2])
        if not fixes and tag_idx is None:
            return None

        def rewrite(rows):
            out = []
            for r in rows:
                r = list(r)
                for i, fn in fixes:
                    r[i] = fn(r[i])
                if tag_idx is not None and r[tag_idx[0]] in tag_idx[2]:
                    r[tag_idx[1]] = self.uri(r[tag_idx[1]])
                out.append(tuple(r))
            return out
        return rewrite

    def original_values(self, table: str, column: str, values):
        if column == "experiment_id" and self.experiment_ids_back:
            return [self.experiment_ids_back.get(v, v) for v in values]
        if column == "name" and table in REGISTRY_NAME_TABLES and self.model_back:
            return [self.model_back.get(v, v) for v in values]
        if column == "name" and table == "experiments" and self.experiment_back:
            return [self.experiment_back.get(v, v) for v in values]
        return values

    def counts(self, source) -> dict[str, int]:
        """Per column (`table.column`, `table[key].value` for tags): the source rows (of the
        selection) whose value a rule rewrites, counted by the source in the snapshot."""
        out: dict[str, int] = {}
        if not self.rules:
            return out
        q, p = source.q, source._param
        have = source.schema.tables
        sub = "SUBSTRING" if source.dialect == "mysql" else "substr"

        def count(table, col, extra="", extra_params=()):
            chunks = source.selection_chunks(table)
            total = 0
            for n, (old, _new) in enumerate(self.rules):
                # rows matching this rule and no earlier one (the first matching rule wins)
                conds, params = [f"{sub}({q(col)}, 1, {len(old)}) = {p}"], [old]
                for prev, _ in self.rules[:n]:
                    conds.append(f"{sub}({q(col)}, 1, {len(prev)}) <> {p}")
                    params.append(prev)
                where = " AND ".join(conds) + extra
                for scond, sparams in [("", ())] if chunks is None else chunks:
                    w = where + (f" AND {scond}" if scond else "")
                    total += int(source.query(f"SELECT COUNT(*) FROM {q(table)} WHERE {w}",
                                              tuple(params) + tuple(extra_params) + sparams)[0][0])
            return total
        for table, cols in ARTIFACT_COLUMNS.items():
            if table in have:
                for c in cols:
                    if have[table].column(c) is not None:
                        out[f"{table}.{c}"] = count(table, c)
        for table, (kcol, vcol, keys) in ARTIFACT_TAGS.items():
            if table in have:
                for k in keys:
                    out[f"{table}[{k}].{vcol}"] = count(table, vcol, f" AND {q(kcol)} = {p}", (k,))
        return out
