"""sluice.v1.ExecutionService: the public API. It stores and queues; it never runs code."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from control_plane import metrics
from control_plane.archived_jobs import JOB_ID, ArchivedJobs
from control_plane.auth import Authenticator, KeyCheck, Unauthenticated
from control_plane.job_cancel import cancel_job
from control_plane.job_messages import job_message, spec_record
from control_plane.job_publisher import BrokerUnavailable, JobPublisher
from control_plane.job_watch import JobWatch
from control_plane.open_streams import OpenStreams
from control_plane.quotas import QuotaExceeded, SubmitAdmission
from control_plane.stdin_hub import StdinHub
from control_plane.store.backend import Tx
from control_plane.store.job_stdin import JobStdinStore, StdinRefusal
from control_plane.store.jobs import JobStore
from control_plane.store.quotas import TenantQuota
from control_plane.submit_validation import (
    InvalidRequest,
    validate_labels,
    validate_submission,
)
from control_plane.watch_hub import WatchHub
from control_plane.worker_gateway import WorkerGateway
from sluice.message_limits import response_max_bytes
from sluice.observability import get_logger
from sluice.settings import Settings
from sluice.topology import JobMessage
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import execution_service_pb2_grpc as api_grpc
from sluice.v1 import job_pb2 as pb

log = get_logger(__name__)
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
PAGE_SLACK_BYTES = 1024  # the page token and the response's own framing
PAGE_ENTRY_OVERHEAD_BYTES = 8  # a job's tag and length within the page


async def list_jobs_page(jobs: JobStore, tenant_id: str, request: api.ListJobsRequest,
                         context: grpc.aio.ServicerContext, settings: Settings
                         ) -> api.ListJobsResponse:
    """One page of the tenant's jobs, newest first (ListJobs, the tenant's or an
    operator's)."""
    if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"page_size is {request.page_size}; it must be 0-{MAX_PAGE_SIZE}")
    try:
        validate_labels(request.labels, settings)
    except InvalidRequest as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    size = request.page_size or DEFAULT_PAGE_SIZE
    before_id = None
    if request.page_token:
        try:
            before_id = base64.urlsafe_b64decode(request.page_token.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            before_id = ""
        if not JOB_ID.fullmatch(before_id):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "page_token is not one ListJobs returned")
    records = await jobs.list_for_tenant(
        tenant_id,
        states=list(request.states),
        labels=dict(request.labels),
        created_after=(request.created_after.ToNanoseconds() / 1e9
                       if request.HasField("created_after") else None),
        created_before=(request.created_before.ToNanoseconds() / 1e9
                        if request.HasField("created_before") else None),
        before_id=before_id,
        limit=size + 1,
    )
    page = [job_message(job) for job in records]
    # A page ends early rather than outgrow the largest response a client receives
    # (each job may carry a whole result); the token goes on from there.
    budget, fits = response_max_bytes(settings) - PAGE_SLACK_BYTES, 0
    for job in page[:size]:
        budget -= job.ByteSize() + PAGE_ENTRY_OVERHEAD_BYTES
        if budget < 0 and fits:
            break
        fits += 1
    token = ""
    if len(page) > fits:
        page = page[:fits]
        token = base64.urlsafe_b64encode(page[-1].id.encode()).decode()
    return api.ListJobsResponse(jobs=page, next_page_token=token)


@dataclass(frozen=True)
class _StdinRefused:
    """Why AttachJob ends: a piece of stdin it would not take."""
    tenant_id: str
    code: grpc.StatusCode
    message: str


