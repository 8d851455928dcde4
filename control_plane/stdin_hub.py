"""Wakes the worker stream of an interactive job when stdin is stored for it.

AttachJob on this process notifies the hub directly, handing over the piece it stored: a
stream that has sent everything before it sends it on without reading the store. Stdin
stored through another control
plane arrives, on PostgreSQL, as the store's notification (the backend's listener). A
stream also looks at the store every STDIN_POLL_S on its own: SQLite cannot notify another
process, and a notification lost while the listener reconnects must not hold input back.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from control_plane.store.job_stdin import StdinPiece

STDIN_POLL_S = 0.5
MAX_HELD_PIECES = 256  # past this, a stream that has not sent them reads the store


class StdinSubscription:
    def __init__(self) -> None:
        self.woken = asyncio.Event()
        self._held: dict[int, StdinPiece] = {}  # seq -> a piece stored in this process

    def offer(self, piece: StdinPiece | None) -> None:
        if piece is not None:
            if len(self._held) >= MAX_HELD_PIECES:
                self._held.clear()
            self._held[piece.seq] = piece
        self.woken.set()

    def take_following(self, after_seq: int) -> list[StdinPiece]:
        """The held pieces that follow after_seq without a gap; empty when the store has
        to be read."""
        following = []
        seq = after_seq + 1
        while seq in self._held:
            following.append(self._held.pop(seq))
            seq += 1
        for stale in [held for held in self._held if held < seq]:
            del self._held[stale]
        return following


class StdinHub:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[StdinSubscription]] = defaultdict(set)

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[StdinSubscription]:
        """Clear `woken` before each read of the store, so no piece slips in between."""
        subscription = StdinSubscription()
        self._waiters[job_id].add(subscription)
        try:
            yield subscription
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(subscription)
                if not waiters:
                    del self._waiters[job_id]

    def notify(self, job_id: str | None, piece: StdinPiece | None = None) -> None:
        """piece: what this process just stored, if the caller has it. job_id None:
        notifications may have been missed; wake every stream."""
        if job_id is None:
            for waiters in self._waiters.values():
                for subscription in waiters:
                    subscription.offer(None)
            return
        for subscription in self._waiters.get(job_id, ()):
            subscription.offer(piece)
