"""sluice.v1.WorkerGateway: workers claim jobs, stream output and report results here.

One RunJob stream per delivery. The store decides whether the worker may run the job (the
claim); from then on only that attempt's reports count, heartbeats keep its lease, and a
stream that ends without a result gives the lease up at once so a redelivery can take over.
"""

from __future__ import annotations

import asyncio

import grpc

from control_plane import metrics
from control_plane.job_publisher import BrokerUnavailable, JobPublisher
from control_plane.language_catalog import LanguageCatalog
from control_plane.store.jobs import JobStore
from control_plane.watch_hub import WatchHub
from sluice.observability import get_logger
from sluice.settings import Settings
from sluice.topology import JobMessage, retry_delay_ms
from sluice.v1 import job_pb2 as pb
from sluice.v1 import worker_gateway_pb2 as gw
from sluice.v1 import worker_gateway_pb2_grpc as gw_grpc

log = get_logger(__name__)


class GatewayError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _LiveAttempt:
    """The open stream of a running attempt, so CancelJob can reach its worker."""

    def __init__(self, context: grpc.aio.ServicerContext, worker_id: str) -> None:
        self.context = context
        self.worker_id = worker_id
        self.write_lock = asyncio.Lock()
        self.cancel_sent = False
        # The attempt's outcome is stored (or its reports were refused as stale): from here
        # the stream may end, even by the worker cancelling it, without giving up the lease.
        self.settled = False

    async def send_cancel(self) -> None:
        async with self.write_lock:
            if self.cancel_sent:
                return
            self.cancel_sent = True
            await self.context.write(gw.RunJobResponse(cancel=gw.Cancel()))


