"""An AdminService client for tests: tenants with their ids, quotas, the audit trail."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import grpc
from grpc_status import rpc_status

from sluice.client import bearer
from sluice.grpc_channels import open_channel
from sluice.settings import Settings, get_settings
from sluice.topology import Topology
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import admin_service_pb2_grpc as adm_grpc

TERMINAL_ACTIONS = frozenset({"succeeded", "failed", "cancelled", "dead_lettered", "parked"})


@dataclass(frozen=True)
class NewTenant:
    id: str
    name: str
    key: str
    key_id: str

    @property
    def shard(self) -> int:
        return Topology("any").shard_of(self.id)


class AdminClient:
    def __init__(self, target: str, admin_key: str, *, settings: Settings | None = None) -> None:
        self._channel = open_channel(target, settings or get_settings())
        self.stub = adm_grpc.AdminServiceStub(self._channel)
        self.metadata = bearer(admin_key)

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close()

    async def create_tenant(self, prefix: str) -> NewTenant:
        reply = await self.stub.CreateTenant(
            adm.CreateTenantRequest(name=f"{prefix}-{uuid.uuid4().hex[:8]}"),
            metadata=self.metadata, timeout=10)
        return NewTenant(reply.tenant.id, reply.tenant.name, reply.secret, reply.api_key.id)

    async def set_quota(self, tenant_id: str, **fields: float) -> adm.SetQuotaResponse:
        return await self.stub.SetQuota(
            adm.SetQuotaRequest(tenant_id=tenant_id, quota=adm.Quota(**fields)),
            metadata=self.metadata, timeout=10)

    async def get_quota(self, tenant_id: str) -> adm.GetQuotaResponse:
        return await self.stub.GetQuota(adm.GetQuotaRequest(tenant_id=tenant_id),
                                        metadata=self.metadata, timeout=10)

    async def audit(self, *, page_size: int = 1000, **filters: str) -> list[adm.AuditEvent]:
        """Every record matching the filters, oldest first, read page by page."""
        events: list[adm.AuditEvent] = []
        token = ""
        while True:
            page = await self.stub.ListAuditEvents(
                adm.ListAuditEventsRequest(page_size=page_size, page_token=token, **filters),
                metadata=self.metadata, timeout=10)
            events.extend(page.events)
            token = page.next_page_token
            if not token:
                return events


def max_running_at_once(events: list[adm.AuditEvent]) -> int:
    """From a tenant's audit trail (seq order is commit order): the most jobs RUNNING at once."""
    running: set[str] = set()
    most = 0
    for event in events:
        if event.action == "started":
            running.add(event.job_id)
            most = max(most, len(running))
        elif event.action in TERMINAL_ACTIONS or event.action == "retried":
            running.discard(event.job_id)
    return most


def retry_delay_s(error: grpc.aio.AioRpcError) -> float | None:
    """The google.rpc.RetryInfo delay of a refusal, None when it carries none."""
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(error)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None
