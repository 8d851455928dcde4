"""Quotas hold across control-plane processes: two of them share the store, and its counters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from sluice.client import SluiceClient
from tests.conftest import python_job, wait_for_languages
from tests.support.broker import RunVhost
from tests.support.platform import Platform


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_two_control_planes_enforce_one_submit_quota(vhost: RunVhost, tmp_path: Path,
                                                           store: str) -> None:
    stack = Platform(tmp_path, vhost.amqp_url(), prefix=f"{tmp_path.name}-shared",
                     store=store)
    try:
        await asyncio.to_thread(stack.start_control_plane)
        second_target = await asyncio.to_thread(stack.start_another_control_plane)
        stack.start_worker()
        key = await asyncio.to_thread(stack.create_tenant, "shared-quota")
        await asyncio.to_thread(wait_for_languages, stack, key)
        quota = await asyncio.to_thread(stack.cli, "quota", "set", "shared-quota",
                                        "--submit-burst", "10", "--submit-rate", "0.001")
        assert quota.returncode == 0, quota.stderr
        async with (SluiceClient(stack.api_target, key) as first,
                    SluiceClient(second_target, key) as second):

            async def submit(client: SluiceClient) -> str:
                try:
                    await client.submit(python_job("pass"))
                    return "OK"
                except grpc.aio.AioRpcError as exc:
                    assert "submit_rate_per_s" in exc.details(), exc.details()
                    return exc.code().name

            # 30 at once, half through each process: the bucket holds 10 for both together.
            outcomes = await asyncio.gather(*(submit(first if i % 2 else second)
                                              for i in range(30)))
        assert outcomes.count("OK") == 10
        assert outcomes.count("RESOURCE_EXHAUSTED") == 20
    finally:
        await asyncio.to_thread(stack.stop)