class WorkerGateway(gw_grpc.WorkerGatewayServicer):
    def __init__(self, settings: Settings, jobs: JobStore, hub: WatchHub,
                 catalog: LanguageCatalog, publisher: JobPublisher) -> None:
        self._settings = settings
        self._jobs = jobs
        self._publisher = publisher
        self._hub = hub
        self._catalog = catalog
        self._live: dict[str, _LiveAttempt] = {}
        self._lease_s = settings.lease_timeout_ms / 1000

    # Used by the public API ----------------------------------------------------------------

    async def language_ids(self) -> set[str]:
        return await self._catalog.ids()

    async def languages(self) -> list[pb.Language]:
        return await self._catalog.languages()

    async def cancel_running(self, job_id: str) -> None:
        """Tells the worker now if its stream is here; otherwise its next heartbeat learns
        of the cancel from the store (streams on another control-plane process)."""
        live = self._live.get(job_id)
        if live is not None:
            try:
                await live.send_cancel()
            except (grpc.aio.AioRpcError, RuntimeError) as exc:
                log.warning("cancel_not_sent", job_id=job_id, error=str(exc))

    # The worker's RPCs ---------------------------------------------------------------------

    async def RegisterWorker(self, request: gw.RegisterWorkerRequest,
                             context: grpc.aio.ServicerContext) -> gw.RegisterWorkerResponse:
        await self._catalog.record(list(request.languages))
        log.info("worker_registered", worker_id=request.worker_id, slots=request.slots,
                 languages=[language.id for language in request.languages])
        return gw.RegisterWorkerResponse()

    async def RunJob(self, request_iterator: object,
                     context: grpc.aio.ServicerContext) -> None:
        first = await context.read()
        if first is grpc.aio.EOF or not first.HasField("claim"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first message of RunJob must be a claim")
        claim = first.claim
        if claim.resume_attempt:
            await self._resume(claim, context)
            return
        outcome = await self._jobs.claim(
            claim.job_id, claim.worker_id, replays=claim.replays,
            replayed_by=claim.replayed_by or "recovery", lease_s=self._lease_s,
            max_attempts=self._settings.max_attempts,
            heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
        )
        if outcome.events:
            self._hub.notify(claim.job_id, outcome.events)
        if outcome.assignment is None:
            log.info("claim_refused", job_id=claim.job_id, tenant=outcome.tenant_id,
                     worker_id=claim.worker_id, reason=gw.RefusalReason.Name(outcome.refusal),
                     detail=outcome.detail, redelivered=claim.redelivered)
            if outcome.refusal == gw.REFUSAL_REASON_EXHAUSTED:
                metrics.JOBS_FINISHED.labels("JOB_STATE_DEAD_LETTERED").inc()
            await context.write(gw.RunJobResponse(
                refusal=gw.Refusal(reason=outcome.refusal, detail=outcome.detail)))
            return
        assignment = outcome.assignment
        attempt = assignment.attempt
        metrics.JOB_WAIT_SECONDS.observe(outcome.since_created_s)
        await self._serve_attempt(claim.job_id, attempt, outcome.tenant_id, claim.worker_id,
                                  context, gw.RunJobResponse(assignment=assignment))

    async def _resume(self, claim: gw.Claim, context: grpc.aio.ServicerContext) -> None:
        """A running attempt whose stream broke (its gateway went away) goes on here, if the
        store still has it current and leased to this worker."""
        attempt = claim.resume_attempt
        resumed = await self._jobs.resume(claim.job_id, claim.worker_id, attempt,
                                          self._lease_s)
        if resumed.finished:
            await context.write(gw.RunJobResponse(result_accepted=gw.ResultAccepted()))
            return
        if not resumed.going_on:
            log.info("resume_refused", job_id=claim.job_id, tenant=resumed.tenant_id,
                     worker_id=claim.worker_id, attempt=attempt)
            await context.write(gw.RunJobResponse(refusal=gw.Refusal(
                reason=gw.REFUSAL_REASON_FINISHED,
                detail=f"attempt {attempt} of job {claim.job_id} is no longer current")))
            return
        log.info("attempt_resumed", job_id=claim.job_id, tenant=resumed.tenant_id,
                 worker_id=claim.worker_id, attempt=attempt,
                 stdout_bytes=resumed.stdout_bytes, stderr_bytes=resumed.stderr_bytes)
        await self._serve_attempt(
            claim.job_id, attempt, resumed.tenant_id, claim.worker_id, context,
            gw.RunJobResponse(resumed=gw.Resumed(stdout_bytes=resumed.stdout_bytes,
                                                 stderr_bytes=resumed.stderr_bytes)))

    async def _serve_attempt(self, job_id: str, attempt: int, tenant_id: str, worker_id: str,
                             context: grpc.aio.ServicerContext,
                             opening: gw.RunJobResponse) -> None:
        """The stream of an attempt this worker holds, from its opening answer (assignment
        or resumption) until its result is stored or the worker goes."""
        live = _LiveAttempt(context, worker_id)
        self._live[job_id] = live
        metrics.RUNNING_STREAMS.inc()
        try:
            async with live.write_lock:
                await context.write(opening)
            try:
                live.settled = await self._follow_attempt(job_id, attempt, tenant_id, live,
                                                          context)
            except GatewayError as exc:
                await context.abort(exc.code, str(exc))
        finally:
            metrics.RUNNING_STREAMS.dec()
            if self._live.get(job_id) is live:
                del self._live[job_id]
            if not live.settled:
                await self._jobs.drop_lease(job_id, attempt)
                log.warning("attempt_abandoned", job_id=job_id, tenant=tenant_id,
                            worker_id=worker_id, attempt=attempt)

    async def _follow_attempt(self, job_id: str, attempt: int, tenant_id: str,
                              live: _LiveAttempt, context: grpc.aio.ServicerContext) -> bool:
        """Reads the worker's reports until its result is stored (True) or it goes (False)."""
        # The worker heartbeats every interval; silence for a whole lease means it is gone.
        while True:
            try:
                async with asyncio.timeout(self._lease_s):
                    report = await context.read()
            except TimeoutError:
                return False
            if report is grpc.aio.EOF:
                return False
            kind = report.WhichOneof("report")
            if kind == "output":
                event = await self._jobs.append_output(job_id, attempt, report.output.stream,
                                                       report.output.data)
                if event is None:
                    await self._refuse_stale(job_id, attempt, context)
                    return True
                self._hub.notify(job_id, [event])
            elif kind == "heartbeat":
                lease = await self._jobs.heartbeat(job_id, attempt, self._lease_s)
                if not lease.valid:
                    await self._refuse_stale(job_id, attempt, context)
                    return True
                if lease.cancel_requested:
                    await live.send_cancel()
            elif kind == "result":
                if (report.result.verdict == pb.VERDICT_INTERNAL_ERROR
                        and attempt < self._settings.max_attempts):
                    await self._retry_infrastructure_failure(job_id, attempt, tenant_id,
                                                             report.result.detail)
                    live.settled = True
                    async with live.write_lock:
                        await context.write(
                            gw.RunJobResponse(result_accepted=gw.ResultAccepted()))
                    return True
                stored = await self._jobs.finish(job_id, attempt, report.result)
                # Stored: the worker cancels the stream once it sees the acceptance, which
                # may interrupt the write below; the lease must not be dropped for that.
                live.settled = True
                if stored is None:
                    await self._refuse_stale(job_id, attempt, context)
                    return True
                if stored.events:
                    self._hub.notify(job_id, stored.events)
                    state = pb.JobState.Name(stored.state)
                    metrics.JOBS_FINISHED.labels(state).inc()
                    metrics.JOB_RUN_SECONDS.labels(state).observe(stored.run_s)
                    log.info("job_finished", job_id=job_id, tenant=tenant_id, attempt=attempt,
                             state=state, verdict=pb.Verdict.Name(stored.verdict),
                             run_ms=round(stored.run_s * 1000, 1))
                async with live.write_lock:
                    await context.write(gw.RunJobResponse(result_accepted=gw.ResultAccepted()))
                return True

    async def _retry_infrastructure_failure(self, job_id: str, attempt: int, tenant_id: str,
                                            detail: str) -> None:
        """The sandbox failed, not the program: run the job again after a backoff. The retry
        is published before the state changes, so a failed publish leaves the worker's own
        message unacked (it is redelivered) rather than a QUEUED job with no message."""
        try:
            await self._publisher.publish(JobMessage(job_id, tenant_id),
                                          delay_ms=retry_delay_ms(attempt))
        except BrokerUnavailable as exc:
            raise GatewayError(grpc.StatusCode.UNAVAILABLE,
                               f"could not queue the retry: {exc}") from exc
        reason = f"attempt {attempt} hit a platform error ({detail or 'no detail'}); retrying"
        if await self._jobs.requeue_failed_attempt(job_id, attempt, reason,
                                                   actor=f"worker:{self._worker_of(job_id)}"):
            self._hub.notify(job_id)
            metrics.JOBS_REQUEUED.inc()
            log.warning("attempt_failed_retrying", job_id=job_id, tenant=tenant_id,
                        attempt=attempt, detail=detail)

    def _worker_of(self, job_id: str) -> str:
        live = self._live.get(job_id)
        return live.worker_id if live is not None else "?"

    async def ReportDeadLetter(self, request: gw.ReportDeadLetterRequest,
                               context: grpc.aio.ServicerContext
                               ) -> gw.ReportDeadLetterResponse:
        state, current, events = await self._jobs.record_dead_letter(
            request.job_id, replays=request.replays, reason=request.reason,
            parked=request.parked, actor="recovery")
        if events:
            self._hub.notify(request.job_id, events)
            metrics.JOBS_FINISHED.labels("JOB_STATE_DEAD_LETTERED").inc()
        return gw.ReportDeadLetterResponse(current=current, state=state)

    @staticmethod
    async def _refuse_stale(job_id: str, attempt: int,
                            context: grpc.aio.ServicerContext) -> None:
        log.warning("stale_report_refused", job_id=job_id, attempt=attempt)
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"attempt {attempt} of job {job_id} is no longer current (superseded or finished)",
        )
