#!/usr/bin/env bash
# Run the test suite against real servers: PostgreSQL and MariaDB (local services, or
# DBMIGRATE_TEST_PG_URI / DBMIGRATE_TEST_MYSQL_URI), MongoDB (DBMIGRATE_TEST_MONGODB_URI, else a
# SecantusDB started by the tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# Two test processes (pytest-xdist; DBMIGRATE_TEST_PROCESSES=1 runs them in one): most tests wait
# on servers and MLflow subprocesses, so two at a time on 2 CPUs halve the wall time (14.5 against
# ~30 min here). Each process has its own databases, SecantusDB and MLflow-made sources.
exec .venv/bin/python -m pytest -q -m "not slow" -n "${DBMIGRATE_TEST_PROCESSES:-2}" --dist worksteal --durations=30 "$@"
