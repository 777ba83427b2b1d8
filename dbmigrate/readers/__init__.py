"""Readers: one per kind of source (see dbmigrate.model.Reader)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def batched(rows: Iterable[tuple], n: int) -> Iterator[list[tuple]]:
    """`rows` in lists of at most `n` (the last may be shorter; none empty)."""
    batch = []
    for r in rows:
        batch.append(r)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch
