"""The checkpoint catalog of a migration: a small SQLite file per target.

It records the setup (URIs without passwords, layout, options, the source's MLflow revision) and
every part of the plan (a table, or a key range of a big table) with its status. A part is marked
done only after the target acknowledged all of its writes (MongoDB: journaled; SQL: committed),
so after a crash `--resume` redoes at most the parts that were in flight, and their rewrite is
idempotent. A resume under a different setup is refused, naming what differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from dbmigrate import __version__
from dbmigrate.errors import ConfigError, TargetNotEmpty

log = logging.getLogger(__name__)

DEFAULT_DIR = ".dbmigrate-state"
SETUP_KEYS = ("source", "target", "layout", "skip_unmapped", "revision", "orphans")


@dataclass
class PartState:
    id: str
    status: str          # pending | done
    rows: int
    seconds: float


def state_path(state_dir: str | None, target_masked: str) -> Path:
    base = Path(state_dir or os.environ.get("DBMIGRATE_STATE_DIR") or DEFAULT_DIR)
    digest = hashlib.sha256(target_masked.encode()).hexdigest()[:16]
    return base / f"migration-{digest}.sqlite"


class State:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS setup (key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE IF NOT EXISTS parts (id TEXT PRIMARY KEY, target TEXT, source_table TEXT,
                part TEXT, status TEXT, rows INTEGER, seconds REAL, finished TEXT, detail TEXT);
            CREATE TABLE IF NOT EXISTS steps (name TEXT PRIMARY KEY, status TEXT, finished TEXT,
                detail TEXT);
        """)

    @classmethod
    def read_only(cls, path: Path) -> "State":
        """An existing catalog opened for reading only (a dry run looks, never writes)."""
        self = cls.__new__(cls)
        self.path = path
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        return self

    @classmethod
    def existing(cls, state_dir, target_masked) -> "State | None":
        path = state_path(state_dir, target_masked)
        return cls(path) if path.exists() else None

    # ------------------------------------------------------------------ setup
    def setup(self) -> dict:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM setup")}

    def write_setup(self, setup: dict) -> None:
        self.db.execute("DELETE FROM setup")
        for k, v in {**setup, "tool": f"dbmigrate {__version__}", "created": _now()}.items():
            self.db.execute("INSERT INTO setup VALUES (?, ?)", (k, json.dumps(v)))

    def check_setup(self, setup: dict) -> None:
        """Refuse to resume a migration made with another setup."""
        old = self.setup()
        diffs = [f"{k}: was {old.get(k)!r}, now {setup.get(k)!r}" for k in SETUP_KEYS
                 if k in setup and old.get(k) != setup.get(k)]
        if diffs:
            raise ConfigError("Cannot resume: the interrupted migration used another setup ("
                              + "; ".join(diffs) + f"); its state is in {self.path}",
                              hint="resume with the same options, or use --restart to start over")

    # ------------------------------------------------------------------ parts
    def done_parts(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM parts WHERE status = 'done'")}

    def details(self) -> list[dict]:
        return [json.loads(d or "{}") for (d,) in
                self.db.execute("SELECT detail FROM parts WHERE status = 'done'")]

    def part_rows(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.execute("SELECT id, rows FROM parts WHERE status = 'done'")}

    def register(self, parts) -> None:
        with self.db:  # one transaction (one fsync), not one per part
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO parts (id, target, source_table, part, status, rows) "
                                "VALUES (?, ?, ?, ?, 'pending', 0)",
                                [(p.id, p.target, p.table, json.dumps(p.part)) for p in parts])

    def mark_done(self, part_id: str, rows: int, seconds: float, detail: dict | None = None) -> None:
        self.db.execute("UPDATE parts SET status = 'done', rows = ?, seconds = ?, finished = ?, detail = ? "
                        "WHERE id = ?", (rows, seconds, _now(), json.dumps(detail or {}), part_id))

    def progress(self) -> tuple[int, int]:
        done, total = self.db.execute(
            "SELECT SUM(status = 'done'), COUNT(*) FROM parts").fetchone()
        return int(done or 0), int(total or 0)

    # ------------------------------------------------------------------ steps
    def step_done(self, name: str) -> bool:
        row = self.db.execute("SELECT status FROM steps WHERE name = ?", (name,)).fetchone()
        return bool(row) and row[0] == "done"

    def mark_step(self, name: str, detail: str = "") -> None:
        self.db.execute("INSERT OR REPLACE INTO steps VALUES (?, 'done', ?, ?)", (name, _now(), detail))

    def step_detail(self, name: str) -> str | None:
        """The detail a done step recorded, None if the step is not done."""
        row = self.db.execute("SELECT status, detail FROM steps WHERE name = ?", (name,)).fetchone()
        return row[1] if row and row[0] == "done" else None

    @property
    def complete(self) -> bool:
        return self.step_done("complete")

    def close(self) -> None:
        self.db.close()

    def remove(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.remove(str(self.path) + suffix)
            except FileNotFoundError:
                pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def open_checkpoint(cfg, target_masked: str, setup: dict, *, check_resumable, clear_target,
                    require_empty, prepare=None) -> "State | None":
    """The checkpoint catalog of a migration into one target, for either kind of target.

    * new: `require_empty()` refuses a target that holds data (it only reads); then the catalog
      is written, and only then `prepare()` changes the target (a SQL schema is created), marked
      by the step "prepared". A run killed at any moment thus leaves a catalog saying how far it
      got, or nothing at all on the target.
    * resumed (`--resume`, same setup): a run killed before "prepared" has its half-made target
      cleared (`clear_target()`) and prepared again; otherwise `check_resumable()` adds the
      target kind's own checks. `--resume` with no catalog starts a new run when the target is
      empty (so `migrate || migrate --resume` converges whenever the kill fell).
    * restarted (`--restart`): `clear_target()` removes what the earlier run wrote.
    An unfinished earlier run is never overwritten silently.

    A dry run (`cfg.dry_run`) makes exactly the same checks, so it refuses with the same error
    and exit code as the real run would, but writes nothing (the catalog is only read) and
    returns None."""
    dry = cfg.dry_run
    path = state_path(cfg.state_dir, target_masked)
    existing = (State.read_only(path) if dry else State(path)) if path.exists() else None
    try:
        if cfg.resume and existing is not None:
            if existing.complete:
                raise ConfigError(f"--resume: the migration into {target_masked} already completed", hint=str(path))
            existing.check_setup(setup)
            done, total = existing.progress()
            prepared = existing.step_done("prepared") or done > 0  # catalogs before this step: prepared
            if prepared:
                check_resumable()
            log.info("%s: %d of %d parts already copied (state %s)%s", "would resume" if dry else "resuming",
                     done, total, path, "" if prepared else "; the target was being prepared: made again")
            if dry:
                return None
            if not prepared:
                clear_target()
                if prepare:
                    prepare()
                existing.mark_step("prepared")
            return existing
        if cfg.resume:
            try:
                require_empty()
            except TargetNotEmpty as exc:
                raise TargetNotEmpty(f"--resume: no interrupted migration into {target_masked} is recorded "
                                     f"(no state file {path}), and the target is not empty: {exc.message}",
                                     hint="if the interrupted run kept its catalog elsewhere, pass that "
                                          "--state-dir; otherwise point --target at an empty database") from None
            log.info("--resume: no interrupted migration into %s is recorded (no state file %s) and the "
                     "target is empty: %s", target_masked, path, "would start" if dry else "starting")
        elif cfg.restart:
            if existing is None:
                raise ConfigError(f"--restart: no earlier migration into {target_masked} to start over "
                                  f"(no state file {path})", hint="run without --restart")
            if dry:
                return None  # the real run removes what the earlier one wrote: nothing to check
            clear_target()
            existing.remove()
            existing = None
        elif existing is not None and not existing.complete:
            done, total = existing.progress()
            raise TargetNotEmpty(f"An interrupted migration into {target_masked} exists ({done} of {total} parts "
                                 f"copied; state {path})",
                                 hint="use --resume to continue it" if getattr(cfg, "merge", False) else
                                 "use --resume to continue it or --restart to start over")  # (a merge: never --restart)
        if not cfg.resume:
            require_empty()
        if dry:
            return None
        if existing is not None:
            existing.remove()
            existing = None
        state = State(path)
        state.write_setup(setup)
        if prepare:
            prepare()
        state.mark_step("prepared")
        return state
    except BaseException:
        if existing is not None:
            existing.close()
        raise
    finally:
        if dry and existing is not None:
            existing.close()
