"""Tenant isolation on every RPC: one tenant never sees, changes or waits on another's jobs."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.message_factory import GetMessageClass

from sluice.client import SluiceClient
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import admin_service_pb2_grpc as adm_grpc
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job
from tests.support.admin import AdminClient
from tests.support.platform import Platform


async def drain(call: grpc.aio.UnaryStreamCall) -> None:
    async for _ in call:
        pass


async def expect(code: grpc.StatusCode, call) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details()


async def test_every_execution_rpc_hides_another_tenants_job(
        platform: Platform, admin: AdminClient) -> None:
    owner, stranger = (await admin.create_tenant("owner"), await admin.create_tenant("stranger"))
    async with (SluiceClient(platform.api_target, owner.key) as mine,
                SluiceClient(platform.api_target, stranger.key) as theirs):
        job = await mine.submit(python_job("print('mine')", labels={"team": "owner"}))
        done = await mine.wait(job.id)
        for call in (theirs.get(job.id), theirs.cancel(job.id)):
            # Another tenant's job reads exactly like a job that does not exist.
            assert await expect(grpc.StatusCode.NOT_FOUND, call) == f"job {job.id!r} not found"

        async def watch() -> None:
            async for _ in theirs.watch(job.id, reconnect=False):
                pass

        await expect(grpc.StatusCode.NOT_FOUND, watch())
        for request in (api.ListJobsRequest(), api.ListJobsRequest(labels={"team": "owner"}),
                        api.ListJobsRequest(states=[pb.JOB_STATE_SUCCEEDED])):
            listing = await theirs.stub.ListJobs(request, metadata=theirs.metadata)
            assert job.id not in {j.id for j in listing.jobs}
        # The stranger's failed cancel changed nothing.
        assert (await mine.get(job.id)) == done
        # ListLanguages holds no tenant data; both see the same.
        assert await mine.languages() == await theirs.languages()


async def test_idempotency_and_ordering_keys_are_per_tenant(
        platform: Platform, admin: AdminClient) -> None:
    first, second = await admin.create_tenant("keys-a"), await admin.create_tenant("keys-b")
    async with (SluiceClient(platform.api_target, first.key) as a,
                SluiceClient(platform.api_target, second.key) as b):
        shared = {"idempotency_key": "same-idem"}
        job_a = await a.submit(python_job("print('a')", **shared))
        job_b = await b.submit(python_job("print('b')", **shared))
        assert job_a.id != job_b.id  # the same key names a different job per tenant
        assert (await b.wait(job_b.id)).result.stdout == b"b\n"
        assert (await a.wait(job_a.id)).result.stdout == b"a\n"

        # The same ordering key does not make b wait for a's long job.
        long_a = await a.submit(python_job("import time\ntime.sleep(30)\n", ordering_key="k"))
        quick_b = await b.submit(python_job("print('b runs')", ordering_key="k"))
        assert (await b.wait(quick_b.id, within_s=25)).state == pb.JOB_STATE_SUCCEEDED
        assert (await a.get(long_a.id)).state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
        await a.cancel(long_a.id)


async def test_one_tenants_quota_does_not_touch_another(
        platform: Platform, admin: AdminClient) -> None:
    full, free = await admin.create_tenant("full"), await admin.create_tenant("free")
    await admin.set_quota(full.id, max_queued_jobs=0, max_wall_time_ms=1000)
    async with (SluiceClient(platform.api_target, full.key) as blocked,
                SluiceClient(platform.api_target, free.key) as client):
        await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, blocked.submit(python_job("pass")))
        job = await client.submit(python_job("pass"))
        assert job.limits.wall_time_ms == 10_000  # the platform default, not full's ceiling
        assert (await client.wait(job.id)).state == pb.JOB_STATE_SUCCEEDED


async def test_every_admin_rpc_refuses_a_tenant_key(platform: Platform,
                                                    tenant_key: str) -> None:
    service = adm.DESCRIPTOR.services_by_name["AdminService"]
    async with grpc.aio.insecure_channel(platform.api_target) as channel:
        stub = adm_grpc.AdminServiceStub(channel)
        metadata = (("authorization", f"Bearer {tenant_key}"),)
        for method in service.methods:
            request = GetMessageClass(method.input_type)()
            call = getattr(stub, method.name)(request, metadata=metadata)
            details = await expect(grpc.StatusCode.PERMISSION_DENIED,
                                   drain(call) if method.server_streaming else call)
            assert "admin key" in details
        # tenants, keys, dead letters, quotas, audit, jobs
        assert len(service.methods) >= 15
