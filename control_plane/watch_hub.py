"""Wakes WatchJob streams when their job gets a new event.

Writers in this process notify the hub directly, handing over the events they have just
stored: a watcher that has read everything before them sends them on without reading the
store again (a job's claim, output and result would otherwise each cost every watcher a
trip to the store). Anything else (a gap, a burst too big to hold) is read from the store.
Events written by another control-plane process reach it, on PostgreSQL, as the store's
notification of each stored event (event_stored, from the backend's listen_job_events):
at once, waking only the watchers behind that event. On SQLite, and as a backstop on
PostgreSQL, through one poll of the store every second for all the jobs being watched here
(one transaction, however many watchers), which wakes only the watchers that are behind: a
thousand watchers of queued jobs cost the store one read a second, not a thousand.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager

from sluice.observability import get_logger
from sluice.v1 import job_pb2 as pb

log = get_logger(__name__)
# Events written by another control-plane process reach a watcher within about this long.
POLL_S = 1.0
# Events held for one watcher that has not sent them yet; past this it reads the store.
MAX_HELD_EVENTS = 256

LastSeqs = Callable[[list[str]], Awaitable[dict[str, int]]]


class Subscription:
    def __init__(self, seen_seq: int) -> None:
        self.woken = asyncio.Event()
        # The watcher has read every event up to here; the poll wakes it only past this.
        self.seen_seq = seen_seq
        self._held: dict[int, pb.JobEvent] = {}  # seq -> event stored in this process

    def offer(self, events: Sequence[pb.JobEvent]) -> None:
        if len(self._held) + len(events) > MAX_HELD_EVENTS:
            self._held.clear()  # a slow watcher: it reads them from the store instead
        else:
            for event in events:
                self._held[event.seq] = event
        self.woken.set()

    def holds(self, seq: int) -> bool:
        return seq in self._held

    def take_following(self, after_seq: int) -> list[pb.JobEvent]:
        """The held events that follow after_seq without a gap, in order; empty when the
        store has to be read (nothing held, or an event this process did not see)."""
        following = []
        seq = after_seq + 1
        while seq in self._held:
            following.append(self._held.pop(seq))
            seq += 1
        for stale in [held for held in self._held if held < seq]:
            del self._held[stale]
        return following


class WatchHub:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[Subscription]] = defaultdict(set)

    @contextmanager
    def subscribe(self, job_id: str, seen_seq: int = 0) -> Iterator[Subscription]:
        """Subscribe before reading the store, and clear `woken` before each read, so no
        event can slip in between."""
        subscription = Subscription(seen_seq)
        self._waiters[job_id].add(subscription)
        try:
            yield subscription
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(subscription)
                if not waiters:
                    del self._waiters[job_id]

    def notify(self, job_id: str, events: Sequence[pb.JobEvent] = ()) -> None:
        """`events`: what was just stored for the job, if the caller has them."""
        for subscription in self._waiters.get(job_id, ()):
            if events:
                subscription.offer(events)
            else:
                subscription.woken.set()

    def event_stored(self, job_id: str | None, seq: int) -> None:
        """Any process stored event `seq` of the job (None: events may have been missed,
        wake everyone). Watchers that have it already, or hold it, are left asleep."""
        if job_id is None:
            for waiters in self._waiters.values():
                for subscription in waiters:
                    subscription.woken.set()
            return
        for subscription in self._waiters.get(job_id, ()):
            if seq > subscription.seen_seq and not subscription.holds(seq):
                subscription.woken.set()

    async def poll(self, last_seqs: LastSeqs) -> None:
        """Wakes the watchers of every job whose latest event is past what they have read;
        and those of a job that no longer exists, so they end."""
        watched = list(self._waiters)
        if not watched:
            return
        seqs = await last_seqs(watched)
        for job_id in watched:
            seq = seqs.get(job_id)
            for subscription in self._waiters.get(job_id, ()):
                if seq is None or seq > subscription.seen_seq:
                    subscription.woken.set()

    async def poll_forever(self, last_seqs: LastSeqs, interval_s: float = POLL_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.poll(last_seqs)
            except Exception:
                log.exception("watch_poll_failed")

    @property
    def watcher_count(self) -> int:
        return sum(len(w) for w in self._waiters.values())
