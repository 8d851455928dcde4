"""Coalesces a program's output into fewer, larger chunks before they cross the network.

A program that prints a line at a time would otherwise cost one gRPC message and one stored
event per line. Output is held for at most `delay_s` or until `max_bytes` are waiting, so
a watcher still sees it promptly; the order of stdout and stderr is kept.

With `quiet_at_once` (interactive jobs, where a person or a judge waits for each answer)
output after a quiet spell, or the first after new input (`expect_answer`), goes out at
once; only output that follows within `delay_s` of the last send otherwise waits for the
rest of that window: a program that answers line by line is never held, one that floods
still costs at most one message per window (or per piece of input).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from execution_plane.sandbox.contract import OutputStream
from sluice.message_limits import MAX_OUTPUT_CHUNK_BYTES

Send = Callable[[OutputStream, bytes], Awaitable[None]]


class OutputBatcher:
    def __init__(self, send: Send, *, delay_s: float = 0.05, max_bytes: int = 64 * 1024,
                 quiet_at_once: bool = False):
        self._send = send
        self._delay_s = delay_s
        self._quiet_at_once = quiet_at_once
        self._last_flush = float("-inf")
        self._max_bytes = max_bytes
        self._pending: list[tuple[OutputStream, bytearray]] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()
        self._flushing: set[asyncio.Task[None]] = set()

    def expect_answer(self) -> None:
        """Input just reached the program: what it writes next goes out at once."""
        self._last_flush = float("-inf")

    async def add(self, stream: OutputStream, data: bytes) -> None:
        if not data:
            return
        if self._pending and self._pending[-1][0] is stream:
            self._pending[-1][1].extend(data)
        else:
            self._pending.append((stream, bytearray(data)))
        self._size += len(data)
        if self._size >= self._max_bytes:
            await self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            wait = self._delay_s
            if self._quiet_at_once:
                wait = max(0.0, self._last_flush + self._delay_s - loop.time())
            self._timer = loop.call_later(wait, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush(self) -> None:
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            pending, self._pending, self._size = self._pending, [], 0
            if pending:
                self._last_flush = asyncio.get_running_loop().time()
            for stream, data in pending:
                # No report may outgrow what the gateway receives.
                for start in range(0, len(data), MAX_OUTPUT_CHUNK_BYTES):
                    await self._send(stream, bytes(data[start:start + MAX_OUTPUT_CHUNK_BYTES]))

    async def close(self) -> None:
        await self.flush()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
