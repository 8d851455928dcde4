"""`sluice run FILE -i`: this terminal is the program's stdin and stdout, as a local run.

Each line typed goes to the program as it is entered (the terminal's own line editing
applies); Ctrl-D closes the program's stdin; Ctrl-C cancels the job. Output is written as
it comes. A pipe works as well as a terminal: what it carries is sent as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator

from sluice.client import Attachment, SluiceClient
from sluice.v1 import job_pb2 as pb

READ_BYTES = 64 * 1024


async def stream_to_terminal(events: AsyncIterator[pb.JobEvent]) -> pb.Result | None:
    """A job's output to this terminal as it comes (stdout here, stderr and the reasons of
    state changes to stderr); its result, None when it ended without one."""
    result = None
    async for event in events:
        if event.HasField("output"):
            out = (sys.stdout if event.output.stream == pb.OUTPUT_STREAM_STDOUT
                   else sys.stderr)
            out.buffer.write(event.output.data)
            out.flush()
        elif event.HasField("result"):
            result = event.result
        elif event.HasField("state_change") and event.state_change.reason:
            print(f"sluice: {pb.JobState.Name(event.state_change.state)}: "
                  f"{event.state_change.reason}", file=sys.stderr)
    return result


async def _forward_stdin(attachment: Attachment) -> None:
    """This process's stdin to the job's, as it is read; its end closes the job's.

    Read by a daemon thread of its own: a blocking read of a terminal can neither stall the
    event loop nor keep the process alive once the job has ended."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[bytes] = asyncio.Queue()
    fd = sys.stdin.fileno()

    def read() -> None:
        while True:
            try:
                data = os.read(fd, READ_BYTES)
            except OSError:
                data = b""
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, data)
            except RuntimeError:
                return  # the loop is closed: the session is over
            if not data:
                return

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while data := await pieces.get():
        await attachment.send(data)
    await attachment.close_stdin()


async def run_interactive(client: SluiceClient, job_id: str) -> pb.Result | None:
    """Attached until the job ends; its result (None when it ended without one)."""
    loop = asyncio.get_running_loop()
    attachment = await client.attach(job_id)
    interrupted = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    forwarding = asyncio.create_task(_forward_stdin(attachment))
    cancelling = asyncio.create_task(interrupted.wait())

    async def cancel_on_interrupt() -> None:
        await cancelling
        print("\nsluice: cancelling the job (Ctrl-C)", file=sys.stderr)
        await client.cancel(job_id)

    canceller = asyncio.create_task(cancel_on_interrupt())
    try:
        result = await stream_to_terminal(attachment.events())
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        for task in (forwarding, canceller, cancelling):
            task.cancel()
        for task in (forwarding, canceller, cancelling):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        attachment.detach()
    return result
