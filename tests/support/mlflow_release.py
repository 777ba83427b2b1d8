"""Sources made by any MLflow release's own client, each release in a virtualenv of its own.

The pattern of tests/support/mlflow2.py generalised: ``<repo>/.venv-mlflow-<version>`` (ignored by
the ``.venv*/`` pattern of .gitignore) is built once per machine with mlflow-skinny of that release
plus the few packages its client needs to log to a SQL store, and ``populate`` of
tests/support/make_source.py runs in it in a subprocess. The main environment's release (3.17.2)
needs no virtualenv of its own.

    from tests.support.mlflow_release import populate_release
    ids = populate_release("3.0.1", "postgresql+psycopg2://postgres@127.0.0.1/src")

mlflow-skinny is what a SQL tracking store needs (MLflow's store, migrations and client) without
the UI and the model flavours; pandas is added for ``mlflow.data.from_pandas``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAIN_RELEASE = "3.17.2"  # the main environment's MLflow (pyproject's test extra)
JSON_PREFIX = "IDS-JSON="


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


# Releases whose mlflow-skinny is not on the index: the previous skinny release and its
# dependencies, then the full mlflow wheel of the release over it with --no-deps (as DESIGN.md
# says for 3.18.0, whose pins do not resolve). These also get dbmigrate's own dependencies, so
# dbmigrate can run there with that MLflow's migrations (--target-revision head).
NO_SKINNY = {"3.18.0": "3.17.2"}
DBMIGRATE_DEPS = ("pymongo>=4.6,<5", "pyarrow>=14", "tqdm>=4.60")


def no_deps(version: str) -> tuple[str, ...]:
    return (f"mlflow=={version}",) if version in NO_SKINNY else ()


def requirements(version: str) -> tuple[str, ...]:
    """What the release's virtualenv gets: found by trying (see the module docstring)."""
    skinny = NO_SKINNY.get(version, version)
    reqs = [f"mlflow-skinny=={skinny}", "sqlalchemy>=2.0,<2.1", "alembic", "psycopg2-binary",
            "pymysql", "pandas"]
    if version in NO_SKINNY:
        reqs += DBMIGRATE_DEPS
    if _key(version) < (3, 4):
        # The tracing processors of MLflow 2.x - 3.1 never call SimpleSpanProcessor.__init__,
        # which holds state (_shutdown) from opentelemetry-sdk 1.41 on: spans then never end and
        # no trace is written. (3.4 and 3.10 were tried without the pin and work.)
        reqs.append("opentelemetry-sdk<1.41")
    if _key(version) < (2, 15):
        # numpy 2 removed np.float_ & co., which MLflow 2.9's data and schema code uses.
        reqs += ["numpy<2", "pandas<2.3"]
    return tuple(reqs)


def env_dir(version: str) -> Path:
    return ROOT / f".venv-mlflow-{version}"


def _python(version: str) -> Path:
    return env_dir(version) / "bin" / "python"


def _marker(version: str) -> Path:
    return env_dir(version) / ".dbmigrate-requirements"


def _marker_text(version: str) -> str:
    return "\n".join(requirements(version) + tuple(f"--no-deps {r}" for r in no_deps(version))) + "\n"


def _ready(version: str) -> bool:
    try:
        return _marker(version).read_text() == _marker_text(version) and _python(version).exists()
    except OSError:
        return False


def _base_python() -> str:
    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for cand in (Path(sys.base_prefix) / "bin" / ver, Path(sys.base_prefix) / "bin" / "python3"):
        if cand.exists():
            return str(cand)
    return sys.executable


