"""ListJobs filtered by creation time, alone and with a label, across pages."""

from __future__ import annotations

import asyncio
import time

from google.protobuf.timestamp_pb2 import Timestamp

from sluice.client import SluiceClient
from sluice.v1 import execution_service_pb2 as api
from tests.conftest import python_job


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


async def listed(client: SluiceClient, **fields: object) -> list[str]:
    ids: list[str] = []
    token = ""
    while True:
        page = await client.stub.ListJobs(api.ListJobsRequest(page_size=1, page_token=token,
                                                              **fields),
                                          metadata=client.metadata)
        ids.extend(job.id for job in page.jobs)
        token = page.next_page_token
        if not token:
            return ids


async def test_list_jobs_by_creation_time(client: SluiceClient) -> None:
    label = {"batch": f"time-{time.time_ns()}"}
    early = await client.submit(python_job("pass", labels=label))
    # A moment between the two submissions, on the clock the control plane shares.
    await asyncio.sleep(0.05)
    middle = time.time()
    await asyncio.sleep(0.05)
    late = [await client.submit(python_job("pass", labels=label)) for _ in range(2)]
    after = await listed(client, labels=label, created_after=timestamp(middle))
    assert after == [late[1].id, late[0].id]  # newest first
    before = await listed(client, labels=label, created_before=timestamp(middle))
    assert before == [early.id]
    window = await listed(client, labels=label, created_after=timestamp(middle - 60),
                          created_before=timestamp(middle))
    assert window == [early.id]
    assert await listed(client, labels=label, created_after=timestamp(time.time() + 60)) == []
    for job in (early, *late):
        await client.wait(job.id)
