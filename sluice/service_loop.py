"""Runs a service's coroutine on the configured event loop until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import uvloop

from sluice.settings import Settings


def run_until_signalled(
    serve: Callable[[Settings, asyncio.Event], Awaitable[None]], settings: Settings
) -> None:
    """serve(settings, stop) is handed an event that SIGTERM or SIGINT sets; it returns
    once it has shut down."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    if settings.event_loop == "asyncio":
        asyncio.run(run())
    elif settings.event_loop == "uvloop":
        # Everything in a service runs on the loop (grpc.aio, aiormq, the store's and the
        # sandbox's hand-backs), so its own overhead is paid on every RPC and every job:
        # uvloop cut the control plane's CPU per job by about a tenth and the worker's
        # loop thread by more (bench/platform_cpu.py).
        uvloop.run(run())
    else:
        raise SystemExit(
            f"SLUICE_EVENT_LOOP is {settings.event_loop!r}; it must be 'uvloop' or 'asyncio'"
        )
