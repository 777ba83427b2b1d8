"""Selection with its closure: `--experiments`, `--runs`, `--models`, `--since`, `--with-parents`.

`compute(source, cfg)` works out, on the source and inside the migration's snapshot, the keys of
every table the selection needs, and which selected object pulled each one in:

- an experiment brings its tags, runs, datasets, logged models and traces;
- a run brings its experiment, metrics, params, tags, latest metrics, inputs (+ input tags, the
  datasets and logged models they name), the logged models it produced, and the traces linked to
  it (trace metadata `mlflow.sourceRun`, entity_associations trace -> run) with their tags,
  metadata, spans, assessments; `--with-parents` walks the `mlflow.parentRunId` tags upwards;
- a model version brings its registered model (with its tags), its run (and so the run's
  closure), its logged model (`models:/m-...` source) and the aliases that point at it;
- a logged model and a trace bring their experiment.

The result (`Selection.keys`: table -> set of key tuples over `FILTER[table]`) is what the SQL
reader applies to every read (dbmigrate.readers.sql: `stream`, `pages`, `count`, `fetch_in`), in
batches of keys, never one giant IN list. Tables not in `FILTER` are not part of a selection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from dbmigrate.errors import ConfigError

# table -> the columns a selection filters it by (data: what "belongs to" a selected object)
FILTER: dict[str, tuple[str, ...]] = {
    "experiments": ("experiment_id",), "experiment_tags": ("experiment_id",),
    "runs": ("run_uuid",), "tags": ("run_uuid",), "params": ("run_uuid",), "metrics": ("run_uuid",),
    "latest_metrics": ("run_uuid",),
    "datasets": ("dataset_uuid",), "inputs": ("input_uuid",), "input_tags": ("input_uuid",),
    "logged_models": ("model_id",), "logged_model_params": ("model_id",), "logged_model_tags": ("model_id",),
    "logged_model_metrics": ("model_id", "run_id"),
    "trace_info": ("request_id",), "trace_tags": ("request_id",), "trace_request_metadata": ("request_id",),
    "trace_metrics": ("request_id",), "spans": ("trace_id",), "span_metrics": ("trace_id",),
    "assessments": ("trace_id",), "entity_associations": ("association_id",),
    "registered_models": ("name",), "registered_model_tags": ("name",),
    "model_versions": ("name", "version"), "model_version_tags": ("name", "version"),
    "registered_model_aliases": ("name", "alias"),
}
# tables every selection copies whole: reference rows the selected ones point at (a merge skips
# the rows the target already holds identically)
WHOLE = ("workspaces",)
# tables keyed by one object kind: (kind, its key column in FILTER order)
BY_RUN = ("runs", "tags", "params", "metrics", "latest_metrics")
BY_TRACE = ("trace_info", "trace_tags", "trace_request_metadata", "trace_metrics", "spans", "span_metrics",
            "assessments")
BY_MODEL = ("logged_models", "logged_model_params", "logged_model_tags")
LOGGED_MODEL_SOURCE = re.compile(r"^models:/(m-[0-9a-f]+)")
REDACTED_RUN = "REDACTED-RUN-ID"


@dataclass
class Selection:
    keys: dict[str, set] = field(default_factory=dict)        # table -> {key tuple}
    why: dict[str, dict] = field(default_factory=dict)        # object kind -> {id: selected object}
    roots: list[str] = field(default_factory=list)            # the selected objects, as given
    _sorted: dict = field(default_factory=dict, repr=False, compare=False)

    def filters(self, table: str) -> tuple[tuple[str, ...] | None, list]:
        """(columns, sorted keys) a read of `table` is limited to; (cols, []) reads nothing;
        (None, []) for a table copied whole (WHOLE)."""
        if table in WHOLE:
            return None, []
        if table not in self._sorted:
            keys = self.keys.get(table, set())
            self._sorted[table] = sorted(keys, key=lambda k: tuple((v is None, str(v)) for v in k))
        return FILTER.get(table, ()), self._sorted[table]

    def count(self, table: str) -> int:
        return len(self.keys.get(table, ()))

    def describe(self) -> dict:
        """For the report: what was selected and what each selected object pulled in."""
        pulled: dict[str, dict[str, list]] = {}
        for kind, ids in self.why.items():
            for oid, root in ids.items():
                pulled.setdefault(root, {}).setdefault(kind, []).append(str(oid))
        return {"selected": list(self.roots),
                "objects": {k: len(v) for k, v in sorted(self.why.items())},
                "pulled_in": {root: {k: sorted(v) for k, v in sorted(kinds.items())}
                              for root, kinds in pulled.items()}}

    def translated(self, experiment_ids: dict, experiment_col_tables=("experiments", "experiment_tags"),
                   model_names: dict | None = None) -> "Selection":
        """The same selection in the target's keys: experiment ids remapped, models renamed."""
        out = Selection(why=self.why, roots=self.roots)
        for table, keys in self.keys.items():
            cols = FILTER[table]
            new = set()
            for k in keys:
                k = list(k)
                for i, c in enumerate(cols):
                    if c == "experiment_id" and k[i] in experiment_ids:
                        k[i] = experiment_ids[k[i]]
                    if c == "name" and table in REGISTRY and model_names and k[i] in model_names:
                        k[i] = model_names[k[i]]
                new.add(tuple(k))
            out.keys[table] = new
        return out


