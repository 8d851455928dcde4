"""The pool survives its own parts failing: a dead runner, a cancelled caller."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from execution_plane.sandbox import SandboxPool, Verdict
from tests.sandbox.harness import (
    assert_host_untouched,
    living_processes_of_uids,
    processes_of_uids,
    run,
)


@pytest.fixture
async def solo() -> AsyncIterator[SandboxPool]:
    sandbox = SandboxPool(slots=1)
    await sandbox.start()
    yield sandbox
    await sandbox.close()


async def test_a_runner_killed_mid_run_is_an_internal_error_and_is_replaced(
    solo: SandboxPool,
) -> None:
    job = asyncio.create_task(run(solo, "python", "import time\ntime.sleep(30)\n"))
    await asyncio.sleep(0.5)
    os.kill(solo.slots[0].runner_pid, signal.SIGKILL)
    ran = await asyncio.wait_for(job, timeout=10)
    assert ran.outcome.verdict is Verdict.INTERNAL_ERROR
    assert ran.outcome.detail.startswith("sandbox: ")
    # The dead runner's bwrap is a zombie of whatever init adopted it; nothing runs.
    assert living_processes_of_uids({solo.slots[0].uid}) == []
    ran = await run(solo, "python", "print('replaced')")
    assert ran.outcome.verdict is Verdict.OK and ran.stdout == b"replaced\n"


async def test_a_cancelled_caller_leaves_nothing_running(solo: SandboxPool) -> None:
    job = asyncio.create_task(run(solo, "python", "import time\ntime.sleep(30)\n"))
    await asyncio.sleep(0.5)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await assert_host_untouched(solo)


async def test_close_kills_running_jobs(solo: SandboxPool) -> None:
    job = asyncio.create_task(run(solo, "python", "import time\ntime.sleep(30)\n"))
    await asyncio.sleep(0.5)
    uid = solo.slots[0].uid
    await solo.close()
    ran = await asyncio.wait_for(job, timeout=10)
    assert ran.outcome.verdict is Verdict.INTERNAL_ERROR
    assert processes_of_uids({uid}) == []  # not even a zombie
