"""A background sweep that fails keeps its loop: the next tick sweeps again."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from control_plane.periodic_sweep import sweep_forever


async def test_a_failed_sweep_is_logged_and_the_next_tick_sweeps_again() -> None:
    calls = 0
    third_sweep = asyncio.Event()

    async def sweep() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the store went away for a moment")
        if calls == 3:
            third_sweep.set()
        return 0

    with structlog.testing.capture_logs() as logged:
        loop = asyncio.create_task(
            sweep_forever(sweep, interval_s=0.01, failure_event="test_sweep_failed"))
        try:
            await asyncio.wait_for(third_sweep.wait(), 5)
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
    failures = [entry for entry in logged if entry["event"] == "test_sweep_failed"]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "error"
    assert calls >= 3
