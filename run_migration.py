#!/usr/bin/env python3
"""Migrate an MLflow database into MongoDB: `python run_migration.py --postgres-uri URI --mongodb-uri URI`.

A thin entry point; the same as `dbmigrate migrate --source URI --target URI`. See README.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dbmigrate.cli import legacy_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(legacy_main())
