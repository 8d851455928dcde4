"""The console's way to the platform: the public API over gRPC (SLUICE_API_TARGET), with
the key of the signed-in user on each call. A tenant's key reaches ExecutionService (its own
jobs); an admin key reaches AdminService too."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from sluice.client import bearer
from sluice.grpc_channels import open_channel
from sluice.settings import Settings
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import admin_service_pb2_grpc as adm_grpc
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import execution_service_pb2_grpc as api_grpc
from sluice.v1 import job_pb2 as pb

CALL_TIMEOUT_S = 15


class SluiceApi:
    """One channel for every session; each call carries its session's key."""

    def __init__(self, settings: Settings) -> None:
        self.target = settings.api_address
        self._channel = open_channel(self.target, settings)
        self.jobs = api_grpc.ExecutionServiceStub(self._channel)
        self.admin = adm_grpc.AdminServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def call(self, method: grpc.aio.UnaryUnaryMultiCallable, request: object,
                   key: str) -> object:
        return await method(request, metadata=bearer(key), timeout=CALL_TIMEOUT_S)

    def watch(self, job_id: str, after_seq: int, key: str, *,
              admin: bool) -> AsyncIterator[pb.JobEvent]:
        """The job's events after after_seq; an operator watches through AdminService (any
        tenant's job), a tenant through ExecutionService (its own)."""
        stub = self.admin if admin else self.jobs
        return _watch(stub.WatchJob(api.WatchJobRequest(job_id=job_id, after_seq=after_seq),
                                    metadata=bearer(key)))

    async def kind_of_key(self, key: str) -> bool | None:
        """True for an admin key, False for a tenant's, None for a key the API refuses."""
        try:
            await self.call(self.admin.ListTenants, adm.ListTenantsRequest(), key)
            return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return None
            if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
                raise
        await self.call(self.jobs.ListJobs, api.ListJobsRequest(page_size=1), key)
        return False


async def _watch(call: grpc.aio.UnaryStreamCall) -> AsyncIterator[pb.JobEvent]:
    try:
        async for event in call:
            yield event
    finally:
        # The browser went away (or the page closed the stream): so does the watch.
        call.cancel()
