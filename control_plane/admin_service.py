"""sluice.v1.AdminService: tenants, API keys, quotas, dead letters, worker tokens, the
audit trail and any tenant's jobs, for admin keys only."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import grpc
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from control_plane.archived_jobs import ArchivedJobs
from control_plane.auth import Authenticator
from control_plane.dead_letter_admin import DeadLetterAdmin, NotDeadLettered, UnknownJob
from control_plane.execution_service import list_jobs_page
from control_plane.job_cancel import cancel_job
from control_plane.job_messages import job_message
from control_plane.job_publisher import BrokerUnavailable
from control_plane.job_watch import JobWatch
from control_plane.open_streams import OpenStreams
from control_plane.queue_depths import BrokerUnreachable
from control_plane.runtime_controls import (
    LISTED_WITHIN_S,
    RuntimeControls,
    depth_message,
    set_pause_fields,
    worker_message,
)
from control_plane.store.audit import AuditLog, AuditRecord
from control_plane.store.jobs import JobStore
from control_plane.store.quotas import QUOTA_FIELDS, InvalidQuota, QuotaStore, QuotaView
from control_plane.store.tenants import (
    ApiKeyRecord,
    Tenant,
    TenantExists,
    TenantStore,
    UnknownTenant,
)
from control_plane.store.worker_tokens import (
    InvalidWorkerTokenName,
    WorkerToken,
    WorkerTokenExists,
    WorkerTokenStore,
)
from control_plane.store.workers import InvalidSlots, UnknownWorker
from control_plane.watch_hub import WatchHub
from control_plane.worker_gateway import WorkerGateway
from sluice.observability import get_logger
from sluice.settings import Settings
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import admin_service_pb2_grpc as adm_grpc
from sluice.v1 import archive_pb2 as arc
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb

log = get_logger(__name__)
MAX_AUDIT_PAGE = 1000
DEFAULT_AUDIT_PAGE = 100
MAX_DEAD_LETTER_PAGE = 1000
DEFAULT_DEAD_LETTER_PAGE = 100
MAX_REPLAY_JOB_IDS = 1000


def _ts(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def tenant_message(tenant: Tenant) -> adm.Tenant:
    return adm.Tenant(id=tenant.id, name=tenant.name, create_time=_ts(tenant.created_at))


def key_message(key: ApiKeyRecord) -> adm.ApiKey:
    return adm.ApiKey(id=key.id, tenant_id=key.tenant_id, prefix=key.prefix, admin=key.admin,
                      create_time=_ts(key.created_at), revoke_time=_ts(key.revoked_at))


def worker_token_message(token: WorkerToken) -> adm.WorkerToken:
    return adm.WorkerToken(id=token.id, name=token.name, prefix=token.prefix,
                           create_time=_ts(token.created_at), revoke_time=_ts(token.revoked_at))


def quota_message(values: dict[str, float]) -> adm.Quota:
    return adm.Quota(**{name: value for name, value in values.items() if name in QUOTA_FIELDS})


def quota_view_fields(view: QuotaView) -> dict[str, object]:
    return {
        "tenant_id": view.tenant_id,
        "quota": quota_message({name: getattr(view.quota, name) for name in QUOTA_FIELDS}),
        "overrides": quota_message(view.overrides),
    }


def audit_message(record: AuditRecord) -> adm.AuditEvent:
    detail = Struct()
    detail.update(record.detail)
    return adm.AuditEvent(seq=record.seq, time=_ts(record.time), tenant_id=record.tenant_id,
                          actor=record.actor, action=record.action, job_id=record.job_id,
                          detail=detail)


class AdminService(adm_grpc.AdminServiceServicer):
    def __init__(self, settings: Settings, auth: Authenticator, tenants: TenantStore,
                 dead_letters: DeadLetterAdmin, quotas: QuotaStore, audit: AuditLog,
                 streams: OpenStreams, worker_tokens: WorkerTokenStore,
                 jobs: JobStore, hub: WatchHub, gateway: WorkerGateway,
                 controls: RuntimeControls, archived: ArchivedJobs) -> None:
        self._settings = settings
        self._controls = controls
        self._auth = auth
        self._tenants = tenants
        self._dead_letters = dead_letters
        self._quotas = quotas
        self._audit = audit
        self._streams = streams
        self._worker_tokens = worker_tokens
        self._jobs = jobs
        self._hub = hub
        self._gateway = gateway
        self._archived = archived
        self._watch = JobWatch(jobs, hub, streams, archived=archived.read)

    async def CreateTenant(self, request: adm.CreateTenantRequest,
                           context: grpc.aio.ServicerContext) -> adm.CreateTenantResponse:
        actor = await self._auth.admin(context)
        if not request.name.strip() or len(request.name) > 128:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "name must be 1-128 characters")
        try:
            tenant = await self._tenants.create_tenant(request.name.strip())
        except TenantExists as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        key, secret = await self._tenants.create_key(tenant.id, admin=request.admin,
                                                     actor=f"key:{actor.key_id}")
        log.info("tenant_created", tenant=tenant.id, actor=actor.key_id, name=tenant.name,
                 admin=request.admin)
        return adm.CreateTenantResponse(tenant=tenant_message(tenant), api_key=key_message(key),
                                        secret=secret)

    async def ListTenants(self, request: adm.ListTenantsRequest,
                          context: grpc.aio.ServicerContext) -> adm.ListTenantsResponse:
        await self._auth.admin(context)
        tenants = await self._tenants.list_tenants()
        pauses = await self._controls.pauses.all()
        return adm.ListTenantsResponse(tenants=[set_pause_fields(tenant_message(t),
                                                                 pauses.get(t.id))
                                                for t in tenants])

    async def CreateApiKey(self, request: adm.CreateApiKeyRequest,
                           context: grpc.aio.ServicerContext) -> adm.CreateApiKeyResponse:
        actor = await self._auth.admin(context)
        tenant_id = await self._tenant_named(request.tenant_id, context)
        try:
            key, secret = await self._tenants.create_key(
                tenant_id, admin=request.admin, actor=f"key:{actor.key_id}")
        except UnknownTenant as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        log.info("key_created", tenant=key.tenant_id, actor=actor.key_id, key_id=key.id,
                 admin=key.admin)
        return adm.CreateApiKeyResponse(api_key=key_message(key), secret=secret)

    async def ListApiKeys(self, request: adm.ListApiKeysRequest,
                          context: grpc.aio.ServicerContext) -> adm.ListApiKeysResponse:
        await self._auth.admin(context)
        keys = await self._tenants.list_keys(
            await self._tenant_named(request.tenant_id, context))
        return adm.ListApiKeysResponse(api_keys=[key_message(k) for k in keys])

    async def RevokeApiKey(self, request: adm.RevokeApiKeyRequest,
                           context: grpc.aio.ServicerContext) -> adm.RevokeApiKeyResponse:
        actor = await self._auth.admin(context)
        key = await self._tenants.revoke_key(request.key_id, actor=f"key:{actor.key_id}")
        if key is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no key {request.key_id!r}")
        assert key is not None
        # Its streams open here end now; those on other processes within their next check.
        ended = self._streams.revoke(key.id)
        log.info("key_revoked", tenant=key.tenant_id, actor=actor.key_id, key_id=key.id,
                 streams_ended=ended)
        return adm.RevokeApiKeyResponse(api_key=key_message(key))

    # Worker tokens --------------------------------------------------------------------

    async def CreateWorkerToken(self, request: adm.CreateWorkerTokenRequest,
                                context: grpc.aio.ServicerContext
                                ) -> adm.CreateWorkerTokenResponse:
        actor = await self._auth.admin(context)
        try:
            token, secret = await self._worker_tokens.create(request.name,
                                                             actor=f"key:{actor.key_id}")
        except InvalidWorkerTokenName as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except WorkerTokenExists as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        log.info("worker_token_created", actor=actor.key_id, token_id=token.id, name=token.name)
        return adm.CreateWorkerTokenResponse(worker_token=worker_token_message(token),
                                             secret=secret)

    async def ListWorkerTokens(self, request: adm.ListWorkerTokensRequest,
                               context: grpc.aio.ServicerContext
                               ) -> adm.ListWorkerTokensResponse:
        await self._auth.admin(context)
        tokens = await self._worker_tokens.list(include_revoked=request.include_revoked)
        return adm.ListWorkerTokensResponse(worker_tokens=[worker_token_message(t)
                                                           for t in tokens])

    async def RevokeWorkerToken(self, request: adm.RevokeWorkerTokenRequest,
                                context: grpc.aio.ServicerContext
                                ) -> adm.RevokeWorkerTokenResponse:
        actor = await self._auth.admin(context)
        if not request.id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "id: name the worker token by its id or its name")
        token = await self._worker_tokens.revoke(request.id, actor=f"key:{actor.key_id}")
        if token is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no worker token {request.id!r}")
        assert token is not None
        # Its streams open here end now; those on other processes within their next check.
        ended = await self._gateway.end_streams_of(token.id)
        log.info("worker_token_revoked", actor=actor.key_id, token_id=token.id,
                 name=token.name, streams_ended=ended)
        return adm.RevokeWorkerTokenResponse(worker_token=worker_token_message(token))

    # Dead letters ---------------------------------------------------------------------

    async def _tenant_filter(self, tenant: str, context: grpc.aio.ServicerContext) -> str:
        """The id of the tenant a filter names (by id or name); "" for no filter."""
        if not tenant:
            return ""
        found = await self._tenants.get_tenant(tenant)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"tenant_id: no tenant {tenant!r} (give its id or name)")
        assert found is not None
        return found.id

    async def _tenant_named(self, tenant: str, context: grpc.aio.ServicerContext) -> str:
        """The id of the tenant a request names (by id or name), which it must."""
        if not tenant:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "tenant_id is empty: give the tenant's id or name")
        return await self._tenant_filter(tenant, context)

    async def ListDeadLetters(self, request: adm.ListDeadLettersRequest,
                              context: grpc.aio.ServicerContext
                              ) -> adm.ListDeadLettersResponse:
        await self._auth.admin(context)
        if not 0 <= request.page_size <= MAX_DEAD_LETTER_PAGE:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"page_size is {request.page_size}; it must be 0-{MAX_DEAD_LETTER_PAGE}")
        # The token is the last job id of the previous page (job ids are lowercase hex).
        token = request.page_token
        if token and (len(token) > 64 or token.strip("0123456789abcdef")):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "page_token is not one ListDeadLetters returned")
        tenant_id = await self._tenant_filter(request.tenant_id, context)
        parked = request.parked if request.HasField("parked") else None
        return await self._dead_letters.list_dead_letters(
            parked, tenant_id, after_id=token,
            limit=request.page_size or DEFAULT_DEAD_LETTER_PAGE)

    async def ReplayDeadLetters(self, request: adm.ReplayDeadLettersRequest,
                                context: grpc.aio.ServicerContext
                                ) -> adm.ReplayDeadLettersResponse:
        actor = await self._auth.admin(context)
        if not (request.job_ids or request.tenant_id or request.all):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "name job_ids, a tenant_id, or set all to replay every one")
        if len(request.job_ids) > MAX_REPLAY_JOB_IDS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"job_ids has {len(request.job_ids)} ids; at most {MAX_REPLAY_JOB_IDS}")
        if any(not job_id for job_id in request.job_ids):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_ids has an empty id")
        if request.all and (request.job_ids or request.tenant_id):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "all replays every dead letter: leave job_ids and tenant_id"
                                " empty with it")
        tenant_id = await self._tenant_filter(request.tenant_id, context)
        try:
            replayed = await self._dead_letters.replay(
                job_ids=list(dict.fromkeys(request.job_ids)), tenant_id=tenant_id,
                replay_all=request.all, actor=f"key:{actor.key_id}")
        except UnknownJob as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except NotDeadLettered as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except BrokerUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"the broker did not take the replay ({exc}); retry")
        return adm.ReplayDeadLettersResponse(replayed_job_ids=replayed)

    async def PurgeParked(self, request: adm.PurgeParkedRequest,
                          context: grpc.aio.ServicerContext) -> adm.PurgeParkedResponse:
        actor = await self._auth.admin(context)
        purged = await self._dead_letters.purge_parked(actor=f"key:{actor.key_id}")
        return adm.PurgeParkedResponse(purged_messages=purged)

    # Quotas ---------------------------------------------------------------------------

    async def GetQuota(self, request: adm.GetQuotaRequest,
                       context: grpc.aio.ServicerContext) -> adm.GetQuotaResponse:
        await self._auth.admin(context)
        try:
            view = await self._quotas.get(request.tenant_id)
        except UnknownTenant as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        usage = view.usage
        assert usage is not None
        return adm.GetQuotaResponse(
            **quota_view_fields(view),
            usage=adm.QuotaUsage(queued_jobs=usage.queued_jobs,
                                 running_jobs=usage.running_jobs,
                                 cpu_seconds_last_day=usage.cpu_ms_last_day / 1000,
                                 submit_tokens=usage.submit_tokens))

    async def SetQuota(self, request: adm.SetQuotaRequest,
                       context: grpc.aio.ServicerContext) -> adm.SetQuotaResponse:
        actor = await self._auth.admin(context)
        changes = {name: getattr(request.quota, name) for name in QUOTA_FIELDS
                   if request.quota.HasField(name)}
        try:
            view = await self._quotas.set(request.tenant_id, changes,
                                          list(request.reset_fields),
                                          actor=f"key:{actor.key_id}")
        except InvalidQuota as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except UnknownTenant as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return adm.SetQuotaResponse(**quota_view_fields(view))

    # The audit trail ------------------------------------------------------------------

    async def ListAuditEvents(self, request: adm.ListAuditEventsRequest,
                              context: grpc.aio.ServicerContext
                              ) -> adm.ListAuditEventsResponse:
        await self._auth.admin(context)
        if request.page_size < 0 or request.page_size > MAX_AUDIT_PAGE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"page_size is {request.page_size}; it must be 0-{MAX_AUDIT_PAGE}")
        size = request.page_size or DEFAULT_AUDIT_PAGE
        after_seq = 0
        if request.page_token:
            try:
                after_seq = int(base64.urlsafe_b64decode(request.page_token.encode()).decode())
            except (ValueError, UnicodeDecodeError):
                after_seq = -1
            if after_seq < 0:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    "page_token is not one ListAuditEvents returned")
        # A tenant's name reads as its id; an id no tenant has matches no record.
        named = await self._tenants.get_tenant(request.tenant_id) if request.tenant_id else None
        tenant_id = named.id if named is not None else request.tenant_id
        records = await self._audit.query(tenant_id=tenant_id, job_id=request.job_id,
                                          action=request.action, after_seq=after_seq,
                                          limit=size + 1)
        token = ""
        if len(records) > size:
            records = records[:size]
            token = base64.urlsafe_b64encode(str(records[-1].seq).encode()).decode()
        return adm.ListAuditEventsResponse(events=[audit_message(r) for r in records],
                                           next_page_token=token)

    # Any tenant's jobs -----------------------------------------------------------------

    async def _job_tenant(self, job_id: str, context: grpc.aio.ServicerContext) -> str:
        if not job_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id is empty")
        tenant_id = await self._jobs.tenant_of(job_id)
        if tenant_id is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {job_id!r} not found")
        assert tenant_id is not None
        return tenant_id

    async def ListJobs(self, request: adm.AdminServiceListJobsRequest,
                       context: grpc.aio.ServicerContext) -> api.ListJobsResponse:
        await self._auth.admin(context)
        tenant_id = await self._tenant_named(request.tenant_id, context)
        page = api.ListJobsRequest(page_size=request.page_size, page_token=request.page_token,
                                   states=request.states, labels=request.labels)
        if request.HasField("created_after"):
            page.created_after.CopyFrom(request.created_after)
        if request.HasField("created_before"):
            page.created_before.CopyFrom(request.created_before)
        return await list_jobs_page(self._jobs, tenant_id, page, context, self._settings)

    async def GetJob(self, request: api.GetJobRequest,
                     context: grpc.aio.ServicerContext) -> pb.Job:
        await self._auth.admin(context)
        if not request.job_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id is empty")
        tenant_id = await self._jobs.tenant_of(request.job_id)
        stored = None if tenant_id is None else await self._jobs.get(
            request.job_id, tenant_id, include_files=request.include_files)
        if stored is not None:
            return job_message(stored)
        # Gone from the store (before this call, or since its first read): the archive's.
        archived = await self._from_archive(request.job_id, tenant_id, context)
        if archived is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} not found")
        assert archived is not None
        job = archived.job
        if request.include_files:
            job.files.extend(archived.spec.files)
        return job

    async def WatchJob(self, request: api.WatchJobRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[pb.JobEvent]:
        await self._auth.admin(context)
        if not request.job_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id is empty")
        tenant_id = await self._jobs.tenant_of(request.job_id)
        if tenant_id is None and self._archived.enabled:
            tenant_id = await self._audit.submitter_of(request.job_id)
        if tenant_id is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} not found")
        assert tenant_id is not None
        async for event in self._watch.stream(request.job_id, request.after_seq, tenant_id,
                                              context):
            yield event

    async def _from_archive(self, job_id: str, tenant_id: str | None,
                            context: grpc.aio.ServicerContext) -> arc.ArchivedJob | None:
        """An operator names a job, not its tenant: when the store no longer says whose it
        is, the audit trail (kept longer than jobs) does."""
        if not self._archived.enabled:
            return None
        if tenant_id is None:
            tenant_id = await self._audit.submitter_of(job_id)
        if tenant_id is None:
            return None
        return await self._archived.read(job_id, tenant_id, context)

    async def CancelJob(self, request: api.CancelJobRequest,
                        context: grpc.aio.ServicerContext) -> pb.Job:
        actor = await self._auth.admin(context)
        tenant_id = await self._job_tenant(request.job_id, context)
        job = await cancel_job(self._jobs, self._hub, self._gateway, request.job_id, tenant_id,
                               actor=f"key:{actor.key_id}")
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} not found")
        assert job is not None
        return job

    # Runtime controls -------------------------------------------------------------------

    async def _set_paused(self, tenant: str, paused: bool,
                          context: grpc.aio.ServicerContext) -> adm.Tenant:
        actor = await self._auth.admin(context)
        tenant_id = await self._tenant_named(tenant, context)
        found = await self._tenants.get_tenant(tenant_id)
        assert found is not None
        pause = await self._controls.pauses.set_paused(tenant_id, paused,
                                                       actor=f"key:{actor.key_id}")
        log.info("tenant_paused" if paused else "tenant_resumed", tenant=tenant_id,
                 actor=actor.key_id)
        return set_pause_fields(tenant_message(found), pause)

    async def PauseTenant(self, request: adm.PauseTenantRequest,
                          context: grpc.aio.ServicerContext) -> adm.PauseTenantResponse:
        return adm.PauseTenantResponse(
            tenant=await self._set_paused(request.tenant_id, True, context))

    async def ResumeTenant(self, request: adm.ResumeTenantRequest,
                           context: grpc.aio.ServicerContext) -> adm.ResumeTenantResponse:
        return adm.ResumeTenantResponse(
            tenant=await self._set_paused(request.tenant_id, False, context))

    async def ListWorkers(self, request: adm.ListWorkersRequest,
                          context: grpc.aio.ServicerContext) -> adm.ListWorkersResponse:
        await self._auth.admin(context)
        workers = await self._controls.workers.list(LISTED_WITHIN_S)
        return adm.ListWorkersResponse(
            workers=[worker_message(w) for w in workers],
            report_interval_ms=int(self._settings.worker_report_interval_s * 1000))

    async def _control_worker(self, worker_id: str, context: grpc.aio.ServicerContext,
                              **change: object) -> adm.Worker:
        actor = await self._auth.admin(context)
        if not worker_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "worker_id is empty: give a worker_id from ListWorkers")
        try:
            worker = await self._controls.workers.set_controls(
                worker_id, actor=f"key:{actor.key_id}", **change)  # type: ignore[arg-type]
        except UnknownWorker as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except InvalidSlots as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        log.info("worker_controlled", worker_id=worker_id, actor=actor.key_id,
                 **{name: value for name, value in change.items() if value is not None})
        return worker_message(worker)

    async def DrainWorker(self, request: adm.DrainWorkerRequest,
                          context: grpc.aio.ServicerContext) -> adm.DrainWorkerResponse:
        return adm.DrainWorkerResponse(
            worker=await self._control_worker(request.worker_id, context, draining=True))

    async def ResumeWorker(self, request: adm.ResumeWorkerRequest,
                           context: grpc.aio.ServicerContext) -> adm.ResumeWorkerResponse:
        return adm.ResumeWorkerResponse(
            worker=await self._control_worker(request.worker_id, context, draining=False))

    async def SetWorkerSlots(self, request: adm.SetWorkerSlotsRequest,
                             context: grpc.aio.ServicerContext) -> adm.SetWorkerSlotsResponse:
        if request.HasField("slots"):
            change: dict[str, object] = {"slots": request.slots}
        else:
            change = {"reset_slots": True}
        return adm.SetWorkerSlotsResponse(
            worker=await self._control_worker(request.worker_id, context, **change))

    async def GetQueueDepths(self, request: adm.GetQueueDepthsRequest,
                             context: grpc.aio.ServicerContext) -> adm.GetQueueDepthsResponse:
        await self._auth.admin(context)
        try:
            depths = await self._controls.depths.read()
        except BrokerUnreachable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return adm.GetQueueDepthsResponse(queues=[depth_message(d) for d in depths])
