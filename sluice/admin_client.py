"""The operator commands' client: AdminService over gRPC at SLUICE_API_TARGET, with the
admin key from SLUICE_ADMIN_KEY or .sluice/admin.key, so an operator can run them from any
machine that reaches the API. Failures become one line a person can act on."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import Message

from sluice.client import ADMIN_KEY_FILE, bearer, read_key_file, resumable_watch
from sluice.grpc_channels import open_channel
from sluice.settings import Settings
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import admin_service_pb2_grpc as adm_grpc
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb

CALL_TIMEOUT_S = 30
MAX_PAGE = 1000


class OperatorError(Exception):
    """A refusal or failure, said in one line (without the "sluice: " prefix)."""


def admin_key(settings: Settings) -> str:
    """SLUICE_ADMIN_KEY, else the key `sluice up` left here; OperatorError when neither."""
    key = settings.admin_key.strip() or read_key_file(ADMIN_KEY_FILE)
    if not key:
        raise OperatorError(
            f"no admin key: set SLUICE_ADMIN_KEY (from `sluice admin bootstrap`), or run this "
            f"where `sluice up` keeps {ADMIN_KEY_FILE}")
    return key


def explain(exc: grpc.aio.AioRpcError, target: str) -> str:
    """One line for a failed call, naming the setting that fixes it where one does."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return (f"the admin key was refused ({details}); set SLUICE_ADMIN_KEY to a live admin "
                f"key (`sluice admin bootstrap` makes the first)")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return (f"that key is not an admin key ({details}); set SLUICE_ADMIN_KEY to an "
                f"operator's admin key")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return (f"cannot reach the API at {target} ({code.name}: {details}); is the control "
                f"plane up? set SLUICE_API_TARGET to its address")
    return f"{code.name}: {details}"


def audit_page_token(after_seq: int) -> str:
    """The ListAuditEvents page token that starts after this seq (the trail's own order)."""
    return base64.urlsafe_b64encode(str(after_seq).encode()).decode() if after_seq else ""


