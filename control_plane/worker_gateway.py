"""sluice.v1.WorkerGateway: workers claim jobs, stream output and report results here.

Every call carries a worker token (control_plane/worker_auth.py); its identity, never what
the worker says of itself, holds the leases it claims. One RunJob stream per delivery. The
store decides whether the worker may run the job (the claim); from then on only that
attempt's reports, from that identity, count, heartbeats keep its lease, and a stream that
ends without a result gives the lease up at once so a redelivery can take over. What the
worker reports is checked against the job's limits (control_plane/report_checks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import grpc

from control_plane import metrics
from control_plane.job_messages import (
    assignment_message,
    event_message,
    limits_message,
    result_record,
    test_case_result_record,
)
from control_plane.job_publisher import BrokerUnavailable, JobPublisher
from control_plane.language_catalog import LanguageCatalog
from control_plane.report_checks import OutputAllowance, clamp_usage
from control_plane.stdin_hub import STDIN_POLL_S, StdinHub
from control_plane.store.job_stdin import JobStdinStore
from control_plane.store.jobs import JobStore
from control_plane.store.records import OutputStream
from control_plane.store.worker_tokens import WorkerIdentity
from control_plane.store.workers import WorkerReport, WorkerStore
from control_plane.watch_hub import WatchHub
from control_plane.worker_auth import WorkerAuthenticator
from sluice.observability import get_logger
from sluice.settings import Settings
from sluice.topology import JobMessage, retry_delay_ms
from sluice.v1 import job_pb2 as pb
from sluice.v1 import worker_gateway_pb2 as gw
from sluice.v1 import worker_gateway_pb2_grpc as gw_grpc

log = get_logger(__name__)
_OUTPUT_STREAMS = frozenset({OutputStream.STDOUT, OutputStream.STDERR})
# Languages one registration may carry, and the length of an id.
MAX_LANGUAGES = 256
MAX_LANGUAGE_ID = 64
MAX_WORKER_ID = 128
TOKEN_REVOKED = "the worker token was revoked; this stream ends and its job runs elsewhere"


class GatewayError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _LiveAttempt:
    """The open stream of a running attempt, so CancelJob can reach its worker."""

    def __init__(self, context: grpc.aio.ServicerContext, worker: WorkerIdentity,
                 max_output_bytes: int) -> None:
        self.context = context
        self.worker = worker
        self.output = OutputAllowance(max_output_bytes)
        self.write_lock = asyncio.Lock()
        self.cancel_sent = False
        # The attempt's outcome is stored (or its reports were refused as stale): from here
        # the stream may end, even by the worker cancelling it, without giving up the lease.
        self.settled = False
        # Set by end_streams_of: the handler's task is cancelled and answers UNAUTHENTICATED.
        self.task: asyncio.Task[object] | None = None
        self.revoked = False

    async def send_cancel(self) -> None:
        async with self.write_lock:
            if self.cancel_sent:
                return
            self.cancel_sent = True
            await self.context.write(gw.RunJobResponse(cancel=gw.Cancel()))


@dataclass(frozen=True)
class _AttemptShape:
    """What the gateway checks an attempt's reports against, and feeds it."""
    tenant_id: str
    limits: pb.Limits
    runs: int  # sandboxed runs of the program: its test cases, or one
    interactive: bool
    stdin_from: int  # the byte of the job's stdin the worker needs next


