"""The platform on a PostgreSQL store, with two control planes on one database: a job
submitted through one is read, watched, resumed and cancelled through the other.

(The whole of tests/e2e and tests/faults runs on PostgreSQL too with
SLUICE_TEST_STORE=postgresql; this module keeps a part of it in every run.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from control_plane.store.migrations import LATEST
from sluice.client import SluiceClient
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job, wait_for_languages
from tests.support.broker import RunVhost
from tests.support.platform import Platform

TICKS = """
import time
for i in range(5):
    print(f"tick {i}", flush=True)
    time.sleep(0.2)
"""


@pytest.fixture(scope="module")
def replicas(vhost: RunVhost, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Platform, str, str]]:
    """One platform on PostgreSQL with two control planes; (platform, the second's API
    address, a tenant key)."""
    workdir = tmp_path_factory.mktemp("postgresql")
    stack = Platform(workdir, vhost.amqp_url(), prefix=f"pg-{uuid.uuid4().hex[:6]}",
                     extra_env={"SLUICE_WORKER_SLOTS": "2"}, store="postgresql")
    try:
        stack.start_control_plane()
        second = stack.start_another_control_plane()
        stack.start_worker()
        key = stack.create_tenant(f"pg-{uuid.uuid4().hex[:6]}")
        wait_for_languages(stack, key)
        yield stack, second, key
    finally:
        stack.stop()


@pytest.fixture
async def clients(replicas: tuple[Platform, str, str]
                  ) -> AsyncIterator[tuple[SluiceClient, SluiceClient]]:
    stack, second, key = replicas
    async with SluiceClient(stack.api_target, key) as one, SluiceClient(second, key) as other:
        yield one, other


async def test_a_job_submitted_through_one_is_watched_through_the_other(
        clients: tuple[SluiceClient, SluiceClient]) -> None:
    one, other = clients
    job = await one.submit(python_job(TICKS))
    states, stdout = [], b""
    async with asyncio.timeout(60):
        async for event in other.watch(job.id):
            if event.HasField("state_change"):
                states.append(event.state_change.state)
            elif event.HasField("output"):
                stdout += event.output.data
    assert states == [pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING, pb.JOB_STATE_SUCCEEDED]
    assert stdout == b"".join(f"tick {i}\n".encode() for i in range(5))
    stored = await other.get(job.id)
    assert stored.state == pb.JOB_STATE_SUCCEEDED and stored.result.stdout == stdout


async def test_a_watch_resumes_on_the_other_replica_with_no_gap(
        clients: tuple[SluiceClient, SluiceClient]) -> None:
    one, other = clients
    job = await one.submit(python_job(TICKS))
    first: list[pb.JobEvent] = []
    async with asyncio.timeout(60):
        async for event in one.watch(job.id):
            first.append(event)
            if event.HasField("output"):
                break  # the stream breaks off mid-job
        rest = [event async for event in other.watch(job.id, after_seq=first[-1].seq)]
    seqs = [event.seq for event in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert rest[-1].state_change.state == pb.JOB_STATE_SUCCEEDED
    stdout = b"".join(e.output.data for e in first + rest if e.HasField("output"))
    assert stdout == b"".join(f"tick {i}\n".encode() for i in range(5))


async def test_a_job_submitted_through_one_is_cancelled_through_the_other(
        clients: tuple[SluiceClient, SluiceClient]) -> None:
    one, other = clients
    job = await one.submit(python_job("import time\nprint('up', flush=True)\ntime.sleep(60)"))
    async with asyncio.timeout(60):
        async for event in one.watch(job.id):
            if event.HasField("output"):
                break
    await other.cancel(job.id)
    done = await one.wait(job.id)
    assert done.state == pb.JOB_STATE_CANCELLED


async def test_ordering_keys_hold_across_replicas(
        clients: tuple[SluiceClient, SluiceClient]) -> None:
    one, other = clients
    key = f"k-{uuid.uuid4().hex[:6]}"
    jobs = []
    for i in range(4):
        through = one if i % 2 else other
        jobs.append(await through.submit(python_job(
            f"import time\ntime.sleep(0.1)\nprint({i})", ordering_key=key)))
    done = [await one.wait(job.id) for job in jobs]
    assert [d.result.stdout for d in done] == [f"{i}\n".encode() for i in range(4)]
    starts = [d.start_time.ToNanoseconds() for d in done]
    ends = [d.end_time.ToNanoseconds() for d in done]
    # One at a time, in submission order: each started after the one before it ended.
    assert all(starts[i + 1] >= ends[i] for i in range(3))


async def test_the_store_is_postgresql_and_migrated(
        replicas: tuple[Platform, str, str]) -> None:
    stack, _, _ = replicas
    assert stack.env["SLUICE_STORE_URL"].startswith("postgresql://")
    migrated = await asyncio.to_thread(stack.cli, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema version {LATEST} (applied now: none)" in migrated.stdout
