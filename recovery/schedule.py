"""When the recovery service wakes: a fixed interval, or a cron expression (croniter)."""

from __future__ import annotations

import time

from croniter import croniter


class Schedule:
    def __init__(self, *, interval_s: float, cron: str = "") -> None:
        if cron and not croniter.is_valid(cron):
            raise ValueError(f"SLUICE_RECOVERY_CRON={cron!r} is not a valid cron expression")
        self._interval_s = interval_s
        self._cron = cron

    def seconds_until_next(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        if self._cron:
            return max(0.0, croniter(self._cron, now).get_next(float) - now)
        return self._interval_s

    def describe(self) -> str:
        return f"cron {self._cron!r}" if self._cron else f"every {self._interval_s:g}s"