class ExecutionService(api_grpc.ExecutionServiceServicer):
    def __init__(self, settings: Settings, auth: Authenticator, jobs: JobStore,
                 publisher: JobPublisher, hub: WatchHub, gateway: WorkerGateway,
                 streams: OpenStreams, archived: ArchivedJobs, *,
                 stdin: JobStdinStore, stdin_hub: StdinHub) -> None:
        self._settings = settings
        self._stdin = stdin
        self._stdin_hub = stdin_hub
        self._auth = auth
        self._jobs = jobs
        self._publisher = publisher
        self._hub = hub
        self._gateway = gateway
        self._archived = archived
        self._watch = JobWatch(jobs, hub, streams, archived=self._archived.read)
        self._quota_defaults = TenantQuota.defaults(settings)
        # Submissions being stored and published, kept until done (see SubmitJob).
        self._admitting: set[asyncio.Future[pb.Job]] = set()

    async def SubmitJob(self, request: api.SubmitJobRequest,
                        context: grpc.aio.ServicerContext) -> api.SubmitJobResponse:
        secret = await self._auth.secret(context)
        try:
            spec = validate_submission(request, self._settings, await self._gateway.language_ids())
        except InvalidRequest as exc:
            await self._auth.principal(context)  # an unknown key hears UNAUTHENTICATED first
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        # The key is checked in the transaction that stores the job (one trip to the store),
        # and the store and the publish run as one step that the caller going away (a
        # cancelled call, a deadline) cannot cut in two: a job stored and then neither
        # published nor deleted would wait QUEUED forever.
        key = KeyCheck(secret)
        admitting = asyncio.ensure_future(self._admit(key, request, spec))
        self._admitting.add(admitting)
        admitting.add_done_callback(self._admitted)
        try:
            job = await asyncio.shield(admitting)
        except Unauthenticated as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except QuotaExceeded as exc:
            assert key.principal is not None
            metrics.QUOTA_REFUSALS.labels(exc.quota).inc()
            log.info("quota_exceeded", tenant=key.principal.tenant_id, quota=exc.quota,
                     retry_after_s=round(exc.retry_after_s, 3))
            await context.abort_with_status(exc.status())
        except BrokerUnavailable:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "the job queue (RabbitMQ) did not accept the job, so it was not created; "
                "retry shortly",
            )
        return api.SubmitJobResponse(job=job)

    async def _admit(self, key: KeyCheck, request: api.SubmitJobRequest,
                     spec: api.SubmitJobRequest) -> pb.Job:
        """Stores the job QUEUED and publishes it, confirmed; raises Unauthenticated,
        InvalidRequest or QuotaExceeded (nothing stored), or BrokerUnavailable (the job
        deleted again)."""

        def submitter(conn: Tx) -> tuple[str, str]:
            principal = key(conn)
            return principal.tenant_id, f"key:{principal.key_id}"

        # Quotas are checked in the same transaction too.
        record = spec_record(spec)
        admission = SubmitAdmission(self._quota_defaults, request, record)
        stored, created = await self._jobs.create(submitter, record, check=admission)
        job = job_message(stored)
        if not created:
            return job  # the idempotency key's job, as it is
        assert key.principal is not None
        tenant_id = key.principal.tenant_id
        # A held job waits for an earlier job of its ordering key; the HoldReleaser
        # publishes it when that one ends.
        if not admission.held:
            try:
                await self._publisher.publish(JobMessage(job.id, tenant_id))
            except BrokerUnavailable as exc:
                metrics.PUBLISH_FAILURES.inc()
                await self._jobs.delete_unpublished(job.id)
                log.warning("job_not_accepted", tenant=tenant_id, job_id=job.id,
                            error=str(exc))
                raise
        metrics.JOBS_SUBMITTED.inc()
        return job

    def _admitted(self, admitting: asyncio.Future[pb.Job]) -> None:
        self._admitting.discard(admitting)
        if not admitting.cancelled():
            admitting.exception()  # its caller may be gone: the outcome is not an error here

    async def GetJob(self, request: api.GetJobRequest,
                     context: grpc.aio.ServicerContext) -> pb.Job:
        if not request.job_id:
            await self._auth.principal(context)  # an unknown key hears UNAUTHENTICATED first
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id is empty")
        # The key is checked in the transaction that reads the job: one trip to the store.
        key = KeyCheck(await self._auth.secret(context))
        try:
            stored = await self._jobs.get(request.job_id, key.tenant,
                                          include_files=request.include_files)
        except Unauthenticated as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        job = None if stored is None else job_message(stored)
        if job is None and key.principal is not None:
            archived = await self._archived.read(request.job_id, key.principal.tenant_id,
                                                context)
            job = None if archived is None else archived.job
            if job is not None and request.include_files:
                job.files.extend(archived.spec.files)
        if job is None:
            # Another tenant's job reads the same as no job: ids leak nothing.
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} not found")
        assert job is not None
        return job

    async def WatchJob(self, request: api.WatchJobRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[pb.JobEvent]:
        if not request.job_id:
            await self._auth.principal(context)  # an unknown key hears UNAUTHENTICATED first
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id is empty")
        # The key is checked in the transaction of the first read: one trip to the store.
        key = KeyCheck(await self._auth.secret(context))
        async for event in self._watch.stream(request.job_id, request.after_seq, key.tenant,
                                              context, key=key):
            yield event

    async def AttachJob(self, request_iterator: AsyncIterator[api.AttachJobRequest],
                        context: grpc.aio.ServicerContext) -> AsyncIterator[pb.JobEvent]:
        first = await context.read()
        if first is grpc.aio.EOF or not first.job_id:
            await self._auth.principal(context)  # an unknown key hears UNAUTHENTICATED first
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first AttachJobRequest must set job_id")
        if first.stdin or first.close_stdin:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first AttachJobRequest names the job (job_id, after_seq);"
                                " stdin and close_stdin come in the messages after it")
        key = KeyCheck(await self._auth.secret(context))
        try:
            # The key and the job's tenant are checked before any stdin is read.
            job = await self._jobs.get(first.job_id, key.tenant)
        except Unauthenticated as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        feeding: asyncio.Task[_StdinRefused | None] | None = None
        if job is not None:
            assert key.principal is not None
            feeding = asyncio.create_task(
                self._take_stdin(first.job_id, key.principal.tenant_id, context))
        # Not in the store: the watch says NOT_FOUND, or replays the job from the archive.
        events = self._watch.stream(first.job_id, first.after_seq, key.tenant, context, key=key)
        step: asyncio.Future[pb.JobEvent] | None = None
        try:
            while True:
                step = asyncio.ensure_future(anext(events))
                if feeding is not None and not feeding.done():
                    await asyncio.wait({step, feeding}, return_when=asyncio.FIRST_COMPLETED)
                refused = feeding.result() if feeding is not None and feeding.done() else None
                if refused is not None:
                    # Ended here, by the handler, never from the stdin task: one writer of
                    # the call's status.
                    step.cancel()
                    with contextlib.suppress(BaseException):
                        await step
                    metrics.STDIN_REFUSALS.labels(refused.code.name).inc()
                    log.info("stdin_refused", job_id=first.job_id, tenant=refused.tenant_id,
                             code=refused.code.name, detail=refused.message)
                    await context.abort(refused.code, refused.message)
                try:
                    event = await step
                except StopAsyncIteration:
                    return
                yield event
        finally:
            if feeding is not None and not feeding.done():
                feeding.cancel()
            if step is not None and not step.done():  # the caller went away meanwhile
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
            await events.aclose()

    async def _take_stdin(self, job_id: str, tenant_id: str,
                          context: grpc.aio.ServicerContext) -> _StdinRefused | None:
        """Stores each piece of stdin the caller sends, in order, until the caller
        half-closes (None) or a piece is refused (nothing of it stored): then the refusal,
        naming the field and the cap, for the handler to end the call with."""
        cap = self._settings.max_stdin_bytes
        while True:
            request = await context.read()
            if request is grpc.aio.EOF:
                return None
            if request.job_id and request.job_id != job_id:
                return _StdinRefused(tenant_id, grpc.StatusCode.INVALID_ARGUMENT,
                                     f"job_id {request.job_id!r} differs from the attached "
                                     f"job {job_id!r}; attach once per job")
            if not request.stdin and not request.close_stdin:
                continue
            appended = await self._stdin.append(job_id, tenant_id, request.stdin,
                                                close=request.close_stdin, max_bytes=cap)
            refusal = appended.refusal
            if refusal is None:
                if not appended.ended:
                    metrics.STDIN_BYTES.inc(len(request.stdin))
                    self._stdin_hub.notify(job_id, appended.piece)
                if request.close_stdin:
                    log.info("stdin_closed", job_id=job_id, tenant=tenant_id,
                             stdin_bytes=appended.total_bytes)
                continue
            if refusal is StdinRefusal.OVER_CAP:
                return _StdinRefused(
                    tenant_id, grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"stdin: {appended.total_bytes + len(request.stdin)} bytes for job "
                    f"{job_id} in all, over the cap of {cap} bytes (SLUICE_MAX_STDIN_BYTES);"
                    f" this piece of {len(request.stdin)} bytes was not taken")
            if refusal is StdinRefusal.NOT_INTERACTIVE:
                return _StdinRefused(
                    tenant_id, grpc.StatusCode.FAILED_PRECONDITION,
                    f"stdin: job {job_id} is not interactive (submit it with interactive: "
                    "true to feed its stdin live)")
            if refusal is StdinRefusal.CLOSED:
                return _StdinRefused(
                    tenant_id, grpc.StatusCode.FAILED_PRECONDITION,
                    f"stdin: job {job_id}'s stdin was closed (close_stdin); nothing more "
                    "is taken")
            return _StdinRefused(tenant_id, grpc.StatusCode.NOT_FOUND,
                                 f"job {job_id!r} not found")

    async def CancelJob(self, request: api.CancelJobRequest,
                        context: grpc.aio.ServicerContext) -> pb.Job:
        principal = await self._auth.principal(context)
        if not request.job_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id is empty")
        job = await cancel_job(self._jobs, self._hub, self._gateway, request.job_id,
                               principal.tenant_id, actor=f"key:{principal.key_id}")
        if job is None:
            # An archived job is finished: cancelling it changes nothing, as in the store.
            archived = await self._archived.read(request.job_id, principal.tenant_id, context)
            if archived is not None:
                return archived.job
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} not found")
        assert job is not None
        return job

    async def ListJobs(self, request: api.ListJobsRequest,
                       context: grpc.aio.ServicerContext) -> api.ListJobsResponse:
        principal = await self._auth.principal(context)
        return await list_jobs_page(self._jobs, principal.tenant_id, request, context,
                                    self._settings)

    async def ListLanguages(self, request: api.ListLanguagesRequest,
                            context: grpc.aio.ServicerContext) -> api.ListLanguagesResponse:
        await self._auth.principal(context)
        return api.ListLanguagesResponse(languages=await self._gateway.languages())

