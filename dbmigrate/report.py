"""The run report: one row per source table (total, migrated, skipped, errors, seconds, rows/s),
skipped tables, indexes, verification, problems; as text and as JSON. Every URI is masked."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from dbmigrate.uri import mask_text


@dataclass
class TableRow:
    table: str
    destination: str
    total: int
    migrated: int = 0
    skipped: int = 0
    errors: int = 0
    seconds: float = 0.0
    note: str = ""
    batches: int = 0

    @property
    def rows_per_s(self) -> float:
        return self.migrated / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class Verification:
    level: str
    counts: list[Check] = field(default_factory=list)
    references: list[Check] = field(default_factory=list)
    values: list[Check] = field(default_factory=list)
    indexes: list[Check] = field(default_factory=list)
    checksums: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.counts + self.references + self.values + self.indexes) \
            and all(c.get("match") is not False for c in self.checksums) and not self.failures


@dataclass
class Report:
    command: str
    source: str
    target: str
    layout: str
    dry_run: bool = False
    settings: dict = field(default_factory=dict)
    mlflow: str = ""
    revision: str = ""          # the source's alembic revision, as read
    target_revision: str = ""   # SQL targets with --target-revision: where the target ends
    snapshot: str = ""
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    seconds: float = 0.0
    tables: list[TableRow] = field(default_factory=list)
    skipped_tables: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    remapped: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)   # --experiments/--runs/--models/--since: what is copied, and why
    rewritten: dict = field(default_factory=dict)   # --rewrite-artifact-uri: rewritten values per column
    merge: dict = field(default_factory=dict)       # --merge: skipped, conflicts, merged-into, remapped
    sync: dict = field(default_factory=dict)        # sync: per table ranges compared/differing, rows changed
    plan: list[dict] = field(default_factory=list)
    estimate_seconds: float | None = None
    phases: dict = field(default_factory=dict)  # seconds per phase: connect, plan, schema, copy, indexes, verify
    copy_rows: int | None = None                # rows copied by this run (a resumed run's earlier parts excluded)
    verification: Verification | None = None
    error: str | None = None
    status: str = "FAILED"
    exit_code: int = 1

    def finish(self) -> "Report":
        if self.error:
            self.status = "FAILED"
        elif self.dry_run:
            self.status = "DRY RUN" if not self.blocking_problems else "FAILED"
        elif self.verification is not None and not self.verification.passed:
            self.status = "FAILED"
        else:
            self.status = "SUCCESS"
        if self.status in ("SUCCESS", "DRY RUN"):
            self.exit_code = 0
        return self

    def copy_figures(self) -> dict | None:
        """The copy phase alone: its seconds, the rows this run copied and their rate."""
        if "copy" not in self.phases:
            return None
        secs = self.phases["copy"]
        rows = self.copy_rows if self.copy_rows is not None else sum(t.migrated for t in self.tables)
        return {"seconds": round(secs, 3), "rows": rows, "rows_per_s": round(rows / secs, 1) if secs > 0 else 0.0}

    @property
    def blocking_problems(self) -> list[str]:
        return [p for p in self.problems if p.startswith("BLOCKING")]

    # ------------------------------------------------------------------ renderers
    def to_dict(self) -> dict:
        d = asdict(self)
        for t, row in zip(d["tables"], self.tables):
            t["rows_per_s"] = round(row.rows_per_s, 1)
            t["seconds"] = round(row.seconds, 3)
        d["seconds"] = round(self.seconds, 3)
        d["phases"] = {k: round(v, 3) for k, v in self.phases.items()}
        d["copy"] = self.copy_figures()
        if self.verification is not None:
            d["verification"]["passed"] = self.verification.passed
        return json.loads(mask_text(json.dumps(d, default=_json_default, allow_nan=False)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def to_text(self) -> str:
        lines = [f"dbmigrate {self.command}: {self.status}",
                 f"  source : {self.source}",
                 f"  target : {self.target}",
                 f"  layout : {self.layout}"]
        if self.mlflow:
            lines.append(f"  source schema: {self.mlflow}")
        if self.target_revision:
            from dbmigrate.mlflow_schema import schema_version
            lines.append(f"  target schema: {schema_version(self.target_revision).describe()}")
        if self.snapshot:
            lines.append(f"  snapshot: {self.snapshot}")
        if self.plan and self.dry_run:
            lines.append("")
            lines.append("Plan (what goes where):")
            for p in self.plan:
                if p["rows"] or not p["destination"].startswith("skipped"):
                    lines.append(f"  {p['table']:<34} {p['rows']:>12,}  -> {p['destination']}")
        shown = [t for t in self.tables if t.total or t.migrated]
        hidden = len(self.tables) - len(shown)
        if shown:
            lines.append("")
            hdr = f"  {'table':<30} {'total':>11} {'migrated':>11} {'skipped':>9} {'errors':>7} {'seconds':>9} {'rows/s':>11}"
            lines.append("Per table:" if not self.dry_run else "Per table (dry run: converted, nothing written):")
            lines.append(hdr)
            lines.append("  " + "-" * (len(hdr) - 2))
            for t in shown:
                lines.append(f"  {t.table:<30} {t.total:>11,} {t.migrated:>11,} {t.skipped:>9,} "
                             f"{t.errors:>7,} {t.seconds:>9.2f} {t.rows_per_s:>11,.0f}")
            tot = sum(t.total for t in self.tables)
            mig = sum(t.migrated for t in self.tables)
            lines.append("  " + "-" * (len(hdr) - 2))
            copy = self.copy_figures()
            if copy is not None:  # the copy alone; schema, indexes and verification are timed below
                label, secs, rate = "all tables (copy)", copy["seconds"], copy["rows_per_s"]
            else:
                label, secs = "all tables (wall clock)", self.seconds
                rate = mig / self.seconds if self.seconds > 0 else 0
            if hidden:
                lines.append(f"  ({hidden} empty tables not shown)")
            lines.append(f"  {label:<30} {tot:>11,} {mig:>11,} "
                         f"{sum(t.skipped for t in self.tables):>9,} {sum(t.errors for t in self.tables):>7,} "
                         f"{secs:>9.2f} {rate:>11,.0f}")
        if self.phases:
            lines.append("")
            lines.append("Time (wall clock):")
            copy = self.copy_figures()
            for name, secs in self.phases.items():
                line = f"  {PHASE_NAMES.get(name, name):<18} {secs:>9.2f} s"
                if name == "copy" and copy is not None:
                    line += f"  {copy['rows']:,} rows copied by this run, {copy['rows_per_s']:,.0f} rows/s"
                lines.append(line)
            lines.append(f"  {'total':<18} {self.seconds:>9.2f} s")
        if self.skipped_tables:
            lines.append("")
            lines.append("Skipped tables (no place in this layout; reported, never dropped silently):")
            for s in self.skipped_tables:
                if s["rows"]:
                    lines.append(f"  {s['table']:<34} {s['rows']:>10,} rows  {s['reason']}")
            empty = [s["table"] for s in self.skipped_tables if not s["rows"]]
            if empty:
                lines.append(f"  {len(empty)} empty tables with no place: {', '.join(empty)}")
        if self.estimate_seconds is not None:
            lines.append("")
            lines.append(f"Estimated migration time: {_fmt_duration(self.estimate_seconds)} "
                         f"(from row counts and this tool's measured rates; the target's speed dominates)")
        if self.problems:
            lines.append("")
            lines.append("Problems found:")
            lines.extend(f"  - {p}" for p in self.problems)
        if self.selection:
            lines.append("")
            lines.extend(selection_text(self.selection))
        if self.rewritten:
            lines.append("")
            lines.append("Artifact locations rewritten (--rewrite-artifact-uri), per column:")
            lines.extend(f"  {k:<44} {v:>10,}" for k, v in self.rewritten.items())
        if self.merge:
            lines.append("")
            lines.extend(merge_text(self.merge))
        if self.notes:
            lines.append("")
            lines.append("Notes:")
            lines.extend(f"  - {n}" for n in self.notes)
        if self.verification is not None:
            v = self.verification
            lines.append("")
            lines.append(f"Verification ({v.level}): {'PASSED' if v.passed else 'FAILED'} in {v.seconds:.2f} s")
            for group, checks in (("counts", v.counts), ("references", v.references),
                                  ("values", v.values), ("indexes", v.indexes)):
                if checks:
                    ok = sum(c.passed for c in checks)
                    lines.append(f"  {group}: {ok}/{len(checks)} passed")
                    quiet = 0
                    for c in checks:
                        if not c.passed or (group == "values" and not c.detail.startswith("0/0")):
                            lines.append(f"    {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
                        elif group == "values":
                            quiet += 1
                    if quiet:
                        lines.append(f"    ok   {quiet} empty collections, empty on both sides")
            if v.checksums:
                ok = sum(1 for c in v.checksums if c.get("match"))
                lines.append(f"  checksums (count + order-independent hash of canonical rows): "
                             f"{ok}/{len(v.checksums)} equal")
                empty = [c["name"] for c in v.checksums if c.get("match") and c.get("rows") == 0]
                for c in v.checksums:
                    if c["name"] in empty:
                        continue
                    mark = "ok  " if c.get("match") else ("FAIL" if c.get("match") is False else "    ")
                    lines.append(f"    {mark} {c['name']:<32} source {c.get('source', '-')}  target {c.get('target', '-')}")
                if empty:
                    lines.append(f"    ok   {len(empty)} empty tables, empty on both sides")
            for f in v.failures[:200]:
                lines.append(f"  FAILED {f}")
            if len(v.failures) > 200:
                lines.append(f"  ... and {len(v.failures) - 200} more failures")
        if self.error:
            lines.append("")
            lines.append(f"ERROR: {self.error}")
        lines.append("")
        lines.append(f"Status: {self.status}")
        return mask_text("\n".join(lines))


PHASE_NAMES = {"connect": "connect", "plan": "plan and analyse", "schema": "target schema", "copy": "copy",
               "indexes": "indexes", "verify": "verify", "upgrade": "schema upgrade"}


def _fmt_duration(s: float) -> str:
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _json_default(o):
    if isinstance(o, set):
        return sorted(o)
    return str(o)


def json_safe(v):
    """Values for a JSON report: NaN and infinities as strings."""
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


def selection_text(sel: dict) -> list[str]:
    out = ["Selection: " + "; ".join(sel.get("selected", []))]
    rows = sel.get("rows") or {}
    if rows:
        out.append("  rows to copy per table: " + ", ".join(f"{t} {n:,}" for t, n in rows.items() if n))
    for root, kinds in (sel.get("pulled_in") or {}).items():
        out.append(f"  {root} brings:")
        for kind, ids in kinds.items():
            shown = ", ".join(ids[:10]) + (f", ... ({len(ids)} in all)" if len(ids) > 10 else "")
            out.append(f"    {kind}: {shown}")
    return out


def merge_text(m: dict) -> list[str]:
    out = [f"Merge into the target (--on-conflict {m.get('on_conflict', 'fail')}):"]
    for k, label in (("remapped_experiments", "experiment ids taken on the target, remapped (source -> target)"),
                     ("merged_experiments", "experiments merged into the target's of the same name (source -> target)"),
                     ("merged_models", "registered models merged into the target's of the same name")):
        if m.get(k):
            out.append(f"  {label}: " + ", ".join(f"{a} -> {b}" if b is not None else str(a)
                                                   for a, b in m[k].items()))
    for k, label in (("identical", "rows already on the target, identical, skipped"),
                     ("conflicts_skipped", "conflicting rows skipped (the target's kept)"),
                     ("overwritten", "conflicting rows overwritten")):
        if m.get(k):
            out.append(f"  {label}: " + ", ".join(f"{t} {n:,}" for t, n in m[k].items()))
    if m.get("conflicts"):
        out.append(f"  conflicts ({len(m['conflicts'])}):")
        out.extend(f"    {c}" for c in m["conflicts"][:200])
    return out
