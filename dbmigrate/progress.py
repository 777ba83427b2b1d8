"""Progress of a run: a model the pipeline tells what happens, and a view that shows it.

The pipeline only calls `Progress` (start_copy, advance, part_done, end_copy; start_step,
step, end_step; close). The model keeps the counts right whatever the display: rows of finished
parts are counted exactly when the part ends (late or approximate reports of a finished part are
ignored), parts an interrupted run copied count as done from the start, a table never shows more
rows than it has. The view is tqdm bars on a terminal (`TerminalView`: one overall bar, a bar per
table in flight, removed when the table completes, none for empty tables, a counter for index
builds and verification) or nothing (`View`) when stderr is not a terminal or --no-progress.
Log lines go on above the bars (never through them), with the CLI's own handler and filters.
"""

from __future__ import annotations

import logging
import os
import sys
import threading


class View:
    """Shows nothing (the null view); the interface a terminal view implements."""

    def overall(self, total: int, done: int, postfix: str) -> None: ...
    def overall_update(self, done: int, postfix: str) -> None: ...
    def overall_close(self) -> None: ...
    def table(self, key: str, total: int, done: int) -> None: ...
    def table_close(self, key: str) -> None: ...
    def step(self, name: str, total: int | None, done: int, unit: str, postfix: str) -> None: ...
    def step_close(self) -> None: ...
    def close(self) -> None: ...


