#!/usr/bin/env python3
"""Derive what dbmigrate knows about MLflow's SQL schema from MLflow's own release wheels.

For every final MLflow release from 2.0.1 on (the list comes from the index with ``pip index
versions mlflow``; yanked releases are not offered there), download its wheel once into a cache
outside the repository (default ``~/.cache/dbmigrate-wheels``; mlflow-skinny, which ships the same
``mlflow/store/db_migrations``, and the full mlflow wheel only where no skinny wheel exists, e.g.
3.18.0), parse ``mlflow/store/db_migrations/versions/*.py`` with ``ast`` (nothing is imported or
run) and write ``dbmigrate/mlflow_data/revisions.json``:

* ``initial_tables``: what ``InitialBase.metadata.create_all`` makes before alembic runs (the
  ``__tablename__`` classes of ``mlflow/store/tracking/dbmodels/initial_models.py``);
* ``revisions``: every alembic revision in chain order (parents first; merge revisions and branch
  points are kept as they are: ``down_revision`` is a list then), each with the ordered schema
  operations of its ``upgrade()`` (tables created with their columns, dropped, renamed; columns
  added, dropped, altered; indexes and constraints), whether it also moves data, the file it
  comes from and the lowest release that ships it;
* ``releases``: for every release its head revision(s) and the wheel read.

The data file is committed; CI never runs this script. Run it again when MLflow releases:

    python scripts/mlflow_releases.py [--cache DIR] [--versions 3.0.1 3.1.4 ...] [--check]

``--check`` writes nothing and fails if the committed file differs from what the wheels give.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlflow_migrations import Migration, table_names_of_classes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "dbmigrate" / "mlflow_data" / "revisions.json"
VERSIONS_DIR = "mlflow/store/db_migrations/versions/"
INITIAL_MODELS = "mlflow/store/tracking/dbmodels/initial_models.py"
FIRST = (2, 0, 1)
def vkey(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


# ----------------------------------------------------------------------------- wheels
def final_releases() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "mlflow"],
                         capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("Available versions:"))
    found = [v.strip() for v in line.split(":", 1)[1].split(",")]
    return sorted((v for v in found if re.fullmatch(r"\d+\.\d+\.\d+", v) and vkey(v) >= FIRST),
                  key=vkey)


def wheel(version: str, cache: Path) -> Path:
    """The cached wheel of `version` (mlflow-skinny, else mlflow), downloaded if missing."""
    for pattern in (f"mlflow_skinny-{version}-*.whl", f"mlflow-{version}-*.whl"):
        hits = sorted(cache.glob(pattern))
        if hits:
            return hits[0]
    for package in ("mlflow-skinny", "mlflow"):
        res = subprocess.run([sys.executable, "-m", "pip", "download", f"{package}=={version}",
                              "--no-deps", "--only-binary", ":all:", "-q", "-d", str(cache)],
                             capture_output=True, text=True)
        if res.returncode == 0:
            return wheel(version, cache)
    raise SystemExit(f"no wheel of mlflow-skinny or mlflow {version}: {res.stderr.strip()[-500:]}")


# ----------------------------------------------------------------------------- parsing
def parse_wheel(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        models = [zf.read(n).decode() for n in names
                  if n.startswith("mlflow/store/") and "/dbmodels/" in n and n.endswith(".py")]
        classes = table_names_of_classes(models)
        initial = sorted(table_names_of_classes([zf.read(INITIAL_MODELS).decode()]).values())
        revisions = {}
        for n in names:
            if not (n.startswith(VERSIONS_DIR) and n.endswith(".py")) or "__init__" in n:
                continue
            text = zf.read(n).decode()
            m = Migration(text, classes)
            rev, down = m.consts.get("revision"), m.consts.get("down_revision")
            if not isinstance(rev, str):
                raise SystemExit(f"{path.name}: {n} has no literal revision")
            m.run()
            if m.unresolved:
                raise SystemExit(f"{path.name}: {n}: cannot resolve {', '.join(m.unresolved)}")
            revisions[rev] = {"revision": rev, "down_revision": down,
                              "file": n[len(VERSIONS_DIR):], "ops": m.ops,
                              "moves_data": m.data, "partial": m.partial,
                              "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}
    return {"initial_tables": initial, "revisions": revisions}


def downs(rev: dict) -> list[str]:
    d = rev["down_revision"]
    return [] if d is None else list(d) if isinstance(d, list) else [d]


def chain_order(revisions: dict) -> list[str]:
    """Parents before children; among siblings, by the order they were first released."""
    order, seen = [], set()

    def visit(r):
        if r in seen:
            return
        seen.add(r)
        for d in downs(revisions[r]):
            visit(d)
        order.append(r)
    for r in sorted(revisions, key=lambda r: (vkey(revisions[r]["first_release"]), r)):
        visit(r)
    return order


def build(versions: list[str], cache: Path) -> dict:
    merged: dict[str, dict] = {}
    releases: dict[str, dict] = {}
    initial = None
    for v in versions:
        whl = wheel(v, cache)
        parsed = parse_wheel(whl)
        if initial is None:
            initial = parsed["initial_tables"]
        elif parsed["initial_tables"] != initial:
            raise SystemExit(f"{v}: initial_models.py tables differ: {parsed['initial_tables']}")
        revs = parsed["revisions"]
        referenced = {d for r in revs.values() for d in downs(r)}
        heads = sorted(set(revs) - referenced)
        releases[v] = {"heads": heads, "wheel": whl.name,
                       "wheel_sha256": hashlib.sha256(whl.read_bytes()).hexdigest()}
        for rev, info in revs.items():
            known = merged.get(rev)
            if known is None:
                merged[rev] = {**info, "first_release": v, "releases": [v]}
                continue
            known["releases"].append(v)
            if known["down_revision"] != info["down_revision"]:
                raise SystemExit(f"revision {rev}: down_revision {known['down_revision']} in "
                                 f"{known['first_release']} but {info['down_revision']} in {v}")
            if known["ops"] != info["ops"]:
                # A migration edited after its first release: keep what the newest wheel does
                # (what `mlflow db upgrade` of a current MLflow runs) and say so.
                known.setdefault("edited_in", []).append(v)
                known["ops"], known["moves_data"] = info["ops"], info["moves_data"]
                known["partial"] = info["partial"]
    missing = {d for r in merged.values() for d in downs(r)} - set(merged)
    if missing:
        raise SystemExit(f"down_revisions without a migration file: {sorted(missing)}")
    order = chain_order(merged)
    out_revs = []
    for rev in order:
        info = merged[rev]
        out_revs.append({"revision": rev, "down_revision": info["down_revision"],
                         "first_release": info["first_release"], "file": info["file"],
                         "moves_data": info["moves_data"], "ops": info["ops"],
                         **({"ops_partly_unresolved": True} if info["partial"] else {}),
                         **({"edited_in": info["edited_in"]} if "edited_in" in info else {})})
    return {
        "about": "Made by scripts/mlflow_releases.py from the wheels of every final MLflow release "
                 "(mlflow-skinny, or mlflow where no skinny wheel exists) on PyPI; do not edit.",
        "initial_tables": initial,
        "revisions": out_revs,
        "releases": releases,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dbmigrate-wheels")
    p.add_argument("--versions", nargs="*", help="releases to read (default: every final release "
                   "from 2.0.1 on that the index offers)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--check", action="store_true", help="compare with the file, write nothing")
    args = p.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    versions = sorted(args.versions, key=vkey) if args.versions else final_releases()
    data = build(versions, args.cache)
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        print("up to date" if same else f"{args.out} differs from the wheels")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    heads = sorted({h for r in data["releases"].values() for h in r["heads"]})
    print(f"{len(versions)} releases, {len(data['revisions'])} revisions, {len(heads)} distinct "
          f"heads -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
