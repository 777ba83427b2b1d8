"""Parts and workers: a migration is a list of parts (a table, or one key range of a big table),
each copied by a worker process that reads the source's one exported snapshot, converts, writes,
and reports back; the main process records a part as done in the checkpoint catalog only after
it returned, i.e. after the target acknowledged every write of it.

Big run- and trace-keyed tables are cut into ranges of their id column (boundaries taken from
`runs` / `trace_info` in the database's own order). Several workers run only when the source is
PostgreSQL, whose snapshot can be shared (`pg_export_snapshot`); other sources are read by one
worker in one transaction, still in parts, so a resume redoes little.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import queue
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("dbmigrate")

# Tables that may be cut into key ranges: column -> (the table whose values give the boundaries).
RANGE_KEYS = {
    "metrics": "run_uuid", "latest_metrics": "run_uuid", "params": "run_uuid", "tags": "run_uuid",
    "runs": "run_uuid", "spans": "trace_id", "assessments": "trace_id", "trace_info": "request_id",
    "trace_tags": "request_id", "trace_request_metadata": "request_id",
}
BOUNDARY_SOURCE = {"run_uuid": ("runs", "run_uuid"), "trace_id": ("trace_info", "request_id"),
                   "request_id": ("trace_info", "request_id")}
ROWS_PER_PART = 100_000
MIN_ROWS_FOR_WORKERS = 200_000  # below this, starting worker processes costs more than it saves


@dataclass(frozen=True)
class Part:
    id: str                     # stable across runs: "<target>" or "<target>#<i>/<n>"
    target: str                 # collection or table written
    table: str                  # source table read
    part: tuple | None = None   # (column, lo, hi): lo <= column < hi, open ends None
    rows: int = 0               # estimate, for progress
    level: int = 0              # SQL targets: foreign-key depth (parents first)


@dataclass
class PartResult:
    part_id: str
    target: str
    table: str
    rows: int = 0
    written: int = 0
    batches: int = 0
    seconds: float = 0.0
    account: str = ""                                # whose row count the written documents add to
    accounts: dict = field(default_factory=dict)     # child table -> (rows, seconds, keys)
    checksum: tuple | None = None                    # (columns, count, total) for SQL targets
    notes: dict = field(default_factory=dict)


def range_condition(part: tuple | None, quote, param: str) -> tuple[str, list]:
    """SQL for one key range (column, lo, hi): lo <= column < hi, either end open (None)."""
    if not part:
        return "", []
    column, lo, hi = part
    conds, params = [], []
    if lo is not None:
        conds.append(f"{quote(column)} >= {param}")
        params.append(lo)
    if hi is not None:
        conds.append(f"{quote(column)} < {param}")
        params.append(hi)
    return " AND ".join(conds), params


def make_parts(source, target: str, table: str, rows: int, workers: int, *, level: int = 0,
               splittable: bool = True) -> list[Part]:
    """One part, or key ranges of about ROWS_PER_PART rows (more parts than workers, so the work
    spreads evenly and a resume redoes little)."""
    column = RANGE_KEYS.get(table)
    n = min(max(workers * 4, 4), math.ceil(rows / ROWS_PER_PART)) if splittable and column else 1
    if n < 2 or column not in source.schema.tables[table].column_names:
        return [Part(target, target, table, None, rows, level)]
    btable, bcol = BOUNDARY_SOURCE[column]
    cuts = source.boundaries(btable, bcol, n)
    if not cuts:
        return [Part(target, target, table, None, rows, level)]
    edges = [None] + cuts + [None]
    k = len(edges) - 1
    return [Part(f"{target}#{i + 1}/{k}", target, table, (column, edges[i], edges[i + 1]),
                 rows // k, level) for i in range(k)]


# ----------------------------------------------------------------------------- running parts
_RUNNER = None
_PROGRESS = None


def _init_worker(factory, args, progress):
    global _RUNNER, _PROGRESS
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C
    _PROGRESS = progress
    _RUNNER = factory(*args)


def _run_part(part: Part) -> PartResult:
    def report(_table: str, n: int) -> None:
        if _PROGRESS is not None:
            _PROGRESS.put((part.id, n))
    return _RUNNER.run(part, report)


def run_parts(parts: list[Part], factory, args: tuple, workers: int, on_done, on_progress,
              inline_runner=None) -> None:
    """Run `parts` (already filtered to the ones not done), calling on_done(part, result) in this
    process as each finishes, and on_progress(part_id, rows) as a part goes (from the workers
    through a queue; a report may arrive after its part's on_done, which counts it exactly).
    With one worker (or an inline runner) everything runs here."""
    if not parts:
        return
    if workers <= 1 or len(parts) == 1 or sum(p.rows for p in parts) < MIN_ROWS_FOR_WORKERS:
        runner = inline_runner or factory(*args)
        for p in parts:
            on_done(p, runner.run(p, lambda _table, n, _id=p.id: on_progress(_id, n)))
        return
    ctx = mp.get_context("spawn")
    progress = ctx.Queue()
    stop = threading.Event()

    def drain():
        while not stop.is_set() or not progress.empty():
            try:
                part_id, n = progress.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            on_progress(part_id, n)
    t = threading.Thread(target=drain, daemon=True)
    t.start()
    by_id = {p.id: p for p in parts}
    pool = ctx.Pool(min(workers, len(parts)), initializer=_init_worker, initargs=(factory, args, progress))
    try:
        for result in pool.imap_unordered(_run_part, parts):
            on_done(by_id[result.part_id], result)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
        stop.set()
        t.join(timeout=5)


def levels(parts: list[Part]) -> list[list[Part]]:
    """Parts grouped by foreign-key level, parents first; in each level the biggest parts first,
    so that the workers do not end the level waiting on one big part started last."""
    out: dict[int, list[Part]] = {}
    for p in parts:
        out.setdefault(p.level, []).append(p)
    return [sorted(out[k], key=lambda p: -(p.rows or 0)) for k in sorted(out)]


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0
