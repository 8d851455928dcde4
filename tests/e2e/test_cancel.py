"""CancelJob: a queued job never starts; a running one is killed within about a second."""

from __future__ import annotations

import asyncio
import time

from sluice.client import SluiceClient
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job
from tests.support.admin import AdminClient
from tests.support.platform import Platform

SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(50)\n"


async def wait_running(client: SluiceClient, job_id: str) -> None:
    async with asyncio.timeout(60):
        async for event in client.watch(job_id):
            if event.HasField("output"):
                return


async def test_cancel_running_job_kills_it_quickly(client: SluiceClient) -> None:
    job = await client.submit(python_job(SLEEPER))
    await wait_running(client, job.id)
    asked = time.monotonic()
    cancelled = await client.cancel(job.id)
    assert cancelled.state in (pb.JOB_STATE_RUNNING, pb.JOB_STATE_CANCELLED)
    done = await client.wait(job.id, within_s=30)
    elapsed = time.monotonic() - asked
    assert done.state == pb.JOB_STATE_CANCELLED
    assert done.result.verdict == pb.VERDICT_CANCELLED
    assert done.result.stdout == b"started\n"
    # The target is one second; the bound here is loose because CI machines are noisy.
    assert elapsed < 5, elapsed


async def test_cancel_queued_job_never_starts(platform: Platform, admin: AdminClient) -> None:
    # A paused tenant's job is sure to stay queued: full slots are not (after short runs the
    # worker claims the next job ahead of a free slot, and it shows RUNNING).
    tenant = await admin.create_tenant("cancel-queued")
    paused = await asyncio.to_thread(platform.cli, "tenant", "pause", tenant.name)
    assert paused.returncode == 0, paused.stderr
    async with SluiceClient(platform.api_target, tenant.key) as client:
        try:
            queued = await client.submit(python_job("print('must not run')"))
            # Long enough for the worker to be offered its message and turn it down.
            await asyncio.sleep(1.5)
            assert (await client.get(queued.id)).state == pb.JOB_STATE_QUEUED
            cancelled = await client.cancel(queued.id)
            assert cancelled.state == pb.JOB_STATE_CANCELLED
            assert cancelled.result.verdict == pb.VERDICT_CANCELLED
        finally:
            resumed = await asyncio.to_thread(platform.cli, "tenant", "resume", tenant.name)
            assert resumed.returncode == 0, resumed.stderr
        # Give the worker time to receive the cancelled job's message and drop it.
        await asyncio.sleep(2)
        final = await client.get(queued.id)
        assert final.state == pb.JOB_STATE_CANCELLED
        assert final.attempt == 0 and not final.HasField("start_time")
        events = [e async for e in client.watch(queued.id)]
        assert not any(e.HasField("output") for e in events)
        assert [e.state_change.state for e in events if e.HasField("state_change")] == [
            pb.JOB_STATE_QUEUED, pb.JOB_STATE_CANCELLED]


async def test_cancel_finished_job_changes_nothing(client: SluiceClient) -> None:
    job = await client.submit(python_job("print(1)"))
    done = await client.wait(job.id)
    again = await client.cancel(job.id)
    assert again.state == done.state == pb.JOB_STATE_SUCCEEDED
