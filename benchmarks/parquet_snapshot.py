"""Parquet snapshot writer/reader against pyarrow alone, on a metrics-like table.

    python -m benchmarks.parquet_snapshot --rows 1000000 [--batch-size 10000] [--dir /tmp/x]

Each mode runs in its own process (peak RSS is per process). Rows are generated lazily in batches
of tuples like SqlSource yields them (run_uuid, key, value with NaN/+-inf/-0.0, timestamp, step,
is_nan); only the time inside the writer's / pyarrow's calls is counted, never the generation.

  write     SnapshotWriter.write per batch + finalize (type checks, checksum, fsync, sha256, manifest)
  pa-write  the limit: pa.array per column + pq.ParquetWriter, same row groups (128k) and zstd
  read      ParquetSnapshot(verify="files").open() + rows() of every column, as tuples
  verify    ParquetSnapshot(verify="full").open(): sha256 + every row's checksum
  pa-read   the limit: pq.ParquetFile.iter_batches + to_pylist per column, zipped into tuples
  pa-arrow  reference: iter_batches alone, no Python values
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

COLUMNS = ["key", "value", "timestamp", "run_uuid", "step", "is_nan"]
SPECIAL = [float("nan"), float("inf"), float("-inf"), -0.0, 5e-324]


def batches(total: int, size: int, seed: int = 7):
    rng = random.Random(seed)
    runs = [f"{rng.getrandbits(128):032x}" for _ in range(max(total // 100, 1))]
    keys = [f"metric_{i}" for i in range(20)]
    done = 0
    while done < total:
        n = min(size, total - done)
        out = []
        for i in range(done, done + n):
            v = SPECIAL[i % 5] if i % 997 == 0 else rng.random() * 100
            out.append((keys[i % 20], v, 1_700_000_000_000 + i, runs[i % len(runs)], i // 20, v != v))
        done += n
        yield out


def table():
    from dbmigrate.model import Column, Table
    types = {"key": "str", "value": "float", "timestamp": "int", "run_uuid": "str", "step": "int", "is_nan": "bool"}
    return Table("metrics", [Column(c, types[c], c == "value") for c in COLUMNS], ["key", "timestamp", "step", "run_uuid", "value"])


def run(mode: str, rows: int, batch_size: int, d: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    spent, n = 0.0, 0
    if mode == "write":
        from dbmigrate.writers.parquet import SnapshotWriter
        shutil.rmtree(d, ignore_errors=True)
        w = SnapshotWriter(d)
        w.prepare({"metrics": table()}, "dc11669786a5")
        for b in batches(rows, batch_size):
            t0 = time.perf_counter()
            w.write("metrics", COLUMNS, b)
            spent += time.perf_counter() - t0
            n += len(b)
        t0 = time.perf_counter()
        w.finalize()
        spent += time.perf_counter() - t0
    elif mode == "pa-write":
        from dbmigrate.arrow_rows import arrow_schema
        schema = arrow_schema(table(), COLUMNS)
        os.makedirs(d, exist_ok=True)
        out, buf, buffered = pq.ParquetWriter(os.path.join(d, "pa.parquet"), schema, compression="zstd"), [], 0
        for b in batches(rows, batch_size):
            t0 = time.perf_counter()
            cols = list(zip(*b))
            buf.append(pa.RecordBatch.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, schema)],
                                                  schema=schema))
            buffered += len(b)
            if buffered >= 128 * 1024:
                out.write_table(pa.Table.from_batches(buf))
                buf, buffered = [], 0
            spent += time.perf_counter() - t0
            n += len(b)
        t0 = time.perf_counter()
        if buf:
            out.write_table(pa.Table.from_batches(buf))
        out.close()
        spent += time.perf_counter() - t0
    elif mode in ("read", "verify"):
        from dbmigrate.readers.parquet import ParquetSnapshot
        t0 = time.perf_counter()
        r = ParquetSnapshot(d, verify="full" if mode == "verify" else "files").open()
        if mode == "read":
            for b in r.rows("metrics", COLUMNS, batch_size):
                n += len(b)
        else:
            n = r.count("metrics")
        spent = time.perf_counter() - t0
    else:
        path = os.path.join(d, "pa.parquet")
        t0 = time.perf_counter()
        for b in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
            if mode == "pa-read":
                n += len(list(zip(*(b.column(c).to_pylist() for c in COLUMNS))))
            else:
                n += b.num_rows
        spent = time.perf_counter() - t0
    assert n == rows, (mode, n)
    return {"mode": mode, "rows": n, "seconds": round(spent, 3), "rows_per_s": round(n / spent),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.mode:
        print(json.dumps(run(a.mode, a.rows, a.batch_size, a.dir)))
        return
    d = a.dir or tempfile.mkdtemp(prefix="dbm-parquet-bench-")
    base = subprocess.run([sys.executable, "-c", "import resource, pyarrow.parquet, dbmigrate.readers.parquet;"
                           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"],
                          capture_output=True, text=True, check=True).stdout.strip()
    print(f"{a.rows:,} metric rows, batches of {a.batch_size:,}; RSS after imports alone {float(base):.0f} MB")
    for mode in ("write", "pa-write", "read", "verify", "pa-read", "pa-arrow"):
        out = subprocess.run([sys.executable, "-m", "benchmarks.parquet_snapshot", "--mode", mode, "--rows",
                              str(a.rows), "--batch-size", str(a.batch_size), "--dir", d],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr)
        r = json.loads(out.stdout)
        print(f"{mode:9} {r['seconds']:8.2f} s {r['rows_per_s']:>11,} rows/s  peak RSS {r['peak_rss_mb']:6.0f} MB")
    size = sum(os.path.getsize(os.path.join(p, f)) for p, _, fs in os.walk(os.path.join(d, "metrics")) for f in fs)
    print(f"snapshot: {size / 1e6:.1f} MB in {len(os.listdir(os.path.join(d, 'metrics')))} file(s)")
    if not a.dir:
        shutil.rmtree(d)


if __name__ == "__main__":
    main()
