"""An interactive job's stdin on the worker: the gateway's Stdin messages, in order, once.

Each message says where its bytes start in the job's whole stdin. A stream resumed on
another gateway is asked for what follows `received`, and anything sent again anyway is
dropped here, so the program reads every byte once whichever gateway sent it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from sluice.observability import get_logger
from sluice.v1 import worker_gateway_pb2 as gw

log = get_logger(__name__)


class LiveStdin:
    def __init__(self, job_id: str) -> None:
        self._job_id = job_id
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.received = 0  # bytes of the job's stdin taken so far
        self.closed = False
        # Called as each piece goes to the program (its answer is awaited).
        self.on_input: Callable[[], None] = lambda: None

    def offer(self, message: gw.Stdin) -> None:
        if self.closed:
            return
        data = message.data
        if message.offset < self.received:
            data = data[self.received - message.offset:]  # sent again after a resume
        elif message.offset > self.received:
            # Never sent by a gateway (it starts where the claim said); kept, not lost.
            log.warning("stdin_gap", job_id=self._job_id, offset=message.offset,
                        received=self.received)
        if data:
            self._chunks.put_nowait(data)
            self.received = max(self.received, message.offset) + len(data)
        if message.eof:
            self.closed = True
            self._chunks.put_nowait(None)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The program's stdin; ends at EOF (close_stdin)."""
        while (chunk := await self._chunks.get()) is not None:
            self.on_input()
            yield chunk
