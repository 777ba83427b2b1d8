"""Benchmark suite for dbmigrate (see benchmarks/README.md).

generate  -- builds an MLflow-shaped PostgreSQL database at scale (deterministic from a seed).
limits    -- measures the hardware/server limits dbmigrate is compared against, on that data.
run       -- one command: source, limits and dbmigrate end to end per scenario, results as JSON
             and markdown (``python -m benchmarks.run --smoke`` in CI).
"""
