"""MLflow 2.22.5 sources for the tests, made in a virtualenv of their own.

MLflow 2.22.5 cannot run in the project's main environment: it needs ``sqlalchemy<2.1`` (it
imports ``FallbackAsyncAdaptedQueuePool``, which SQLAlchemy 2.1 removed), while the main
environment has MLflow 3.17.2 on SQLAlchemy 2.1. So the tests build ``<repo>/.venv-mlflow2``
once (matched by the ``.venv*/`` pattern of .gitignore) and run
``tests/support/make_source.py``'s ``populate`` with that interpreter in a subprocess.

    from tests.support.mlflow2 import ensure_env, populate_mlflow2
    ids = populate_mlflow2("postgresql+psycopg2://postgres@127.0.0.1/src")

Notes for the URIs: the 2.22.5 environment has psycopg2 and pymysql; give the driver explicitly
(``postgresql+psycopg2://``, ``mysql+pymysql://``) as for the main environment.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = ROOT / ".venv-mlflow2"
MLFLOW2_VERSION = "2.22.5"
REQUIREMENTS = (
    f"mlflow=={MLFLOW2_VERSION}",
    "sqlalchemy>=2.0,<2.1",  # 2.22.5 imports FallbackAsyncAdaptedQueuePool (gone in 2.1)
    "psycopg2-binary",
    "pymysql",
    # From 1.41 SimpleSpanProcessor keeps state set in its __init__, which 2.22.5's
    # MlflowSpanProcessor never calls: spans then fail to end and no trace is written.
    "opentelemetry-sdk<1.41",
)
# Written last, after a successful install: its text is the requirement list the env was made for.
MARKER = ENV_DIR / ".dbmigrate-requirements"
# Lives inside ENV_DIR and survives a rebuild (only the other entries are removed), so every
# process always locks the same file.
LOCK = ENV_DIR / ".dbmigrate-lock"
JSON_PREFIX = "IDS-JSON="


def _python() -> Path:
    return ENV_DIR / "bin" / "python"


def _marker_text() -> str:
    return "\n".join(REQUIREMENTS) + "\n"


def _ready() -> bool:
    try:
        return MARKER.read_text() == _marker_text() and _python().exists()
    except OSError:
        return False


def _base_python() -> str:
    """A real interpreter, not a venv's nor a pyenv shim, to create the new venv from."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for cand in (Path(sys.base_prefix) / "bin" / version, Path(sys.base_prefix) / "bin" / "python3"):
        if cand.exists():
            return str(cand)
    return sys.executable


def _clean_env() -> dict:
    """Environment for the child interpreter: nothing that points it at the main venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP",
                        "PYTHONUSERBASE", "PIP_REQUIRE_VIRTUALENV", "PYTHONSAFEPATH")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.setdefault("GIT_PYTHON_REFRESH", "quiet")
    venv_bin = str(ENV_DIR / "bin")
    rest = [p for p in env.get("PATH", "").split(os.pathsep)
            if p and not p.startswith(str(ROOT / ".venv"))]
    env["PATH"] = os.pathsep.join([venv_bin, *rest])
    env["VIRTUAL_ENV"] = str(ENV_DIR)
    return env


def _run(cmd: list[str], what: str, timeout: float) -> None:
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=_clean_env(), capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        raise RuntimeError(f"{what} timed out after {timeout:.0f} s:\n{out[-4000:]}") from None
    if res.returncode != 0:
        tail = (res.stdout + "\n" + res.stderr)[-4000:]
        raise RuntimeError(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n{tail}")


def _build() -> None:
    # Remove everything but the lock file, then make the venv afresh in the same directory.
    for entry in ENV_DIR.iterdir():
        if entry == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    _run([_base_python(), "-m", "venv", str(ENV_DIR)], "creating the MLflow 2 virtualenv", 300)
    py = str(_python())
    _run([py, "-m", "pip", "install", "--quiet", *REQUIREMENTS],
         f"installing {' '.join(REQUIREMENTS)} into {ENV_DIR}", 1800)
    # Check that it imports with the SQLAlchemy it needs before calling it done.
    _run([py, "-c", "import mlflow, sqlalchemy, psycopg2, pymysql, pandas; "
                    f"assert mlflow.__version__ == {MLFLOW2_VERSION!r}, mlflow.__version__; "
                    "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore"],
         "importing MLflow 2 in its virtualenv", 300)
    tmp = MARKER.with_suffix(".tmp")
    tmp.write_text(_marker_text())
    tmp.replace(MARKER)


def ensure_env() -> Path:
    """Make ``<repo>/.venv-mlflow2`` with MLflow 2.22.5 unless it is already there; returns its
    python. Safe to call from several processes at once (they wait on a file lock)."""
    if _ready():
        return _python()
    ENV_DIR.mkdir(exist_ok=True)
    with open(LOCK, "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if not _ready():  # another process may have built it while this one waited
                _build()
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return _python()


def populate_mlflow2(uri: str, *, timeout: float = 900, **kwargs) -> dict:
    """Run ``tests.support.make_source.populate(uri, **kwargs)`` with MLflow 2.22.5 in its own
    interpreter (cwd = repo root) and return the ids it made."""
    py = ensure_env()
    code = ("import json, sys; from tests.support.make_source import populate; "
            f"ids = populate(sys.argv[1], **json.loads(sys.argv[2])); "
            f"print({JSON_PREFIX!r} + json.dumps(ids), flush=True)")
    # -I would also drop the cwd from sys.path; -s -E keep the main venv's site-packages and any
    # PYTHON* variables out, while the cwd (repo root) stays importable.
    cmd = [str(py), "-s", "-E", "-c", code, uri, json.dumps(kwargs)]
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=_clean_env(), capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"making the MLflow {MLFLOW2_VERSION} source timed out after "
                           f"{timeout:.0f} s") from None
    if res.returncode != 0:
        raise RuntimeError(f"making the MLflow {MLFLOW2_VERSION} source failed "
                           f"(exit {res.returncode}):\n{res.stderr[-4000:]}")
    for line in res.stdout.splitlines():
        if line.startswith(JSON_PREFIX):
            return json.loads(line[len(JSON_PREFIX):])
    raise RuntimeError(f"the MLflow {MLFLOW2_VERSION} populate printed no ids:\n"
                       f"{res.stdout[-2000:]}\n{res.stderr[-2000:]}")


if __name__ == "__main__":  # python -m tests.support.mlflow2 URI: build the env and populate
    if len(sys.argv) > 1:
        print(json.dumps(populate_mlflow2(sys.argv[1])))
    else:
        print(ensure_env())