class WorkerGateway(gw_grpc.WorkerGatewayServicer):
    def __init__(self, settings: Settings, auth: WorkerAuthenticator, jobs: JobStore,
                 hub: WatchHub, catalog: LanguageCatalog, publisher: JobPublisher,
                 stdin: JobStdinStore, stdin_hub: StdinHub, workers: WorkerStore) -> None:
        self._stdin = stdin
        self._stdin_hub = stdin_hub
        self._settings = settings
        self._workers = workers
        self._auth = auth
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

    async def end_streams_of(self, token_id: str) -> int:
        """A worker token was revoked here: its open RunJob streams end now (UNAUTHENTICATED)
        and give their leases up; other control planes find out at their next check."""
        self._auth.forget(token_id)
        self._catalog.forget_cached()
        ended = 0
        for live in list(self._live.values()):
            if live.worker.token_id == token_id and not live.settled and live.task is not None:
                live.revoked = True
                live.task.cancel()
                ended += 1
        return ended

    # The worker's RPCs ---------------------------------------------------------------------

    async def RegisterWorker(self, request: gw.RegisterWorkerRequest,
                             context: grpc.aio.ServicerContext) -> gw.RegisterWorkerResponse:
        worker = await self._auth.identity(context)
        if len(request.languages) > MAX_LANGUAGES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"languages has {len(request.languages)} entries;"
                                f" at most {MAX_LANGUAGES}")
        for language in request.languages:
            if not 0 < len(language.id) <= MAX_LANGUAGE_ID:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"languages.id {language.id[:80]!r} must be 1-"
                                    f"{MAX_LANGUAGE_ID} characters")
        if not 0 < len(request.worker_id) <= MAX_WORKER_ID:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"worker_id must be 1-{MAX_WORKER_ID} characters")
        # Under the token's identity: a worker registers languages for itself only.
        await self._catalog.record(worker.name, list(request.languages))
        controls = await self._workers.report(WorkerReport(
            worker_id=request.worker_id, identity=worker.name,
            languages=[language.id for language in request.languages], slots=request.slots,
            active_slots=request.active_slots, running_jobs=request.running_jobs,
            draining=request.draining))
        log.debug("worker_registered", identity=worker.name, worker_id=request.worker_id,
                  slots=request.slots, active_slots=request.active_slots,
                  running_jobs=request.running_jobs, draining=request.draining,
                  languages=[language.id for language in request.languages])
        response = gw.RegisterWorkerResponse(drain=controls.draining)
        if controls.slots is not None:
            response.slots = controls.slots
        return response

    async def RunJob(self, request_iterator: object,
                     context: grpc.aio.ServicerContext) -> None:
        # The claim is read before the token is checked: a stream refused before the
        # client's first message is out reaches the client as a bare INTERNAL, not as the
        # UNAUTHENTICATED that says what to do.
        first = await context.read()
        worker = await self._auth.identity(context)
        if first is grpc.aio.EOF or not first.HasField("claim"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first message of RunJob must be a claim")
        claim = first.claim
        if claim.resume_attempt:
            await self._resume(claim, worker, context)
            return
        # claim.worker_id is what the worker calls itself, for the logs; the lease is the
        # token's identity's.
        outcome = await self._jobs.claim(
            claim.job_id, worker.name, replays=claim.replays,
            replayed_by=claim.replayed_by or "recovery", lease_s=self._lease_s,
            max_attempts=self._settings.max_attempts,
            heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
        )
        if outcome.events:
            self._hub.notify(claim.job_id, [event_message(e) for e in outcome.events])
        if outcome.assignment is None:
            log.info("claim_refused", job_id=claim.job_id, tenant=outcome.tenant_id,
                     identity=worker.name, worker_id=claim.worker_id,
                     reason=gw.RefusalReason.Name(outcome.refusal), detail=outcome.detail,
                     redelivered=claim.redelivered)
            if outcome.refusal == gw.REFUSAL_REASON_EXHAUSTED:
                metrics.JOBS_FINISHED.labels("JOB_STATE_DEAD_LETTERED").inc()
            await context.write(gw.RunJobResponse(
                refusal=gw.Refusal(reason=outcome.refusal, detail=outcome.detail)))
            return
        assignment = assignment_message(outcome.assignment)
        metrics.JOB_WAIT_SECONDS.observe(outcome.since_created_s)
        live = _LiveAttempt(context, worker, assignment.limits.max_output_bytes)
        shape = _AttemptShape(outcome.tenant_id, assignment.limits,
                              max(1, len(assignment.test_cases)), assignment.interactive, 0)
        await self._serve_attempt(claim, assignment.attempt, shape, live,
                                  gw.RunJobResponse(assignment=assignment))

    async def _resume(self, claim: gw.Claim, worker: WorkerIdentity,
                      context: grpc.aio.ServicerContext) -> None:
        """A running attempt whose stream broke (its gateway went away) goes on here, if the
        store still has it current and leased to this worker identity."""
        attempt = claim.resume_attempt
        resumed = await self._jobs.resume(claim.job_id, worker.name, attempt, self._lease_s)
        if resumed.finished:
            await context.write(gw.RunJobResponse(result_accepted=gw.ResultAccepted()))
            return
        if not resumed.going_on:
            log.info("resume_refused", job_id=claim.job_id, tenant=resumed.tenant_id,
                     identity=worker.name, worker_id=claim.worker_id, attempt=attempt)
            await context.write(gw.RunJobResponse(refusal=gw.Refusal(
                reason=gw.REFUSAL_REASON_FINISHED,
                detail=f"attempt {attempt} of job {claim.job_id} is no longer current")))
            return
        log.info("attempt_resumed", job_id=claim.job_id, tenant=resumed.tenant_id,
                 identity=worker.name, worker_id=claim.worker_id, attempt=attempt,
                 stdout_bytes=resumed.stdout_bytes, stderr_bytes=resumed.stderr_bytes)
        live = _LiveAttempt(context, worker, resumed.limits.max_output_bytes
                            - resumed.stdout_bytes - resumed.stderr_bytes)
        shape = _AttemptShape(resumed.tenant_id, limits_message(resumed.limits), resumed.runs,
                              resumed.interactive, claim.stdin_bytes)
        await self._serve_attempt(
            claim, attempt, shape, live,
            gw.RunJobResponse(resumed=gw.Resumed(stdout_bytes=resumed.stdout_bytes,
                                                 stderr_bytes=resumed.stderr_bytes,
                                                 test_case_results=resumed.test_case_results)))

    async def _serve_attempt(self, claim: gw.Claim, attempt: int, shape: _AttemptShape,
                             live: _LiveAttempt, opening: gw.RunJobResponse) -> None:
        """The stream of an attempt this worker holds, from its opening answer (assignment
        or resumption) until its result is stored or the worker goes."""
        job_id, context, worker = claim.job_id, live.context, live.worker
        tenant_id = shape.tenant_id
        live.task = asyncio.current_task()
        self._live[job_id] = live
        metrics.RUNNING_STREAMS.inc()
        feeding: asyncio.Task[None] | None = None
        try:
            try:
                async with live.write_lock:
                    await context.write(opening)
                if shape.interactive:
                    feeding = asyncio.create_task(
                        self._feed_stdin(job_id, shape.stdin_from, live))
                live.settled = await self._follow_attempt(job_id, attempt, shape, live,
                                                          context)
            except GatewayError as exc:
                await context.abort(exc.code, str(exc))
            except asyncio.CancelledError:
                if not live.revoked:
                    raise
                # Cancelled by end_streams_of, not by the call ending: answer it.
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, TOKEN_REVOKED)
        finally:
            if feeding is not None:
                feeding.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError,
                                         RuntimeError):
                    await feeding
            metrics.RUNNING_STREAMS.dec()
            if self._live.get(job_id) is live:
                del self._live[job_id]
            if not live.settled:
                await self._jobs.drop_lease(job_id, attempt, worker.name)
                log.warning("attempt_abandoned", job_id=job_id, tenant=tenant_id,
                            identity=worker.name, worker_id=claim.worker_id, attempt=attempt,
                            revoked=live.revoked)

    async def _feed_stdin(self, job_id: str, position: int, live: _LiveAttempt) -> None:
        """Sends an interactive job's stdin down the worker's stream as it is stored (held
        pieces first, in order), from `position`, the byte the worker needs next, to EOF."""
        after_seq = 0
        with self._stdin_hub.subscribe(job_id) as subscription:
            while True:
                subscription.woken.clear()
                # What this process just stored, if it follows without a gap; else the store.
                pieces = (subscription.take_following(after_seq)
                          or await self._stdin.after(job_id, after_seq))
                for piece in pieces:
                    after_seq = piece.seq
                    skip = max(0, position - piece.offset)
                    if skip >= len(piece.data) and not piece.eof:
                        continue  # the worker has it (a resumed stream)
                    data = piece.data[skip:]
                    async with live.write_lock:
                        await live.context.write(gw.RunJobResponse(stdin=gw.Stdin(
                            offset=piece.offset + skip, data=data, eof=piece.eof)))
                    position = piece.offset + len(piece.data)
                    if piece.eof:
                        return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STDIN_POLL_S):
                        await subscription.woken.wait()

    async def _follow_attempt(self, job_id: str, attempt: int, shape: _AttemptShape,
                              live: _LiveAttempt, context: grpc.aio.ServicerContext) -> bool:
        """Reads the worker's reports until its result is stored (True) or it goes (False)."""
        owner = live.worker.name
        tenant_id, limits = shape.tenant_id, shape.limits
        # The worker heartbeats every interval; silence for a whole lease means it is gone.
        while True:
            try:
                async with asyncio.timeout(self._lease_s):
                    report = await context.read()
            except TimeoutError:
                return False
            if report is grpc.aio.EOF:
                return False
            if not await self._auth.still_live(live.worker):
                # Revoked through another control plane or the CLI (cached for RECHECK_S).
                raise GatewayError(grpc.StatusCode.UNAUTHENTICATED, TOKEN_REVOKED)
            kind = report.WhichOneof("report")
            if kind == "output":
                if report.output.stream not in _OUTPUT_STREAMS:
                    raise GatewayError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"output.stream is {report.output.stream}; it must be"
                        " OUTPUT_STREAM_STDOUT or OUTPUT_STREAM_STDERR")
                data = live.output.take(report.output.stream, report.output.data)
                if not data:
                    continue  # over the job's max_output_bytes: not stored
                event = await self._jobs.append_output(
                    job_id, attempt, owner, OutputStream(report.output.stream), data)
                if event is None:
                    await self._refuse_stale(job_id, attempt, owner, context)
                    return True
                self._hub.notify(job_id, [event_message(event)])
            elif kind == "test_case_result":
                case = report.test_case_result
                # All the cases together keep at most the job's output, as a run's streams.
                case.stdout = live.output.take(pb.OUTPUT_STREAM_STDOUT, case.stdout)
                case.stderr = live.output.take(pb.OUTPUT_STREAM_STDERR, case.stderr)
                try:
                    record = test_case_result_record(case)
                except ValueError as exc:
                    raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"test_case_result.verdict is {case.verdict}: not a"
                                       " Verdict") from exc
                event = await self._jobs.append_test_case(job_id, attempt, owner, record)
                if event is None:
                    await self._refuse_stale(job_id, attempt, owner, context)
                    return True
                self._hub.notify(job_id, [event_message(event)])
            elif kind == "heartbeat":
                lease = await self._jobs.heartbeat(job_id, attempt, owner, self._lease_s)
                if not lease.valid:
                    await self._refuse_stale(job_id, attempt, owner, context)
                    return True
                if lease.cancel_requested:
                    await live.send_cancel()
            elif kind == "result":
                result = report.result
                if (result.verdict == pb.VERDICT_INTERNAL_ERROR
                        and attempt < self._settings.max_attempts):
                    await self._retry_infrastructure_failure(job_id, attempt, tenant_id,
                                                             owner, result.detail)
                    live.settled = True
                    async with live.write_lock:
                        await context.write(
                            gw.RunJobResponse(result_accepted=gw.ResultAccepted()))
                    return True
                live.output.apply(result)
                over = clamp_usage(result, limits, shape.runs)
                if over or live.output.cut:
                    log.warning("worker_report_corrected", job_id=job_id, tenant=tenant_id,
                                identity=owner, attempt=attempt, usage_over=over,
                                output_cut=live.output.cut)
                try:
                    reported = result_record(result)
                except ValueError as exc:
                    raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"result.verdict is {result.verdict}: not a Verdict"
                                       ) from exc
                stored = await self._jobs.finish(job_id, attempt, owner, reported)
                # Stored: the worker cancels the stream once it sees the acceptance, which
                # may interrupt the write below; the lease must not be dropped for that.
                live.settled = True
                if stored is None:
                    await self._refuse_stale(job_id, attempt, owner, context)
                    return True
                if stored.events:
                    self._hub.notify(job_id, [event_message(e) for e in stored.events])
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
                                            owner: str, detail: str) -> None:
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
        if await self._jobs.requeue_failed_attempt(job_id, attempt, owner, reason):
            self._hub.notify(job_id)
            metrics.JOBS_REQUEUED.inc()
            log.warning("attempt_failed_retrying", job_id=job_id, tenant=tenant_id,
                        attempt=attempt, detail=detail)

    async def ReportDeadLetter(self, request: gw.ReportDeadLetterRequest,
                               context: grpc.aio.ServicerContext
                               ) -> gw.ReportDeadLetterResponse:
        worker = await self._auth.identity(context)
        # The recovery service's identity is the actor (`recovery` under `sluice up`).
        state, current, events = await self._jobs.record_dead_letter(
            request.job_id, replays=request.replays, reason=request.reason,
            parked=request.parked, actor=worker.name)
        if events:
            self._hub.notify(request.job_id, [event_message(e) for e in events])
            metrics.JOBS_FINISHED.labels("JOB_STATE_DEAD_LETTERED").inc()
        return gw.ReportDeadLetterResponse(current=current, state=state)

    @staticmethod
    async def _refuse_stale(job_id: str, attempt: int, owner: str,
                            context: grpc.aio.ServicerContext) -> None:
        log.warning("stale_report_refused", job_id=job_id, attempt=attempt, identity=owner)
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"attempt {attempt} of job {job_id} is not current for worker identity {owner!r}"
            " (superseded, finished, or leased to another identity)",
        )
