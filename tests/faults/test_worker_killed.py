"""A worker SIGKILLed mid-job: the job does not stay RUNNING; it runs again, or dead-letters."""

from __future__ import annotations

import asyncio

from sluice.client import SluiceClient
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job, wait_for_languages
from tests.faults.conftest import MakeStack, running_with_output

SLOW = "import time\nprint('attempt started', flush=True)\ntime.sleep(3)\nprint('finished')\n"


async def test_killed_worker_job_runs_again_on_another(make_stack: MakeStack) -> None:
    stack = make_stack({"SLUICE_LEASE_TIMEOUT_MS": "3000", "SLUICE_MAX_ATTEMPTS": "3"})
    await asyncio.to_thread(stack.start_control_plane)
    first = stack.start_worker()
    key = await asyncio.to_thread(stack.create_tenant, "crash-team")
    await asyncio.to_thread(wait_for_languages, stack, key)
    async with SluiceClient(stack.api_target, key) as client:
        job = await client.submit(python_job(SLOW))
        await running_with_output(client, job.id)
        await asyncio.to_thread(stack.kill, first)
        stack.start_worker()
        done = await client.wait(job.id, within_s=90)
        assert done.state == pb.JOB_STATE_SUCCEEDED
        assert done.attempt == 2
        assert done.result.stdout == b"attempt started\nfinished\n"  # the second attempt's
        states = [e.state_change for e in [ev async for ev in client.watch(job.id)]
                  if e.HasField("state_change")]
        assert [s.state for s in states].count(pb.JOB_STATE_RUNNING) == 2
        assert states[-1].state == pb.JOB_STATE_SUCCEEDED


async def test_killed_worker_out_of_attempts_dead_letters_visibly(make_stack: MakeStack) -> None:
    stack = make_stack({"SLUICE_LEASE_TIMEOUT_MS": "3000", "SLUICE_MAX_ATTEMPTS": "1"})
    await asyncio.to_thread(stack.start_control_plane)
    first = stack.start_worker()
    key = await asyncio.to_thread(stack.create_tenant, "crash-team")
    await asyncio.to_thread(wait_for_languages, stack, key)
    async with SluiceClient(stack.api_target, key) as client:
        job = await client.submit(python_job(SLOW))
        await running_with_output(client, job.id)
        await asyncio.to_thread(stack.kill, first)
        stack.start_worker()
        done = await client.wait(job.id, within_s=90)
        assert done.state == pb.JOB_STATE_DEAD_LETTERED
        assert "limit 1" in done.state_reason