REGISTRY = ("registered_models", "registered_model_tags", "model_versions", "model_version_tags",
            "registered_model_aliases")


def parse_since(text: str) -> int:
    """Epoch milliseconds from an ISO 8601 time (UTC unless it says otherwise) or a number of ms."""
    t = text.strip()
    if t.isdigit():
        return int(t)
    try:
        d = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since: {text!r} is neither an ISO 8601 time (2026-01-31T12:00:00Z) nor "
                          "epoch milliseconds") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return int(d.timestamp() * 1000)


def parse_models(text: str) -> list[tuple[str, str, str | None]]:
    """NAME, NAME:VERSION, NAME@ALIAS -> (name, kind, value)."""
    out = []
    for item in _items(text):
        if "@" in item:
            name, alias = item.rsplit("@", 1)
            out.append((name, "alias", alias))
        elif ":" in item and item.rsplit(":", 1)[1].isdigit():
            name, version = item.rsplit(":", 1)
            out.append((name, "version", version))
        else:
            out.append((item, "all", None))
        if not out[-1][0]:
            raise ConfigError(f"--models: {item!r} names no model (NAME, NAME:VERSION or NAME@ALIAS)")
    return out


def _items(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def wanted(cfg) -> bool:
    return bool(cfg.experiments or cfg.runs or cfg.models or cfg.since)


class _Closure:
    def __init__(self, source, with_parents: bool):
        self.s, self.with_parents = source, with_parents
        self.tables = set(source.schema.tables)
        self.why: dict[str, dict] = {k: {} for k in
                                     ("experiment", "run", "model_version", "registered_model", "logged_model",
                                      "trace", "dataset", "input", "association")}
        self.todo_runs: set = set()
        self.todo_models: set = set()
        self.todo_traces: set = set()
        self.whole_experiments: set = set()

    # -- small helpers
    def rows(self, table, columns, key_column, values, where=None):
        if table not in self.tables or not values:
            return []
        return self.s.fetch_in(table, columns, key_column, sorted(values, key=str), where=where)

    def add(self, kind: str, oid, why: str) -> bool:
        seen = self.why[kind]
        if oid in seen:
            return False
        seen[oid] = why
        if kind == "run":
            self.todo_runs.add(oid)
        elif kind == "logged_model":
            self.todo_models.add(oid)
        elif kind == "trace":
            self.todo_traces.add(oid)
        return True

    # -- the closure, to a fixed point
    def run(self) -> None:
        while self.todo_runs or self.todo_models or self.todo_traces or self.whole_experiments:
            whole, self.whole_experiments = self.whole_experiments, set()
            self.experiments_whole(whole)
            runs, self.todo_runs = self.todo_runs, set()
            self.runs(runs)
            models, self.todo_models = self.todo_models, set()
            self.logged_models(models)
            traces, self.todo_traces = self.todo_traces, set()
            self.traces(traces)

    def experiments_whole(self, exps) -> None:
        w = self.why["experiment"]
        for r in self.rows("runs", ["run_uuid", "experiment_id"], "experiment_id", exps):
            self.add("run", r[0], w[r[1]])
        for r in self.rows("logged_models", ["model_id", "experiment_id"], "experiment_id", exps):
            self.add("logged_model", r[0], w[r[1]])
        for r in self.rows("trace_info", ["request_id", "experiment_id"], "experiment_id", exps):
            self.add("trace", r[0], w[r[1]])
        for r in self.rows("datasets", ["dataset_uuid", "experiment_id"], "experiment_id", exps):
            self.add("dataset", r[0], w[r[1]])

    def runs(self, runs) -> None:
        if not runs:
            return
        w = self.why["run"]
        for run_id, exp in self.rows("runs", ["run_uuid", "experiment_id"], "run_uuid", runs):
            self.add("experiment", exp, w[run_id])
        if self.with_parents:
            for run_id, parent in self.rows("tags", ["run_uuid", "value"], "run_uuid", runs,
                                            where={"key": "mlflow.parentRunId"}):
                if parent:
                    self.add("run", parent, w[run_id])
        # inputs: datasets -> run, run -> model inputs/outputs
        ins = self.rows("inputs", ["input_uuid", "source_type", "source_id", "destination_type", "destination_id"],
                        "destination_id", runs, where={"destination_type": "RUN"})
        ins += self.rows("inputs", ["input_uuid", "source_type", "source_id", "destination_type", "destination_id"],
                         "source_id", runs, where={"source_type": ["RUN_INPUT", "RUN_OUTPUT"]})
        for input_uuid, st, sid, dt, did in ins:
            run_id = did if dt == "RUN" else sid
            self.add("input", input_uuid, w[run_id])
            if st == "DATASET":
                self.add("dataset", sid, w[run_id])
            if dt in ("MODEL_INPUT", "MODEL_OUTPUT"):
                self.add("logged_model", did, w[run_id])
        for model_id, run_id in self.rows("logged_models", ["model_id", "source_run_id"], "source_run_id", runs):
            self.add("logged_model", model_id, w[run_id])
        # linked traces
        for rid, run_id in self.rows("trace_request_metadata", ["request_id", "value"], "value", runs,
                                     where={"key": "mlflow.sourceRun"}):
            self.add("trace", rid, w[run_id])
        for aid, sid, did in self.rows("entity_associations", ["association_id", "source_id", "destination_id"],
                                       "destination_id", runs, where={"source_type": "trace",
                                                                      "destination_type": "run"}):
            self.add("trace", sid, w[did])
            self.add("association", aid, w[did])

    def logged_models(self, models) -> None:
        w = self.why["logged_model"]
        for model_id, exp in self.rows("logged_models", ["model_id", "experiment_id"], "model_id", models):
            self.add("experiment", exp, w[model_id])

    def traces(self, traces) -> None:
        w = self.why["trace"]
        for rid, exp in self.rows("trace_info", ["request_id", "experiment_id"], "request_id", traces):
            self.add("experiment", exp, w[rid])

    def datasets_experiments(self) -> None:
        w = self.why["dataset"]
        for uuid, exp in self.rows("datasets", ["dataset_uuid", "experiment_id"], "dataset_uuid", set(w)):
            self.add("experiment", exp, w[uuid])


def compute(source, cfg) -> Selection:
    """The selection's keys per table on `source` (an open SqlSource, read in its snapshot, before
    any filter is set on it). Unknown experiments, runs, models, versions or aliases are refused
    by name (ConfigError: nothing has been written)."""
    if source.selection is not None:
        raise RuntimeError("compute() reads the whole source: call it before setting the selection")
    c = _Closure(source, bool(cfg.with_parents))
    q, p = source.q, source._param
    sel = Selection()
    # experiments: id or name
    for item in _items(cfg.experiments):
        rows = source.query(f"SELECT {q('experiment_id')}, {q('name')} FROM {q('experiments')} WHERE "
                            f"{q('name')} = {p}", (item,))
        if not rows and item.lstrip("-").isdigit():
            rows = source.query(f"SELECT {q('experiment_id')}, {q('name')} FROM {q('experiments')} WHERE "
                                f"{q('experiment_id')} = {p}", (int(item),))
        if not rows:
            raise ConfigError(f"--experiments: no experiment with id or name {item!r} in the source")
        for exp_id, name in rows:
            label = f"experiment {name!r} ({exp_id})"
            sel.roots.append(label)
            c.add("experiment", exp_id, label)
            c.whole_experiments.add(exp_id)
    # runs
    runs = _items(cfg.runs)
    found = {r[0] for r in c.rows("runs", ["run_uuid"], "run_uuid", set(runs))}
    missing = [r for r in runs if r not in found]
    if missing:
        raise ConfigError(f"--runs: no run {', '.join(missing)} in the source")
    for r in runs:
        sel.roots.append(f"run {r}")
        c.add("run", r, f"run {r}")
    # since: runs started or ended at/after it
    if cfg.since:
        ms = parse_since(cfg.since)
        label = f"runs since {cfg.since}"
        sel.roots.append(label)
        for (run_id,) in source.query(f"SELECT {q('run_uuid')} FROM {q('runs')} WHERE {q('start_time')} >= {p} "
                                      f"OR {q('end_time')} >= {p}", (ms, ms)):
            c.add("run", run_id, label)
    # models
    versions = []
    for name, kind, value in parse_models(cfg.models):
        if not source.query(f"SELECT 1 FROM {q('registered_models')} WHERE {q('name')} = {p}", (name,)):
            raise ConfigError(f"--models: no registered model {name!r} in the source")
        if kind == "alias":
            rows = source.query(f"SELECT {q('version')} FROM {q('registered_model_aliases')} WHERE {q('name')} = {p} "
                                f"AND {q('alias')} = {p}", (name, value)) \
                if "registered_model_aliases" in c.tables else []
            if not rows:
                raise ConfigError(f"--models: registered model {name!r} has no alias {value!r}")
            label = f"model {name}@{value} (version {rows[0][0]})"
            vs = [rows[0][0]]
        elif kind == "version":
            vs = [int(value)]
            if not source.query(f"SELECT 1 FROM {q('model_versions')} WHERE {q('name')} = {p} AND "
                                f"{q('version')} = {p}", (name, vs[0])):
                raise ConfigError(f"--models: registered model {name!r} has no version {value}")
            label = f"model {name}:{value}"
        else:
            vs = [r[0] for r in source.query(f"SELECT {q('version')} FROM {q('model_versions')} WHERE "
                                             f"{q('name')} = {p}", (name,))]
            label = f"model {name}"
        sel.roots.append(label)
        c.why["registered_model"].setdefault(name, label)
        for v in vs:
            versions.append((name, v))
            c.why["model_version"].setdefault((name, v), label)
    # a version's run and logged model
    for name, v in versions:
        label = c.why["model_version"][(name, v)]
        rows = source.query(f"SELECT {q('run_id')}, {q('source')} FROM {q('model_versions')} WHERE {q('name')} = {p} "
                            f"AND {q('version')} = {p}", (name, v))
        run_id, src = rows[0]
        if run_id and run_id != REDACTED_RUN and source.query(
                f"SELECT 1 FROM {q('runs')} WHERE {q('run_uuid')} = {p}", (run_id,)):
            c.add("run", run_id, label)
        m = LOGGED_MODEL_SOURCE.match(src or "")
        if m and "logged_models" in c.tables:
            c.add("logged_model", m.group(1), label)
    c.run()
    c.datasets_experiments()
    c.run()
    # keys per table
    k = sel.keys
    for t in BY_RUN:
        k[t] = {(r,) for r in c.why["run"]}
    for t in BY_TRACE:
        k[t] = {(r,) for r in c.why["trace"]}
    for t in BY_MODEL:
        k[t] = {(m,) for m in c.why["logged_model"]}
    k["experiments"] = k["experiment_tags"] = {(e,) for e in c.why["experiment"]}
    k["datasets"] = {(d,) for d in c.why["dataset"]}
    k["inputs"] = k["input_tags"] = {(i,) for i in c.why["input"]}
    k["logged_model_metrics"] = {(m, r) for m, r in c.rows("logged_model_metrics", ["model_id", "run_id"], "model_id",
                                                           set(c.why["logged_model"])) if r in c.why["run"]}
    k["entity_associations"] = {(a,) for a in c.why["association"]}
    names = set(c.why["registered_model"])
    k["registered_models"] = k["registered_model_tags"] = {(n,) for n in names}
    k["model_versions"] = k["model_version_tags"] = set(versions)
    k["registered_model_aliases"] = {(n, a) for n, a, v in c.rows("registered_model_aliases",
                                                                   ["name", "alias", "version"], "name", names)
                                     if (n, v) in k["model_versions"]}
    for kind in ("model_version",):
        c.why[kind] = {f"{n}:{v}": w for (n, v), w in c.why[kind].items()}
    sel.why = {kind: ids for kind, ids in c.why.items() if ids}
    return sel


def attach(cfg, source, report) -> None:
    """Set the selection and the rewriter on the source before the plan, so that every read of
    the migration (counts, copy, dry run, verification) sees only the selected, rewritten rows;
    put what was selected (and why) and the rewrite counts in the report."""
    from dbmigrate.readers.sql import SqlSource
    from dbmigrate.rewrite import Rewriter
    rewriter = Rewriter.from_config(cfg)
    if not (cfg.selecting or rewriter):
        return
    if not isinstance(source, SqlSource):
        what = ", ".join(f for f, on in (("--experiments/--runs/--models/--since", cfg.selecting),
                                         ("--rewrite-artifact-uri/--rename-*", rewriter)) if on)
        raise ConfigError(f"{what} need a SQL source (PostgreSQL, MySQL/MariaDB, SQLite); {report.source} is not one",
                          hint="restore it into SQLite first (dbmigrate migrate --target sqlite:///...), then "
                               "copy from there")
    if cfg.selecting:
        sel = compute(source, cfg)
        source.selection = sel
        report.selection = {**sel.describe(),
                            "rows": {t: source.count(t) for t in source.tables() if t != "alembic_version"}}
    if rewriter:
        source.rewriter = rewriter
        if rewriter.rules:
            report.rewritten = rewriter.counts(source)