class Progress:
    """The counts of a run, independent of any display (unit-tested without a terminal)."""

    def __init__(self, view: View | None = None):
        self.view = view or View()
        self.totals: dict[str, int] = {}        # bar key (table or collection) -> rows it has
        self.part_key: dict[str, str] = {}      # part id -> bar key
        self.pending: dict[str, set] = {}       # bar key -> ids of parts not finished
        self.finished: dict[str, int] = {}      # bar key -> rows of its finished parts
        self.inflight: dict[str, int] = {}      # part id -> rows reported so far by a running part
        self.resumed = 0                        # rows an earlier (interrupted) run copied
        self.this_run = 0                       # rows of parts finished in this run
        self.tables: set[str] = set()           # keys with a table bar open
        self.step_name: str | None = None
        self.step_total: int | None = None
        self.step_done = 0
        self.step_current: str | None = None
        self.lock = threading.Lock()            # advance() may come from a queue-draining thread

    # ------------------------------------------------------------------ the copy
    def start_copy(self, parts, totals: dict[str, int], done: dict[str, int] | None = None) -> None:
        """`parts`: every part of the migration (id, target); `totals`: rows per target;
        `done`: part id -> rows, the parts an earlier run already copied (--resume)."""
        done = done or {}
        with self.lock:
            for p in parts:
                key = p.target
                self.part_key[p.id] = key
                self.totals.setdefault(key, int(totals.get(key) or 0))
                self.finished.setdefault(key, 0)
                self.pending.setdefault(key, set())
                if p.id in done:
                    self.finished[key] += int(done[p.id] or 0)
                    self.resumed += int(done[p.id] or 0)
                else:
                    self.pending[key].add(p.id)
            self.view.overall(self.total, self.copied, self._postfix())

    def advance(self, part_id: str, n: int) -> None:
        """A running part read/wrote `n` more rows (approximate: the part's end sets it exactly)."""
        if n <= 0:
            return
        with self.lock:
            key = self.part_key.get(part_id)
            if key is None or part_id not in self.pending.get(key, ()):
                return  # unknown, or already finished (a late report): counted by part_done
            self.inflight[part_id] = self.inflight.get(part_id, 0) + n
            if key not in self.tables and self.rows(key) < self.totals[key]:
                self.tables.add(key)
                self.view.table(key, self.totals[key], self.rows(key))
            elif key in self.tables:
                self.view.table(key, self.totals[key], self.rows(key))
            self.view.overall_update(self.copied, self._postfix())

    def part_done(self, part_id: str, rows: int) -> None:
        """A part finished with exactly `rows` rows (its writes acknowledged)."""
        with self.lock:
            key = self.part_key.get(part_id)
            if key is None or part_id not in self.pending.get(key, ()):
                return
            self.pending[key].discard(part_id)
            self.inflight.pop(part_id, None)
            self.finished[key] += rows
            self.this_run += rows
            if key in self.tables:
                if self.pending[key]:
                    self.view.table(key, self.totals[key], self.rows(key))
                else:
                    self.tables.discard(key)
                    self.view.table_close(key)
            self.view.overall_update(self.copied, self._postfix())

    def end_copy(self) -> None:
        with self.lock:
            for key in sorted(self.tables):
                self.view.table_close(key)
            self.tables.clear()
            self.view.overall_update(self.copied, self._postfix())
            self.view.overall_close()

    def rows(self, key: str) -> int:
        """Rows of one table counted so far, never more than it has."""
        n = self.finished.get(key, 0) + sum(v for p, v in self.inflight.items() if self.part_key[p] == key)
        total = self.totals.get(key, 0)
        return min(n, total) if self.pending.get(key) else max(n, 0)

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def copied(self) -> int:
        return sum(self.rows(k) for k in self.totals)

    @property
    def tables_done(self) -> int:
        return sum(1 for k in self.totals if not self.pending.get(k))

    def _postfix(self) -> str:
        return f"tables {self.tables_done}/{len(self.totals)}"

    # ------------------------------------------------------------------ counted steps
    def start_step(self, name: str, total: int | None, unit: str = "") -> None:
        """A step counted in units (indexes built, checks verified) rather than rows."""
        with self.lock:
            self.step_name, self.step_total, self.step_done, self.step_current = name, total, 0, None
            self.view.step(name, total, 0, unit, "")

    def step(self, n: int = 1, what: str = "") -> None:
        """`n` more units of the step done; `what` names the one now under way (shown)."""
        with self.lock:
            if self.step_name is None:
                return
            self.step_done += n
            if self.step_total is not None:
                self.step_done = min(self.step_done, self.step_total)
            self.view.step(self.step_name, self.step_total, self.step_done, "", what)

    def next(self, what: str) -> None:
        """The unit before (if any) is done; `what` is the one now under way."""
        with self.lock:
            if self.step_name is None:
                return
            if self.step_current is not None:
                self.step_done += 1
            if self.step_total is not None:
                self.step_done = min(self.step_done, self.step_total)
            self.step_current = what
            self.view.step(self.step_name, self.step_total, self.step_done, "", what)

    def end_step(self) -> None:
        with self.lock:
            if self.step_current is not None:
                self.step_done += 1
                self.step_current = None
            if self.step_name is not None:
                if self.step_total is not None:
                    self.step_done = min(self.step_done, self.step_total)
                self.view.step(self.step_name, self.step_total, self.step_done, "", "")
                self.view.step_close()
            self.step_name = None

    def close(self) -> None:
        """The end of the run, or of its interruption: bars cleared, counts as they are."""
        with self.lock:
            self.tables.clear()
            self.step_name = None
            self.view.close()


