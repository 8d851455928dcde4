"""The output cap: stdout and stderr together may carry at most max_output_bytes.

Chunks go to the sink in the order they were read, one at a time (the sink is the worker's
and need not be reentrant). The chunk that crosses the cap is cut, its stream is flagged
truncated, and `exceeded` is set so the step can kill the program.
"""

from __future__ import annotations

import asyncio

from execution_plane.sandbox.contract import OutputSink, OutputStream


class OutputCap:
    def __init__(self, limit: int, sink: OutputSink) -> None:
        self.remaining = limit
        self.sink = sink
        self.truncated = {OutputStream.STDOUT: False, OutputStream.STDERR: False}
        self.exceeded = asyncio.Event()
        self.lock = asyncio.Lock()
        self.first_stderr = b""  # start of stderr, to recognise bwrap's own failures

    async def deliver(self, stream: OutputStream, data: bytes) -> None:
        async with self.lock:
            if stream is OutputStream.STDERR and len(self.first_stderr) < 256:
                self.first_stderr += data[: 256 - len(self.first_stderr)]
            if self.exceeded.is_set():
                self.truncated[stream] = True
                return
            kept = data[: self.remaining]
            self.remaining -= len(kept)
            if len(kept) < len(data):
                self.truncated[stream] = True
                self.exceeded.set()
            if kept:
                await self.sink(stream, kept)


class CollectingSink:
    """A sink that keeps everything (the compile step's output)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    async def __call__(self, stream: OutputStream, data: bytes) -> None:
        self.parts.append(data)

    def text(self) -> str:
        return b"".join(self.parts).decode(errors="replace")
