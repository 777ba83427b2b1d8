"""Progress bars (tqdm) per table, with rows/s; silent when stderr is not a terminal or when
--no-progress is given. Log lines carry the numbered STEP and the final figures either way."""

from __future__ import annotations

import sys
from contextlib import contextmanager


class _Null:
    def update(self, n=1):
        pass

    def set_postfix_str(self, s):
        pass

    def close(self):
        pass


@contextmanager
def bar(label: str, total: int | None, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        b = _Null()
    else:
        from tqdm import tqdm
        b = tqdm(total=total, desc=label, unit=" rows", unit_scale=True, dynamic_ncols=True,
                 leave=True, file=sys.stderr, smoothing=0.1)
    try:
        yield b
    finally:
        b.close()


class Bars:
    """One bar per table, opened on its first progress and closed by `close()`; parts of several
    tables may be in flight at once (parallel workers)."""

    def __init__(self, totals: dict[str, int], enabled: bool):
        self.totals = totals
        self.enabled = enabled and sys.stderr.isatty()
        self.bars: dict = {}

    def update(self, table: str, n: int) -> None:
        if not self.enabled:
            return
        b = self.bars.get(table)
        if b is None:
            from tqdm import tqdm
            b = self.bars[table] = tqdm(total=self.totals.get(table), desc=table, unit=" rows",
                                        unit_scale=True, dynamic_ncols=True, leave=True,
                                        file=sys.stderr, position=len(self.bars), smoothing=0.1)
        b.update(n)

    def close(self) -> None:
        for b in self.bars.values():
            b.close()
        self.bars.clear()
