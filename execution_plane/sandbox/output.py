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
        self.sink_error = ""

    async def deliver(self, stream: OutputStream, data: bytes) -> None:
        async with self.lock:
            if self.exceeded.is_set():
                self.truncated[stream] = True
                return
            kept = data[: self.remaining]
            self.remaining -= len(kept)
            if len(kept) < len(data):
                self.truncated[stream] = True
                self.exceeded.set()
            if kept and not self.sink_error:
                try:
                    await self.sink(stream, kept)
                except Exception as exc:
                    # The caller's sink broke: keep draining (a program blocked on a full
                    # pipe would only end at its time limit) and report it with the result.
                    self.sink_error = f"output sink failed: {type(exc).__name__}: {exc}"


class CollectingSink:
    """A sink that keeps everything (the compile step's output)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    async def __call__(self, stream: OutputStream, data: bytes) -> None:
        self.parts.append(data)

    def text(self) -> str:
        return b"".join(self.parts).decode(errors="replace")
