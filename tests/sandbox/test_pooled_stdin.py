"""A step's stdin may be a pipe the caller feeds while the program runs, as well as bytes."""

from __future__ import annotations

import asyncio
import os

from execution_plane.sandbox import SandboxPool, Verdict
from execution_plane.sandbox.output import CollectingSink
from tests.sandbox.harness import DEFAULT_LIMITS, assert_host_untouched

ECHO_LINES = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)\n"


async def test_stdin_from_a_pipe_fed_while_the_program_runs(pool: SandboxPool) -> None:
    language = pool.available["python"]
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    sink = CollectingSink()
    slot = await pool.free.get()
    try:
        step = asyncio.create_task(
            pool._step(
                slot,
                language,
                ["/usr/bin/python3", "-c", ECHO_LINES],
                DEFAULT_LIMITS,
                read_fd,
                sink,
                asyncio.Event(),
            )
        )
        for line in (b"first\n", b"second\n"):
            await asyncio.sleep(0.2)  # the program is running, waiting on its stdin
            os.write(write_fd, line)
        os.close(write_fd)
        outcome = await asyncio.wait_for(step, timeout=30)
    finally:
        os.close(read_fd)
        pool.free.put_nowait(slot)
    assert outcome.verdict is Verdict.OK, outcome
    assert sink.text() == "FIRST\nSECOND\n"
    await assert_host_untouched(pool)
