#!/usr/bin/env bash
# Run the test suite against real servers: PostgreSQL and MariaDB (local services, or
# DBMIGRATE_TEST_PG_URI / DBMIGRATE_TEST_MYSQL_URI), MongoDB (DBMIGRATE_TEST_MONGODB_URI, else a
# SecantusDB started by the tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -m "not slow" --durations=30 "$@"
