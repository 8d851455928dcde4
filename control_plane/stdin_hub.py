"""Wakes the worker stream of an interactive job when stdin is stored for it.

AttachJob on this process notifies the hub directly; stdin stored through another control
plane arrives, on PostgreSQL, as the store's notification (the backend's listener). A
stream also looks at the store every STDIN_POLL_S on its own: SQLite cannot notify another
process, and a notification lost while the listener reconnects must not hold input back.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

STDIN_POLL_S = 0.5


class StdinHub:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[asyncio.Event]:
        """Clear the event before each read of the store, so no piece slips in between."""
        woken = asyncio.Event()
        self._waiters[job_id].add(woken)
        try:
            yield woken
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(woken)
                if not waiters:
                    del self._waiters[job_id]

    def notify(self, job_id: str | None) -> None:
        """None: notifications may have been missed; wake every stream."""
        if job_id is None:
            for waiters in self._waiters.values():
                for woken in waiters:
                    woken.set()
            return
        for woken in self._waiters.get(job_id, ()):
            woken.set()
