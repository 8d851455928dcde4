"""The loop behind the control plane's background sweeps (leases, holds): sweep, wait, again.

A sweep that fails is logged and tried again on the next tick rather than ending the loop:
the store or the broker being away for a moment must not stop lost leases from being
reaped or held jobs from being released for the rest of the process's life.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sluice.observability import get_logger

log = get_logger(__name__)


async def sweep_forever(sweep: Callable[[], Awaitable[object]], *, interval_s: float,
                        failure_event: str) -> None:
    """Runs sweep() every interval_s seconds until cancelled; a failure is logged as
    failure_event (with its traceback) and does not stop the loop."""
    while True:
        try:
            await sweep()
        except Exception:
            log.exception(failure_event)
        await asyncio.sleep(interval_s)
