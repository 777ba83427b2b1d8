#!/usr/bin/env bash
# Demo on embedded servers: real MLflow writes a sample database into PostgreSQL (the local service,
# or a private cluster started for the demo), dbmigrate copies it into a SecantusDB MongoDB-wire
# server started for the demo, verifies it and prints the report. Nothing outside is touched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m tests.support.demo "$@"
