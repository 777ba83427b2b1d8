"""One frozen configuration object. Precedence: command-line flag > DBMIGRATE_* environment
variable > --config JSON file > defaults. Unknown config keys are errors that name the key."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from dbmigrate.errors import ConfigError

VERIFY_LEVELS = ("none", "counts", "sample", "full")
LAYOUTS = ("mlflow-mongodb", "tables")
FLAVORS = ("auto", "mongodb", "cosmos")
CONFLICT_POLICIES = ("fail", "skip", "overwrite")
EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class Config:
    source: str | None = None
    target: str | None = None
    layout: str | None = None          # None: mlflow-mongodb for MongoDB targets
    batch_size: int = 10_000
    workers: int = 0                   # 0: one per CPU
    dry_run: bool = False
    verify: str = "sample"             # none | counts | sample | full
    sample_size: int = 1000
    report_json: str | None = None
    progress: bool = True
    log_level: str = "INFO"
    skip_unmapped: bool = False
    resume: bool = False
    restart: bool = False
    state_dir: str | None = None
    target_flavor: str = "auto"
    orphans: str = "copy"              # copy | skip
    connect_timeout: int = 10
    target_revision: str | None = None  # SQL targets: end at this alembic revision (or "head")
    # selection with its closure (dbmigrate.selection): comma-separated lists
    experiments: str | None = None
    runs: str | None = None
    models: str | None = None
    since: str | None = None
    with_parents: bool = False
    rewrite_artifact_uri: tuple[str, ...] | None = None  # OLD_PREFIX=NEW_PREFIX, in order
    merge: bool = False                # into a target that already holds MLflow data
    on_conflict: str | None = None     # fail (default) | skip | overwrite; only with merge
    rename_experiment: tuple[str, ...] | None = None  # OLD=NEW
    rename_model: tuple[str, ...] | None = None       # OLD=NEW
    executor: str = "local"            # where parts run: local processes or a Dask cluster
    scheduler: str | None = None       # --executor dask: tcp://HOST:PORT (None: a LocalCluster)

    def check(self) -> "Config":
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size}")
        if self.batch_size > 1_000_000:
            raise ConfigError(f"batch_size {self.batch_size} is too large (at most 1,000,000)")
        if self.sample_size < 1:
            raise ConfigError(f"sample_size must be a positive integer, got {self.sample_size}")
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 (one per CPU) or more, got {self.workers}")
        if self.verify not in VERIFY_LEVELS:
            raise ConfigError(f"verify must be one of {', '.join(VERIFY_LEVELS)}, got {self.verify!r}")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.target_flavor not in FLAVORS:
            raise ConfigError(f"target flavor must be one of {', '.join(FLAVORS)}, got {self.target_flavor!r}")
        if self.orphans not in ("copy", "skip"):
            raise ConfigError(f"orphans must be copy or skip, got {self.orphans!r}")
        if self.on_conflict is not None and self.on_conflict not in CONFLICT_POLICIES:
            raise ConfigError(f"on_conflict must be one of {', '.join(CONFLICT_POLICIES)}, got {self.on_conflict!r}")
        if self.on_conflict is not None and not self.merge:
            raise ConfigError("--on-conflict applies to a --merge only")
        if self.merge and self.restart:
            raise ConfigError("--restart cannot be used with --merge: it would clear a target that held data "
                              "before the merge", hint="see README, Checkpoints: a killed merge is resumed")
        if self.since:
            from dbmigrate.selection import parse_since
            parse_since(self.since)
        if self.models:
            from dbmigrate.selection import parse_models
            parse_models(self.models)
        from dbmigrate.rewrite import parse_pairs
        parse_pairs(self.rewrite_artifact_uri, "--rewrite-artifact-uri")
        parse_pairs(self.rename_experiment, "--rename-experiment")
        parse_pairs(self.rename_model, "--rename-model")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.resume and self.restart:
            raise ConfigError("--resume and --restart are mutually exclusive")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log level must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")
        return self

    def as_dict(self) -> dict:
        """The fields, to rebuild the same Config in a worker process."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def resume_options(self) -> dict:
        """The selection, rewrite and merge options set (tuples as lists), which a resume must repeat."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k in ("experiments", "runs", "models", "since", "with_parents", "rewrite_artifact_uri",
                          "merge", "on_conflict", "rename_experiment", "rename_model")
                if (v := getattr(self, k))}

    @property
    def conflict_policy(self) -> str:
        return self.on_conflict or "fail"

    @property
    def selecting(self) -> bool:
        return bool(self.experiments or self.runs or self.models or self.since)

    @property
    def effective_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


# Environment variables, each mapped to a Config field (and its parser).
ENV_VARS = {
    "DBMIGRATE_SOURCE_URI": "source",
    "DBMIGRATE_TARGET_URI": "target",
    "DBMIGRATE_LAYOUT": "layout",
    "DBMIGRATE_BATCH_SIZE": "batch_size",
    "DBMIGRATE_WORKERS": "workers",
    "DBMIGRATE_VERIFY": "verify",
    "DBMIGRATE_REPORT_JSON": "report_json",
    "DBMIGRATE_LOG_LEVEL": "log_level",
    "DBMIGRATE_STATE_DIR": "state_dir",
    "DBMIGRATE_TARGET_FLAVOR": "target_flavor",
    "DBMIGRATE_SKIP_UNMAPPED": "skip_unmapped",
    "DBMIGRATE_ORPHANS": "orphans",
    "DBMIGRATE_TARGET_REVISION": "target_revision",
    "DBMIGRATE_EXECUTOR": "executor",
    "DBMIGRATE_SCHEDULER": "scheduler",
}

# Config file: section -> key -> Config field. "destination.recommended" is the older tools'
# name for the target URI and is accepted as a synonym of destination.connection_uri.
FILE_KEYS = {
    "source": {"connection_uri": "source"},
    "destination": {"connection_uri": "target", "recommended": "target", "layout": "layout",
                    "flavor": "target_flavor", "target_revision": "target_revision"},
    "migration_settings": {"batch_size": "batch_size", "dry_run": "dry_run",
                           "validate_data": "_validate_data", "verify": "verify",
                           "sample_size": "sample_size", "workers": "workers",
                           "report_json": "report_json", "skip_unmapped": "skip_unmapped",
                           "orphans": "orphans", "state_dir": "state_dir",
                           "progress": "progress", "log_level": "log_level", "merge": "merge",
                           "executor": "executor", "scheduler": "scheduler",
                           "on_conflict": "on_conflict", "rename_experiment": "rename_experiment",
                           "rename_model": "rename_model", "rewrite_artifact_uri": "rewrite_artifact_uri"},
    "selection": {"experiments": "experiments", "runs": "runs", "models": "models", "since": "since",
                  "with_parents": "with_parents"},
}

_TYPES = {f.name: f.type for f in fields(Config)}


def _coerce(name: str, value: Any, origin: str):
    kind = _TYPES[name]
    try:
        if "tuple" in kind:  # a list of strings (a JSON list, or one string)
            if isinstance(value, str):
                return (value,)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ValueError
        if isinstance(value, list) and name in ("experiments", "runs", "models"):
            value = ",".join(str(v) for v in value)
        if "bool" in kind:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.lower() in ("1", "true", "yes", "on")
            raise ValueError
        if "int" in kind:
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        return None if value is None else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: {value!r} is not a valid {kind.split('|')[0].strip()}") from None


def from_file(path: str) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"Config file not found: {path}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"Config file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a JSON object")
    out: dict[str, Any] = {}
    for section, body in data.items():
        if section not in FILE_KEYS:
            raise ConfigError(f"Config file {path}: unknown key {section!r}",
                              hint=f"known sections: {', '.join(FILE_KEYS)}")
        if not isinstance(body, dict):
            raise ConfigError(f"Config file {path}: {section!r} must be an object")
        for key, value in body.items():
            target = FILE_KEYS[section].get(key)
            if target is None:
                raise ConfigError(f"Config file {path}: unknown key {section}.{key}",
                                  hint=f"known keys in {section}: {', '.join(FILE_KEYS[section])}")
            if key == "recommended" and isinstance(value, dict):
                unknown = set(value) - {"connection_uri"}
                if unknown:
                    raise ConfigError(f"Config file {path}: unknown key {section}.{key}.{sorted(unknown)[0]}")
                value = value.get("connection_uri")
            if target == "_validate_data":
                v = _coerce("dry_run", value, f"{path}: {section}.{key}")
                out.setdefault("verify", "sample") if v else None
                if not v:
                    out["verify"] = "none"
                continue
            out[target] = _coerce(target, value, f"{path}: {section}.{key}")
    return out


def from_env(environ=None) -> dict:
    env = os.environ if environ is None else environ
    out = {}
    for var, name in ENV_VARS.items():
        if env.get(var, "") != "":
            out[name] = _coerce(name, env[var], f"environment variable {var}")
    return out


def build(cli: dict, config_file: str | None = None, environ=None) -> Config:
    """Merge the layers. `cli` holds only flags the user actually gave."""
    merged: dict[str, Any] = {}
    if config_file:
        merged.update(from_file(config_file))
    merged.update(from_env(environ))
    merged.update({k: v for k, v in cli.items() if v is not None})
    return replace(Config(), **merged).check()
