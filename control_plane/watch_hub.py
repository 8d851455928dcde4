"""Wakes WatchJob streams when their job gets a new event.

In-process only; a watcher also re-reads the store every second, so events written by
another control-plane process still reach it, just a little later.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class WatchHub:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[asyncio.Event]:
        """Subscribe before reading the store, so no event can slip in between."""
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    def notify(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    @property
    def watcher_count(self) -> int:
        return sum(len(w) for w in self._waiters.values())