def clean_env(version: str) -> dict:
    """Environment for the release's interpreter: nothing that points it at the main venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP",
                        "PYTHONUSERBASE", "PIP_REQUIRE_VIRTUALENV", "PYTHONSAFEPATH")
           and (not k.startswith("MLFLOW_") or k == "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", GIT_PYTHON_REFRESH="quiet")
    venv_bin = str(env_dir(version) / "bin")
    rest = [p for p in env.get("PATH", "").split(os.pathsep)
            if p and not p.startswith(str(ROOT / ".venv"))]
    env["PATH"] = os.pathsep.join([venv_bin, *rest])
    env["VIRTUAL_ENV"] = str(env_dir(version))
    return env


def _run(version: str, cmd: list[str], what: str, timeout: float) -> str:
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=clean_env(version), capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} timed out after {timeout:.0f} s") from None
    if res.returncode != 0:
        tail = (res.stdout + "\n" + res.stderr)[-4000:]
        raise RuntimeError(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n{tail}")
    return res.stdout


def _build(version: str) -> float:
    d, lock = env_dir(version), env_dir(version) / ".dbmigrate-lock"
    for entry in d.iterdir():
        if entry == lock:
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    start = time.monotonic()
    _run(version, [_base_python(), "-m", "venv", str(d)], f"creating {d.name}", 300)
    py = str(_python(version))
    reqs = requirements(version)
    _run(version, [py, "-m", "pip", "install", "--quiet", *reqs],
         f"installing {' '.join(reqs)} into {d.name}", 1800)
    if no_deps(version):
        _run(version, [py, "-m", "pip", "install", "--quiet", "--no-deps", *no_deps(version)],
             f"installing {' '.join(no_deps(version))} (no dependencies) into {d.name}", 1800)
    _run(version, [py, "-c", "import mlflow, sqlalchemy, psycopg2, pymysql, pandas; "
                             f"assert mlflow.__version__ == {version!r}, mlflow.__version__; "
                             "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore"],
         f"importing MLflow {version} in {d.name}", 300)
    seconds = time.monotonic() - start
    tmp = _marker(version).with_suffix(".tmp")
    tmp.write_text(_marker_text(version))
    tmp.replace(_marker(version))
    (d / ".dbmigrate-build-seconds").write_text(f"{seconds:.1f}\n")
    return seconds


def python_for(version: str) -> Path:
    """The interpreter with MLflow `version`: the main one for 3.17.2, else the release's own
    virtualenv, built now if missing (several processes wait on one file lock)."""
    if version == MAIN_RELEASE:
        return Path(sys.executable)
    if _ready(version):
        return _python(version)
    env_dir(version).mkdir(exist_ok=True)
    with open(env_dir(version) / ".dbmigrate-lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if not _ready(version):
                _build(version)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return _python(version)


def run_in_release(version: str, code: str, *args: str, timeout: float = 900) -> str:
    """Run Python `code` with MLflow `version` (cwd = repo root, importable); its stdout."""
    py = python_for(version)
    env = clean_env(version) if version != MAIN_RELEASE else {
        k: v for k, v in os.environ.items()
        if not k.startswith("MLFLOW_") or k == "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"}
    cmd = [str(py), "-s", "-E", "-c", code, *args] if version != MAIN_RELEASE else \
        [str(py), "-c", code, *args]
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"MLflow {version} timed out after {timeout:.0f} s") from None
    if res.returncode != 0:
        raise RuntimeError(f"MLflow {version} failed (exit {res.returncode}):\n{res.stderr[-4000:]}")
    return res.stdout


def populate_release(version: str, uri: str, **kwargs) -> dict:
    """``tests.support.make_source.populate(uri, **kwargs)`` run by MLflow `version`'s client."""
    code = ("import json, sys; from tests.support.make_source import populate; "
            "ids = populate(sys.argv[1], **json.loads(sys.argv[2])); "
            f"print({JSON_PREFIX!r} + json.dumps(ids), flush=True)")
    out = run_in_release(version, code, uri, json.dumps(kwargs))
    for line in out.splitlines():
        if line.startswith(JSON_PREFIX):
            return json.loads(line[len(JSON_PREFIX):])
    raise RuntimeError(f"MLflow {version}'s populate printed no ids:\n{out[-2000:]}")


def run_dbmigrate(version: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m dbmigrate.cli ARGS`` in MLflow `version`'s virtualenv (the repo's dbmigrate,
    from the cwd): its schema work then uses that MLflow's migrations."""
    py = python_for(version)
    return subprocess.run([str(py), "-s", "-E", "-m", "dbmigrate.cli", *args], cwd=ROOT,
                          env=clean_env(version), capture_output=True, text=True, timeout=timeout)


def db_upgrade(version: str, uri: str) -> None:
    """``mlflow db upgrade`` with MLflow `version`, as its command line does it."""
    code = ("import sys; from mlflow.store.db.utils import _upgrade_db, create_sqlalchemy_engine; "
            "e = create_sqlalchemy_engine(sys.argv[1]); _upgrade_db(e); e.dispose()")
    run_in_release(version, code, uri)


if __name__ == "__main__":  # python -m tests.support.mlflow_release VERSION...: build the venvs
    for v in sys.argv[1:]:
        t0 = time.monotonic()
        print(v, python_for(v), f"{time.monotonic() - t0:.1f} s", flush=True)
