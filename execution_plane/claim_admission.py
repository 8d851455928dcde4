"""How many deliveries the worker has claimed at once: one per slot, and while the jobs are
short, one more per slot.

Between two jobs a slot waits for the next job's claim, a round trip to the gateway and its
store of a few milliseconds: a large share of a 20-ms job, nothing beside a 2-s one. So
while recent runs are short, each slot has its next job claimed: it waits in the sandbox
pool for a slot to free and starts the moment one does. It shows RUNNING from its claim,
so with long runs (where it would show RUNNING long before it ran, and gain nothing)
there is no claim ahead.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import deque

# A job claimed ahead waits about one short run at most before it starts.
SHORT_RUN_S = 0.2
RECENT_RUNS = 16


class ClaimAdmission:
    def __init__(self, slots: int, *, short_run_s: float = SHORT_RUN_S,
                 recent_runs: int = RECENT_RUNS) -> None:
        self._slots = slots
        self._short_run_s = short_run_s
        self._recent: deque[float] = deque(maxlen=recent_runs)
        self._claimed = 0
        self._changed = asyncio.Event()

    @property
    def slots(self) -> int:
        return self._slots

    def set_slots(self, slots: int) -> None:
        """An operator's control, live: more places admit waiting deliveries at once; fewer
        admit none until enough runs end (a running job is never stopped for it)."""
        self._slots = slots
        self._changed.set()

    @property
    def limit(self) -> int:
        runs = self._recent
        short = len(runs) == runs.maxlen and statistics.median(runs) < self._short_run_s
        return 2 * self._slots if short else self._slots

    async def admit(self) -> RunSlot:
        """Waits for a place: one delivery may now leave the scheduler to be claimed."""
        while self._claimed >= self.limit:
            self._changed.clear()
            await self._changed.wait()
        self._claimed += 1
        return RunSlot(self)

    def run_ended(self, run_s: float | None) -> None:
        """The admitted delivery's run is over; run_s is how long the program ran (None when
        nothing ran: a refused claim, a poison message, a broken gateway)."""
        if run_s is not None:
            self._recent.append(run_s)
        self._claimed -= 1
        self._changed.set()


class RunSlot:
    """A delivery's place in the ClaimAdmission: taken before it leaves the fair scheduler,
    given back once, when its run ends (or when it turns out there is nothing to run)."""

    def __init__(self, admission: ClaimAdmission) -> None:
        self._admission = admission
        self._held = True

    def release(self, run_s: float | None = None) -> None:
        if self._held:
            self._held = False
            self._admission.run_ended(run_s)
