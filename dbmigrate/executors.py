"""Where parts run: worker processes on this machine (`local`, the default: engine.run_parts) or
the workers of a Dask distributed cluster (`--executor dask`, optional extra `dbmigrate[dask]`).

Either way the coordinating process (the one running orchestrator.run) keeps what must stay in
one place: the checkpoint catalog, and the source's REPEATABLE READ transaction whose exported
snapshot every worker imports by id (so it stays open until the last part is done). A part is
checkpointed only after its result came back to the coordinator, i.e. after the target
acknowledged its last write.

On Dask each part is one task. A worker keeps a few idle PartRunners (its source connection in
the imported snapshot and its target end) for the parts that follow, closed at the end of the run
(or after IDLE_SECONDS unused, should the coordinator vanish). A running part reports its rows as
Dask events (`Worker.log_event`, at most one per PROGRESS_SECONDS per part), which the coordinator
subscribes to; between batches it checks that its task is still wanted, so a part whose run was
cancelled (an error elsewhere, Ctrl-C, or the coordinator killed: the scheduler then releases its
tasks) stops writing at its next batch. A part is never run twice in one run: the first attempt
records its worker in the scheduler's metadata, and a second attempt (Dask reschedules the tasks
of a lost worker) refuses, so the run stops naming the part and `--resume` copies it again from
nothing. Only a PostgreSQL source can be read this way (its snapshot can be shared), and only a
server target (PostgreSQL, MySQL/MariaDB, MongoDB) can be written by remote workers.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from collections import Counter

from dbmigrate.errors import ConfigError, ConnectionFailed, MigrationError, TransientError

log = logging.getLogger("dbmigrate")

COORDINATOR = "coordinator"  # parts_by_worker: the empty tables, done by the coordinating process
PROGRESS_SECONDS = 0.25   # a running part's row count reaches the coordinator this often
IDLE_SECONDS = 120        # a worker closes an idle runner (its connections) after this long
DASK_SOURCES = ("postgresql",)
DASK_TARGETS = ("postgresql", "mysql", "mongodb")


class WorkerLost(TransientError):
    """A Dask worker died (or left the cluster) while it ran a part."""


def check(cfg, src_uri, dst_uri) -> None:
    """Refuse, before anything is touched, what an executor cannot do (exit 2)."""
    if cfg.executor == "local":
        if cfg.scheduler:
            raise ConfigError("--scheduler applies to --executor dask", hint="add --executor dask")
        return
    if src_uri.kind not in DASK_SOURCES:
        raise ConfigError(
            f"--executor dask needs a PostgreSQL source; {src_uri.masked} is {src_uri.kind}, whose read "
            "snapshot cannot be shared with other machines' connections",
            hint="leave out --executor dask: this source is read by one process on this machine")
    if dst_uri.kind not in DASK_TARGETS:
        raise ConfigError(
            f"--executor dask needs a server target (PostgreSQL, MySQL/MariaDB or MongoDB); {dst_uri.masked} "
            f"is a {'SQLite file' if dst_uri.kind == 'sqlite' else 'Parquet directory'} on this machine, "
            "which the cluster's workers cannot write",
            hint="leave out --executor dask")
    if cfg.merge and dst_uri.kind == "mongodb":
        raise ConfigError("--merge into MongoDB runs in this process (each document is compared with the target's "
                          "as it goes); it does not run on a Dask cluster", hint="leave out --executor dask")


def open_executor(cfg):
    return DaskExecutor(cfg) if cfg.executor == "dask" else LocalExecutor()


class LocalExecutor:
    """engine.run_parts: `spawn` processes on this machine (inline below MIN_ROWS_FOR_WORKERS)."""

    name = "local"
    default_workers = None  # Config.effective_workers: one per CPU

    def shares_snapshot(self, workers: int) -> bool:
        return workers > 1

    def run(self, parts, factory, args, workers, on_done, on_progress, inline_runner=None) -> None:
        from dbmigrate.engine import run_parts
        run_parts(parts, factory, args, workers, on_done, on_progress, inline_runner=inline_runner)

    def describe(self, report) -> None:
        report.settings["executor"] = "local"

    def close(self) -> None:
        pass


class DaskExecutor:
    """Parts as tasks on a Dask cluster: `cfg.scheduler` (tcp://HOST:PORT), or a LocalCluster
    started for this run (one single-threaded worker process per --workers, default one per CPU)."""

    name = "dask"

    def __init__(self, cfg):
        try:
            import distributed
        except ImportError:
            raise ConfigError("--executor dask needs Dask distributed, which is not installed",
                              hint="pip install 'dbmigrate[dask]' (here and on every worker)") from None
        self.token = uuid.uuid4().hex[:12]
        self.cluster = None
        self.placed: Counter = Counter()
        self.topic = f"dbmigrate-progress-{self.token}"
        self.on_progress = None
        timeout = cfg.connect_timeout
        if not log.isEnabledFor(logging.DEBUG):  # Dask's own INFO lines (workers joining, ...) are noise here
            logging.getLogger("distributed").setLevel(logging.WARNING)
        if cfg.scheduler:
            self.address = cfg.scheduler
            try:
                self.client = distributed.Client(cfg.scheduler, timeout=timeout, set_as_default=False)
            except ValueError as exc:  # not an address Dask can parse
                raise ConfigError(f"--scheduler {cfg.scheduler!r} is not a Dask scheduler address: {exc}",
                                  hint="give it as tcp://HOST:PORT") from None
            except (OSError, TimeoutError) as exc:
                raise ConnectionFailed(f"Cannot connect to the Dask scheduler {cfg.scheduler} within {timeout} s: "
                                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        else:
            import os
            n = cfg.workers or os.cpu_count() or 1
            import warnings
            import dask
            # Dask's statistical profiler walks every thread's stack each 10 ms: a tax on the
            # pure-Python conversion the workers do (their nanny hands this setting to them)
            with warnings.catch_warnings(), dask.config.set({"distributed.worker.profile.enabled": False}):
                warnings.simplefilter("ignore", UserWarning)  # "port 8787 in use": its HTTP endpoint moves
                self.cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                        dashboard_address=None, silence_logs=logging.WARNING)
            self.address = self.cluster.scheduler_address
            self.client = distributed.Client(self.cluster, set_as_default=False)
        try:
            self._check_workers(timeout)
        except BaseException:
            self.close()
            raise
        self.client.subscribe_topic(self.topic, self._event)
        log.info("Dask: %s (%s), %d workers, %d threads", self.address,
                 "LocalCluster started for this run" if self.cluster else "scheduler", len(self.workers),
                 self.default_workers)

    def _check_workers(self, timeout: int) -> None:
        from dbmigrate import __version__
        try:
            self.client.wait_for_workers(1, timeout=max(timeout, 1))
        except (TimeoutError, OSError):
            raise ConnectionFailed(f"The Dask scheduler {self.address} has no workers (none joined within "
                                   f"{timeout} s)") from None
        try:
            found = self.client.run(_worker_info)
        except ImportError as exc:
            raise ConfigError(f"The Dask workers of {self.address} cannot import dbmigrate ({exc})",
                              hint="install the same dbmigrate on every worker: pip install 'dbmigrate[dask]'") from None
        other = {addr: v for addr, (v, _threads) in found.items() if v != __version__}
        if other:
            raise ConfigError(f"Dask workers run another dbmigrate than this one ({__version__}): "
                              + ", ".join(f"{a} has {v}" for a, v in sorted(other.items())),
                              hint="install the same version everywhere")
        self.workers = {addr: threads for addr, (_v, threads) in found.items()}

    @property
    def default_workers(self) -> int:
        """Parts in flight when --workers is not given: one per worker thread of the cluster."""
        return sum(self.workers.values()) or 1

    def shares_snapshot(self, workers: int) -> bool:
        return True  # every part is read by a worker's own connection

    def _event(self, event) -> None:
        _when, (part_id, n) = event
        if self.on_progress is not None:
            self.on_progress(part_id, n)

    def run(self, parts, factory, args, workers, on_done, on_progress, inline_runner=None) -> None:
        """Keep at most `workers` parts running on the cluster (the target's own limit, e.g. one
        writer for SecantusDB, is already in `workers`); on_done(part, result) here as each ends."""
        from distributed import as_completed
        if not parts:
            return
        self.on_progress = on_progress
        # Empty tables (most of MLflow's 64 in a tracking-only database) are done here: a task
        # each would cost a scheduler round trip for nothing to copy.
        here = [p for p in parts if not p.rows] if inline_runner is not None else []
        todo = [p for p in parts if p.rows or inline_runner is None]
        by_key, running = {}, set()

        def submit():
            part = todo.pop(0)
            f = self.client.submit(_run_part, part, factory, args, self.token, self.topic,
                                   key=f"dbmigrate-{self.token}-{part.id}", pure=False, retries=0)
            by_key[f.key] = part
            running.add(f)
            return f
        try:
            futures = as_completed([submit() for _ in range(min(max(workers, 1), len(todo)))],
                                   loop=self.client.loop)
            for part in here:  # while the first parts run on the cluster
                on_done(part, inline_runner.run(part, lambda _table, n, _id=part.id: on_progress(_id, n)))
                self.placed[COORDINATOR] += 1
            for f in futures:
                running.discard(f)
                part = by_key.pop(f.key)
                if f.status == "error":
                    raise part_error(part, f.exception())
                if f.status != "finished":  # "cancelled" / "lost": the scheduler dropped it
                    raise WorkerLost(f"part {part.id}: its Dask task was {f.status} by the scheduler",
                                     hint="rerun with --resume: parts already checkpointed are kept")
                res, where = f.result()
                self.placed[where] += 1
                on_done(part, res)
                if todo:
                    futures.add(submit())
        finally:
            if running:  # an error or Ctrl-C: the parts still running stop at their next batch
                self.client.cancel(list(running))
            self.on_progress = None

    def describe(self, report) -> None:
        report.settings["executor"] = "dask"
        report.settings["scheduler"] = self.address if self.cluster is None else "LocalCluster"
        on_cluster = {a: n for a, n in self.placed.items() if a != COORDINATOR}
        ran = sum(on_cluster.values())
        where = ", ".join(f"{a} {n}" for a, n in sorted(on_cluster.items()))
        report.notes.append(f"executor dask ({'LocalCluster started for this run at ' if self.cluster else 'scheduler '}"
                            f"{self.address}, {len(self.workers)} workers): {ran} parts ran on "
                            f"{len(on_cluster)} worker{'s' if len(on_cluster) != 1 else ''}"
                            + (f" ({where})" if where else "")
                            + (f"; {self.placed[COORDINATOR]} empty tables were done by this process"
                               if self.placed[COORDINATOR] else ""))
        report.settings["parts_by_worker"] = dict(sorted(self.placed.items()))

    def close(self) -> None:
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            try:
                client.unsubscribe_topic(self.topic)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            try:
                client.set_metadata(["dbmigrate", self.token], {})  # which worker started each part
                client.run(_close_runners, self.token)  # the workers' connections of this run
            except Exception:  # noqa: BLE001 - a worker gone: its runners went with it
                pass
            client.close()
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def part_error(part, exc: BaseException) -> BaseException:
    """The error of a part's task, naming the part and the worker; a MigrationError keeps its
    class (and so its exit code)."""
    from distributed import KilledWorker
    where = getattr(exc, "dbmigrate_worker", None)
    prefix = f"part {part.id}" + (f" (Dask worker {where})" if where else "")
    if isinstance(exc, WorkerLost):  # PartRetried: it names the part and the worker that was lost
        return exc
    if isinstance(exc, KilledWorker):
        return WorkerLost(f"{prefix}: the Dask worker running it was lost ({exc})",
                          hint="rerun with --resume: parts already checkpointed are kept, this one is copied again")
    if isinstance(exc, MigrationError):
        new = copy.copy(exc)
        new.message = f"{prefix}: {exc.message}"
        new.args = (new.describe(),)
        return new
    return MigrationError(f"{prefix} failed: {type(exc).__name__}: {exc}",
                          hint="rerun with --resume once the cause is fixed")


# ----------------------------------------------------------------------------- on the workers
_IDLE: dict[str, list] = {}  # run token -> [(runner, last used)]
_LOCK = threading.Lock()
_REAPER = None


def _worker_info(dask_worker):
    from dbmigrate import __version__
    return __version__, dask_worker.state.nthreads


def _take_runner(token, factory, args):
    with _LOCK:
        idle = _IDLE.get(token)
        if idle:
            return idle.pop()[0]
    return factory(*args)


def _give_back(token, runner) -> None:
    global _REAPER
    with _LOCK:
        _IDLE.setdefault(token, []).append((runner, time.monotonic()))
        if _REAPER is None:
            _REAPER = threading.Thread(target=_reap, name="dbmigrate-reaper", daemon=True)
            _REAPER.start()


def _close(runner) -> None:
    for thing in (runner.source, runner.end):
        try:
            thing.close()
        except Exception:  # noqa: BLE001 - closing anyway
            pass


def _close_runners(token) -> int:
    with _LOCK:
        idle = _IDLE.pop(token, [])
    for runner, _ in idle:
        _close(runner)
    return len(idle)


def _reap() -> None:
    while True:
        time.sleep(IDLE_SECONDS / 4)
        now, old = time.monotonic(), []
        with _LOCK:
            for token in list(_IDLE):
                keep = [(r, t) for r, t in _IDLE[token] if now - t < IDLE_SECONDS]
                old += [r for r, t in _IDLE[token] if now - t >= IDLE_SECONDS]
                if keep:
                    _IDLE[token] = keep
                else:
                    del _IDLE[token]
        for runner in old:
            _close(runner)


class PartCancelled(Exception):
    """The coordinator no longer wants this part (it stopped, or it is gone)."""


class PartRetried(WorkerLost):
    """A second attempt at a part in the same run: the worker of the first was lost mid-part."""


def _run_part(part, factory, args, token, topic):
    from distributed import get_client, get_worker
    worker = get_worker()
    key = worker.get_current_task()
    try:
        client = get_client()
        first = client.get_metadata(["dbmigrate", token, part.id], None)
        if first is not None:
            raise PartRetried(f"part {part.id} was started on Dask worker {first}, which was lost while it "
                              "ran; its writes are incomplete, so the run stops here rather than copy it twice",
                              hint="rerun with --resume: the part is cleared and copied again")
        client.set_metadata(["dbmigrate", token, part.id], worker.address)
        runner = _take_runner(token, factory, args)
        sent = [0.0, 0]  # (when the last report went, rows since): the first batch is reported at once

        def progress(_table, n):
            ts = worker.state.tasks.get(key)
            if ts is None or ts.state not in ("executing", "long-running"):
                raise PartCancelled(f"part {part.id}: cancelled by the coordinator")
            sent[1] += n
            now = time.monotonic()
            if now - sent[0] >= PROGRESS_SECONDS:
                worker.log_event(topic, [part.id, sent[1]])
                sent[0], sent[1] = now, 0
        try:
            res = runner.run(part, progress)
        except BaseException:
            _close(runner)  # its connections may be mid-statement: never reused
            raise
        _give_back(token, runner)
        return res, worker.address
    except BaseException as exc:
        exc.dbmigrate_worker = worker.address
        raise
