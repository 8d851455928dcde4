"""Fixtures for the fault tests: platforms of their own (in the run's vhost) to break."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sluice.client import SluiceClient
from sluice.v1 import job_pb2 as pb
from tests.support.broker import RunVhost
from tests.support.drills import all_events
from tests.support.platform import Platform

MakeStack = Callable[[dict[str, str]], Platform]


@pytest.fixture
async def make_stack(vhost: RunVhost, tmp_path: Path) -> AsyncIterator[MakeStack]:
    """Makes platforms with the given settings; stops them all at the end of the test."""
    stacks: list[Platform] = []

    def make(env: dict[str, str]) -> Platform:
        stack = Platform(tmp_path / f"s{len(stacks)}", vhost.amqp_url(),
                         prefix=f"{tmp_path.name}-{len(stacks)}", extra_env=env)
        stack.workdir.mkdir()
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await asyncio.to_thread(stack.stop)


async def running_with_output(client: SluiceClient, job_id: str, *, attempt: int = 1,
                              within_s: float = 60) -> None:
    """Returns once the given attempt of the job has printed something."""
    current = 0
    async with asyncio.timeout(within_s):
        async for event in client.watch(job_id):
            if event.HasField("state_change") and event.state_change.state == pb.JOB_STATE_RUNNING:
                current = event.state_change.attempt
            if event.HasField("output") and current == attempt:
                return
    raise AssertionError(f"job {job_id} ended before attempt {attempt} printed anything")


async def wait_for_state(client: SluiceClient, job_id: str, state: int,
                         within_s: float = 60) -> pb.Job:
    async with asyncio.timeout(within_s):
        while True:
            job = await client.get(job_id)
            if job.state == state:
                return job
            await asyncio.sleep(0.2)


async def state_changes(client: SluiceClient, job_id: str) -> list[pb.StateChange]:
    """Every state change of the job, a replayed one's life after DEAD_LETTERED included."""
    return [e.state_change for e in await all_events(client, job_id)
            if e.HasField("state_change")]


TERMINAL = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
