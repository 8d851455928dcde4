"""With the broker unreachable, SubmitJob answers UNAVAILABLE and leaves nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from sluice.client import SluiceClient
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job, wait_for_languages
from tests.support.broker import RunVhost
from tests.support.platform import Platform
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def proxied(vhost: RunVhost, tmp_path: Path) -> AsyncIterator[tuple[Platform, TcpProxy]]:
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    # Only the control plane goes through the proxy; its worker talks to the broker directly.
    stack = Platform(tmp_path, vhost.amqp_url(proxy.port), prefix="broker-down")
    await asyncio.to_thread(stack.start_control_plane)
    stack.start_worker({"SLUICE_AMQP_URL": vhost.amqp_url()})
    try:
        yield stack, proxy
    finally:
        await proxy.close()
        await asyncio.to_thread(stack.stop)


async def test_submit_while_broker_unreachable_is_unavailable_and_stores_nothing(
        proxied: tuple[Platform, TcpProxy]) -> None:
    stack, proxy = proxied
    key = await asyncio.to_thread(stack.create_tenant, "outage-team")
    await asyncio.to_thread(wait_for_languages, stack, key)
    async with SluiceClient(stack.api_target, key) as client:
        ok = await client.submit(python_job("print('before')"))
        await proxy.cut()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.submit(python_job("print('during')"), deadline_s=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "not created" in caught.value.details()
        listing = await client.stub.ListJobs(api.ListJobsRequest(), metadata=client.metadata)
        assert [job.id for job in listing.jobs] == [ok.id]

        # The connection comes back by itself once the network does.
        await proxy.mend()
        async with asyncio.timeout(60):
            while True:
                try:
                    after = await client.submit(python_job("print('after')"))
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    await asyncio.sleep(1)
        assert (await client.wait(after.id)).result.stdout == b"after\n"
        assert (await client.wait(ok.id)).state == pb.JOB_STATE_SUCCEEDED