class OperatorClient:
    def __init__(self, target: str, key: str, settings: Settings) -> None:
        self.target = target
        self._channel = open_channel(target, settings)
        self.stub = adm_grpc.AdminServiceStub(self._channel)
        self.metadata = bearer(key)

    async def __aenter__(self) -> OperatorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close()

    def _call(self, method: grpc.aio.UnaryUnaryMultiCallable,
              request: Message) -> grpc.aio.UnaryUnaryCall:
        return method(request, metadata=self.metadata, timeout=CALL_TIMEOUT_S)

    # Tenants and keys

    async def create_tenant(self, name: str, *, admin: bool) -> adm.CreateTenantResponse:
        return await self._call(self.stub.CreateTenant,
                                adm.CreateTenantRequest(name=name, admin=admin))

    async def list_tenants(self) -> list[adm.Tenant]:
        return list((await self._call(self.stub.ListTenants, adm.ListTenantsRequest())).tenants)

    async def create_key(self, tenant: str, *, admin: bool) -> adm.CreateApiKeyResponse:
        return await self._call(self.stub.CreateApiKey,
                                adm.CreateApiKeyRequest(tenant_id=tenant, admin=admin))

    async def list_keys(self, tenant: str) -> list[adm.ApiKey]:
        reply = await self._call(self.stub.ListApiKeys, adm.ListApiKeysRequest(tenant_id=tenant))
        return list(reply.api_keys)

    async def revoke_key(self, key_id: str) -> adm.ApiKey:
        reply = await self._call(self.stub.RevokeApiKey, adm.RevokeApiKeyRequest(key_id=key_id))
        return reply.api_key

    # Worker tokens

    async def create_worker_token(self, name: str) -> adm.CreateWorkerTokenResponse:
        return await self._call(self.stub.CreateWorkerToken,
                                adm.CreateWorkerTokenRequest(name=name))

    async def list_worker_tokens(self) -> list[adm.WorkerToken]:
        reply = await self._call(self.stub.ListWorkerTokens,
                                 adm.ListWorkerTokensRequest(include_revoked=True))
        return list(reply.worker_tokens)

    async def revoke_worker_token(self, token: str) -> adm.WorkerToken:
        reply = await self._call(self.stub.RevokeWorkerToken,
                                 adm.RevokeWorkerTokenRequest(id=token))
        return reply.worker_token

    # Quotas and the audit trail

    async def get_quota(self, tenant: str) -> adm.GetQuotaResponse:
        return await self._call(self.stub.GetQuota, adm.GetQuotaRequest(tenant_id=tenant))

    async def set_quota(self, tenant: str, quota: adm.Quota,
                        reset: list[str]) -> adm.SetQuotaResponse:
        return await self._call(self.stub.SetQuota, adm.SetQuotaRequest(
            tenant_id=tenant, quota=quota, reset_fields=reset))

    async def audit(self, *, tenant: str, job_id: str, action: str, after_seq: int,
                    limit: int) -> list[adm.AuditEvent]:
        """Up to `limit` records after after_seq, oldest first, read page by page."""
        events: list[adm.AuditEvent] = []
        token = audit_page_token(after_seq)
        while len(events) < limit:
            page = await self._call(self.stub.ListAuditEvents, adm.ListAuditEventsRequest(
                tenant_id=tenant, job_id=job_id, action=action,
                page_size=min(MAX_PAGE, limit - len(events)), page_token=token))
            events.extend(page.events)
            token = page.next_page_token
            if not token:
                break
        return events

    # Any tenant's jobs

    async def list_jobs(self, tenant: str, *, states: list[int],
                        limit: int) -> list[pb.Job]:
        """The tenant's newest `limit` jobs, newest first."""
        jobs: list[pb.Job] = []
        token = ""
        while len(jobs) < limit:
            page = await self._call(self.stub.ListJobs, adm.AdminServiceListJobsRequest(
                tenant_id=tenant, states=states, page_size=min(MAX_PAGE, limit - len(jobs)),
                page_token=token))
            jobs.extend(page.jobs)
            token = page.next_page_token
            if not token:
                break
        return jobs

    async def get_job(self, job_id: str) -> pb.Job:
        return await self._call(self.stub.GetJob, api.GetJobRequest(job_id=job_id))

    async def cancel_job(self, job_id: str) -> pb.Job:
        return await self._call(self.stub.CancelJob, api.CancelJobRequest(job_id=job_id))

    def watch_job(self, job_id: str, after_seq: int = 0) -> AsyncIterator[pb.JobEvent]:
        return resumable_watch(self.stub.WatchJob, job_id, self.metadata, after_seq,
                               reach_first=True)

    # Dead letters

    async def list_dead_letters(self, *, tenant: str, parked: bool | None,
                                limit: int) -> adm.ListDeadLettersResponse:
        """Up to `limit` dead letters, oldest first, with the queues' depths of the last
        page read."""
        letters: list[adm.DeadLetter] = []
        token = ""
        while True:
            request = adm.ListDeadLettersRequest(
                tenant_id=tenant, page_size=min(MAX_PAGE, limit - len(letters)),
                page_token=token)
            if parked is not None:
                request.parked = parked
            page = await self._call(self.stub.ListDeadLetters, request)
            letters.extend(page.dead_letters)
            token = page.next_page_token
            if not token or len(letters) >= limit:
                del page.dead_letters[:]
                page.dead_letters.extend(letters)
                return page

    async def replay(self, *, job_ids: list[str], tenant: str, replay_all: bool) -> list[str]:
        reply = await self._call(self.stub.ReplayDeadLetters, adm.ReplayDeadLettersRequest(
            job_ids=job_ids, tenant_id=tenant, all=replay_all))
        return list(reply.replayed_job_ids)

    async def purge_parked(self) -> int:
        reply = await self._call(self.stub.PurgeParked, adm.PurgeParkedRequest())
        return reply.purged_messages

    # Runtime controls

    async def pause_tenant(self, tenant: str) -> adm.Tenant:
        reply = await self._call(self.stub.PauseTenant, adm.PauseTenantRequest(tenant_id=tenant))
        return reply.tenant

    async def resume_tenant(self, tenant: str) -> adm.Tenant:
        reply = await self._call(self.stub.ResumeTenant,
                                 adm.ResumeTenantRequest(tenant_id=tenant))
        return reply.tenant

    async def list_workers(self) -> adm.ListWorkersResponse:
        return await self._call(self.stub.ListWorkers, adm.ListWorkersRequest())

    async def drain_worker(self, worker_id: str) -> adm.Worker:
        reply = await self._call(self.stub.DrainWorker,
                                 adm.DrainWorkerRequest(worker_id=worker_id))
        return reply.worker

    async def resume_worker(self, worker_id: str) -> adm.Worker:
        reply = await self._call(self.stub.ResumeWorker,
                                 adm.ResumeWorkerRequest(worker_id=worker_id))
        return reply.worker

    async def set_worker_slots(self, worker_id: str, slots: int | None) -> adm.Worker:
        request = adm.SetWorkerSlotsRequest(worker_id=worker_id)
        if slots is not None:
            request.slots = slots
        return (await self._call(self.stub.SetWorkerSlots, request)).worker

    async def queue_depths(self) -> list[adm.QueueDepth]:
        reply = await self._call(self.stub.GetQueueDepths, adm.GetQueueDepthsRequest())
        return list(reply.queues)