class TerminalView(View):
    """tqdm bars on stderr: the overall copy bar at the top, one bar per table in flight below it
    (removed when the table completes), a counter bar for a counted step. Bars are redrawn once a
    second so that elapsed time moves during long single operations (an index build)."""

    def __init__(self, stream=None):
        from tqdm import tqdm
        self.tqdm = tqdm
        self.stream = stream or sys.stderr
        self.bars: dict[str, object] = {}
        self.top = None
        self.step_bar = None
        self.stop = threading.Event()
        self.handlers = _redirect_logging(self.stream)
        self.ticker = threading.Thread(target=self._tick, daemon=True, name="dbmigrate-progress")
        self.ticker.start()

    def _bar(self, desc, total, initial, unit, leave, scale=True, eta=True):
        # A few columns are left free at the end of each bar for the "^C" a terminal echoes
        # after it (cleared when the bar closes), so that it does not wrap onto the next line.
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            width = 80
        # A step's units differ in cost (an index on a million documents, then dozens on empty
        # collections): its bar shows the count and the elapsed time, not a misleading ETA.
        fmt = None if eta else "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
        return self.tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=scale,
                         ncols=max(width - 4, 40), leave=leave, file=self.stream, smoothing=0.1,
                         mininterval=0.2, bar_format=fmt)

    def _set(self, bar, n):
        if n != bar.n:
            bar.update(n - bar.n)

    def overall(self, total, done, postfix):
        if self.top is None:
            self.top = self._bar("copy", total, done, " rows", True)
        self.top.set_postfix_str(postfix, refresh=False)
        self._set(self.top, done)
        self.top.refresh()

    def overall_update(self, done, postfix):
        if self.top is not None:
            self.top.set_postfix_str(postfix, refresh=False)
            self._set(self.top, done)

    def overall_close(self):
        self._close_top()

    def table(self, key, total, done):
        b = self.bars.get(key)
        if b is None:  # drawn at once with what is already counted (resumed parts included)
            self.bars[key] = self._bar(f"  {key}", total, done, " rows", False)
        else:
            self._set(b, done)

    def table_close(self, key):
        b = self.bars.pop(key, None)
        if b is not None:
            b.close()

    def step(self, name, total, done, unit, postfix):
        if self.step_bar is None:
            self._close_top()
            self.step_bar = self._bar(name, total, 0, f" {unit}" if unit else " steps", True, scale=False,
                                      eta=False)
        self.step_bar.set_postfix_str(postfix, refresh=False)
        self._set(self.step_bar, done)
        self.step_bar.refresh()

    def step_close(self):
        if self.step_bar is not None:
            self._clear_line()
            self.step_bar.close()
            self.step_bar = None

    def _clear_line(self):
        """Clear the line the cursor is on (the top bar's) before a bar is left there for good:
        Ctrl-C makes the terminal echo "^C" after the bar, which a redraw would not cover."""
        with self.tqdm.get_lock():
            self.stream.write("\r\x1b[K")

    def _close_top(self):
        for key in list(self.bars):
            self.table_close(key)
        if self.top is not None:
            self._clear_line()
            self.top.close()
            self.top = None

    def close(self):
        self.stop.set()
        self.ticker.join(timeout=2)
        for key in list(self.bars):
            self.table_close(key)
        self.step_close()
        self._close_top()
        for h, stream in self.handlers:
            h.setStream(stream)

    def _tick(self):
        while not self.stop.wait(1.0):
            try:
                for b in [self.top, self.step_bar, *self.bars.values()]:
                    if b is not None and not b.disable:
                        b.refresh()
            except Exception:  # noqa: BLE001 - a bar closed meanwhile; the next tick redraws
                pass


class _AboveBars:
    """A stream for logging handlers: each line is written above the bars (tqdm clears them,
    the line is written, the bars are drawn again), so log lines never mix with a bar."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, s):
        from tqdm import tqdm
        with tqdm.external_write_mode(file=self.stream):
            self.stream.write(s)
            self.stream.flush()

    def flush(self):
        self.stream.flush()


def _redirect_logging(stream) -> list:
    """Point the console handlers writing to `stream` at _AboveBars (keeping their filters and
    formatters, i.e. the CLI's password masking); returns what to restore."""
    out = []
    for h in logging.getLogger().handlers + logging.getLogger("dbmigrate").handlers:
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is stream:
            out.append((h, h.setStream(_AboveBars(stream))))
    return out


def open_progress(enabled: bool, stream=None) -> Progress:
    """Bars when asked for and stderr is a terminal; the same counts without a display otherwise."""
    stream = stream or sys.stderr
    if enabled and stream.isatty():
        return Progress(TerminalView(stream))
    return Progress()
