"""Runs one delivered job: claim it at the gateway, run it in the sandbox, report, ack.

The message is acked only after the gateway has stored the result, so a worker that dies at
any point leaves the message to be delivered again; the gateway's claim then decides
whether the job still needs running.

Only the claim and the run hold a place in the worker's ClaimAdmission. Reporting the
result and acking happen after the place is handed on, so the next job's claim and run
overlap them instead of the sandbox waiting two round trips between jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import grpc
from aio_pika.abc import AbstractIncomingMessage

from execution_plane import metrics
from execution_plane.claim_admission import RunSlot
from execution_plane.live_stdin import LiveStdin
from execution_plane.output_batcher import OutputBatcher
from execution_plane.proto_mapping import STREAMS, job_spec, result_message, test_case_message
from execution_plane.sandbox import SandboxPool
from execution_plane.sandbox.contract import JobOutcome, OutputStream, TestCaseOutcome
from sluice.observability import get_logger
from sluice.topology import REPLAYED_BY_HEADER, JobMessage
from sluice.v1 import job_pb2 as pb
from sluice.v1 import worker_gateway_pb2 as gw
from sluice.v1 import worker_gateway_pb2_grpc as gw_grpc
from sluice.worker_credentials import TokenWatch

log = get_logger(__name__)
REPLAYS_HEADER = "x-sluice-replays"
RESULT_ACK_TIMEOUT_S = 30.0
# Waits before each try to resume a broken stream: about 7 s in all, inside the lease
# (SLUICE_LEASE_TIMEOUT_MS, 10 s by default) that the last heartbeat renewed.
RESUME_DELAYS_S = (0.1, 0.25, 0.5, 1.0, 1.0, 2.0, 2.0)
RESEND_CHUNK_BYTES = 64 * 1024
# An interactive program's answer to new input, or after a quiet spell, goes out at once (a
# person, or a judge, waits for it); a flood costs at most one message per this window.
INTERACTIVE_OUTPUT_WINDOW_S = 0.02
# How a stream breaks when its gateway goes away (killed, cut off, shut down), as against
# a gateway that ended the attempt on purpose.
RESUMABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                             grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})


class GatewayLost(RuntimeError):
    """The RunJob stream broke: this worker no longer holds the job."""


@dataclass
class Delivery:
    message: AbstractIncomingMessage
    received_at: float


class JobRunner:
    def __init__(
        self,
        worker_id: str,
        gateway: gw_grpc.WorkerGatewayStub,
        sandbox: SandboxPool,
        token: TokenWatch,
    ) -> None:
        self._worker_id = worker_id
        self._gateway = gateway
        self._sandbox = sandbox
        self._token = token
        self._running: dict[str, asyncio.Event] = {}  # job id -> its cancel event
        self._abandoning = False

    @property
    def running_count(self) -> int:
        """Jobs this worker runs now (claimed and assigned, not yet reported)."""
        return len(self._running)

    def abandon_all(self) -> None:
        """Shutdown past its grace: stop every run and hand the jobs back unreported, so
        another worker runs them again (a shutdown is not the caller's cancel)."""
        self._abandoning = True
        for cancelled in self._running.values():
            cancelled.set()

    async def handle(self, delivery: Delivery, run_slot: RunSlot) -> None:
        message = delivery.message
        try:
            job = JobMessage.decode(message.body)
        except (ValueError, KeyError, TypeError) as exc:
            # Poison: no redelivery can fix it; the broker dead-letters it with its reason.
            log.error("undecodable_message", error=str(exc), message_id=message.message_id)
            await message.reject(requeue=False)
            return
        try:
            settled = await self._run(job, delivery, run_slot)
        except (grpc.aio.AioRpcError, GatewayLost) as exc:
            if isinstance(exc, grpc.aio.AioRpcError):
                self._token.check(exc)
            log.warning(
                "gateway_lost",
                job_id=job.job_id,
                tenant=job.tenant_id,
                error=str(exc).splitlines()[0][:300],
            )
            settled = False
        except Exception:
            # A broken broker channel (the ack failed) lands here too: the broker redelivers.
            log.exception("delivery_failed", job_id=job.job_id, tenant=job.tenant_id)
            settled = False
        if not settled:
            # Back to the queue: the next delivery's claim decides (it may find the job done).
            metrics.DELIVERIES_RETURNED.inc()
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)

    async def _run(self, job: JobMessage, delivery: Delivery, run_slot: RunSlot) -> bool:
        """True when the message is settled (acked or rejected)."""
        message = delivery.message
        attempt = _Attempt(job, self._worker_id, self._gateway, self._token)
        try:
            try:
                assignment = await attempt.claim(self._claim(job, message))
                metrics.CLAIM_WAIT_SECONDS.observe(time.monotonic() - delivery.received_at)
                if assignment is None:
                    await self._settle_refused(job, message, attempt.refusal)
                    return True
                self._running[job.job_id] = attempt.cancelled
                if self._abandoning:
                    attempt.cancelled.set()
                metrics.RUNNING.inc()
                try:
                    outcome = await attempt.run(self._sandbox, assignment)
                finally:
                    metrics.RUNNING.dec()
                _count_run(assignment.language, outcome)
                run_slot.release(outcome.usage.wall_time_ms / 1000)
            finally:
                run_slot.release()
            if self._abandoning:
                raise GatewayLost("the worker is shutting down; the job goes back to the queue")
            await attempt.report(outcome)
            await message.ack()
            return True
        finally:
            self._running.pop(job.job_id, None)
            await attempt.close()

    def _claim(self, job: JobMessage, message: AbstractIncomingMessage) -> gw.Claim:
        headers = message.headers or {}
        return gw.Claim(
            job_id=job.job_id,
            worker_id=self._worker_id,
            redelivered=bool(message.redelivered),
            replays=int(headers.get(REPLAYS_HEADER, 0) or 0),
            replayed_by=str(headers.get(REPLAYED_BY_HEADER, "") or ""),
        )

    @staticmethod
    async def _settle_refused(
        job: JobMessage, message: AbstractIncomingMessage, refusal: gw.Refusal
    ) -> None:
        log.info(
            "claim_refused",
            job_id=job.job_id,
            tenant=job.tenant_id,
            reason=gw.RefusalReason.Name(refusal.reason),
            detail=refusal.detail,
        )
        metrics.CLAIMS_REFUSED.labels(gw.RefusalReason.Name(refusal.reason)).inc()
        if refusal.reason == gw.REFUSAL_REASON_EXHAUSTED:
            await message.reject(requeue=False)
        else:
            await message.ack()


def _count_run(language: str, outcome: JobOutcome) -> None:
    metrics.RUNS.labels(language, outcome.verdict.value).inc()
    metrics.RUN_SECONDS.labels(language).observe(outcome.usage.wall_time_ms / 1000)
    metrics.RUN_CPU_SECONDS.labels(language).inc(outcome.usage.cpu_time_ms / 1000)


class _Attempt:
    """One attempt at a job over a RunJob stream: the claim, the run with its output,
    heartbeats and cancels, then the result and its acceptance.

    When the stream breaks while the attempt runs (its control plane went away), the run
    goes on and the attempt resumes over a new stream, which the channel opens to a gateway
    that is still there: the store lets it go on while the attempt is current and leased
    to this worker, says how much of each output stream it holds, and the rest is sent
    again, once. Only when no gateway takes it back is the run stopped (it runs again
    elsewhere, as when a worker dies)."""

    def __init__(self, job: JobMessage, worker_id: str,
                 gateway: gw_grpc.WorkerGatewayStub, token: TokenWatch) -> None:
        self._job = job
        self._token = token
        self._worker_id = worker_id
        self._gateway = gateway
        self._call: grpc.aio.StreamStreamCall = gateway.RunJob()
        # Held for every write and while a resumed stream replaces a broken one, so that
        # what is recorded as sent and what a new gateway is sent never overlap.
        self._write_lock = asyncio.Lock()
        self.cancelled = asyncio.Event()
        self._gateway_lost = asyncio.Event()
        self._result_accepted = asyncio.Event()
        self.refusal = gw.Refusal()
        self._started = time.monotonic()
        self._attempt = 0
        self._language = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._resuming: asyncio.Task[None] | None = None
        # Everything sent of each output stream (the sandbox bounds it by the job's output
        # limit), and the result once reported: a resumed stream sends what was lost.
        self._sent = {pb.OUTPUT_STREAM_STDOUT: bytearray(), pb.OUTPUT_STREAM_STDERR: bytearray()}
        self._cases: list[pb.TestCaseResult] = []  # every test case result sent, likewise
        self._result: pb.Result | None = None
        self.stdin = LiveStdin(job.job_id)

    async def claim(self, claim: gw.Claim) -> gw.Assignment | None:
        """The assignment, or None when the gateway refused (see `refusal`)."""
        try:
            await self._call.write(gw.RunJobRequest(claim=claim))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            # The gateway may end the stream before the claim is out (a refused token): the
            # read below raises with its status, not the write's bare INTERNAL.
            pass
        first = await self._call.read()
        if first is grpc.aio.EOF:
            raise GatewayLost("the gateway closed the stream before answering the claim")
        if first.HasField("refusal"):
            self.refusal = first.refusal
            return None
        return first.assignment

    async def run(self, sandbox: SandboxPool, assignment: gw.Assignment) -> JobOutcome:
        self._started = time.monotonic()
        self._attempt = assignment.attempt
        self._language = assignment.language
        interval = max(assignment.heartbeat_interval_ms, 100) / 1000
        self._tasks = [
            asyncio.create_task(self._read_commands(self._call)),
            asyncio.create_task(self._heartbeat(interval)),
        ]
        if assignment.interactive:
            batcher = OutputBatcher(self._send_output, delay_s=INTERACTIVE_OUTPUT_WINDOW_S,
                                    quiet_at_once=True)
            self.stdin.on_input = batcher.expect_answer
        else:
            batcher = OutputBatcher(self._send_output)
        outcome = await sandbox.run_job(job_spec(assignment, self.stdin.chunks()), batcher.add,
                                        self.cancelled, on_case=self._send_case)
        await batcher.close()
        return outcome

    async def report(self, outcome: JobOutcome) -> None:
        """Returns once the gateway has stored the result; raises GatewayLost otherwise."""
        if self._gateway_lost.is_set():
            raise GatewayLost("the gateway stream ended while the job ran")
        self._result = result_message(outcome)
        await self._send(gw.RunJobRequest(result=self._result))
        # Accepted on this stream, or on a resumed one if this one breaks first.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RESULT_ACK_TIMEOUT_S):
                await _first_set(self._result_accepted, self._gateway_lost)
        if not self._result_accepted.is_set():
            raise GatewayLost("the gateway did not confirm the result")
        log.info(
            "job_reported",
            job_id=self._job.job_id,
            tenant=self._job.tenant_id,
            attempt=self._attempt,
            verdict=outcome.verdict.value,
            seconds=round(time.monotonic() - self._started, 3),
        )

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._resuming] if self._resuming else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._call.cancel()

    async def _send(self, request: gw.RunJobRequest) -> None:
        """Writes on the current stream. A broken stream is resumed, not an error here:
        output is recorded before it is written and the result is kept, so the resumed
        stream sends whatever this write lost."""
        if self._gateway_lost.is_set():
            raise GatewayLost("the gateway stream is gone")
        async with self._write_lock:
            if request.HasField("output"):
                self._sent[request.output.stream] += request.output.data
            elif request.HasField("test_case_result"):
                self._cases.append(request.test_case_result)
            call = self._call
            try:
                await call.write(request)
                return
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass
        self._stream_broke(call)

    async def _send_output(self, stream: OutputStream, data: bytes) -> None:
        # Never raises into the sandbox: a lost attempt stops the run through `cancelled`.
        with contextlib.suppress(GatewayLost):
            await self._send(
                gw.RunJobRequest(output=pb.OutputChunk(stream=STREAMS[stream], data=data))
            )

    async def _send_case(self, case: TestCaseOutcome) -> None:
        metrics.TEST_CASES.labels(self._language, case.outcome.verdict.value).inc()
        with contextlib.suppress(GatewayLost):
            await self._send(gw.RunJobRequest(test_case_result=test_case_message(case)))

    async def _read_commands(self, call: grpc.aio.StreamStreamCall) -> None:
        job = self._job
        try:
            while True:
                command = await call.read()
                if command is grpc.aio.EOF:
                    break
                if command.HasField("stdin"):
                    self.stdin.offer(command.stdin)
                elif command.HasField("cancel"):
                    log.info("cancel_received", job_id=job.job_id, tenant=job.tenant_id)
                    self.cancelled.set()
                elif command.HasField("result_accepted"):
                    self._result_accepted.set()
                    return
        except grpc.aio.AioRpcError as exc:
            self._token.check(exc)  # revoked mid-run: the worker stops after this job
            log.warning(
                "gateway_stream_failed",
                job_id=job.job_id,
                tenant=job.tenant_id,
                code=exc.code().name,
                detail=exc.details(),
            )
            if exc.code() not in RESUMABLE_CODES and call is self._call:
                # The gateway ended the attempt (a stale report refused, ...): someone else
                # may run the job now, so this attempt must stop at once.
                self._lose()
                return
        self._stream_broke(call)

    def _stream_broke(self, call: grpc.aio.StreamStreamCall) -> None:
        """`call` broke: resume on a new stream, unless it was replaced already or the
        attempt has nothing left to say."""
        if (call is not self._call or self._result_accepted.is_set()
                or self._gateway_lost.is_set()):
            return
        if self._resuming is None or self._resuming.done():
            self._resuming = asyncio.create_task(self._resume())

    def _lose(self) -> None:
        self._gateway_lost.set()
        self.cancelled.set()

    async def _resume(self) -> None:
        job = self._job
        log.warning("gateway_stream_broken_resuming", job_id=job.job_id, tenant=job.tenant_id,
                    attempt=self._attempt)
        for delay in RESUME_DELAYS_S:
            await asyncio.sleep(delay)
            if self._gateway_lost.is_set() or self._result_accepted.is_set():
                return
            # Asked each time: the broken stream may have delivered more stdin meanwhile.
            claim = gw.Claim(job_id=job.job_id, worker_id=self._worker_id,
                             resume_attempt=self._attempt, stdin_bytes=self.stdin.received)
            call = self._gateway.RunJob()
            try:
                await call.write(gw.RunJobRequest(claim=claim))
                first = await call.read()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
                call.cancel()
                log.info("resume_failed", job_id=job.job_id, error=str(exc).splitlines()[0])
                if isinstance(exc, grpc.aio.AioRpcError) and self._token.check(exc):
                    break  # the token was revoked: no gateway takes this attempt back
                continue
            kind = None if first is grpc.aio.EOF else first.WhichOneof("command")
            if kind == "result_accepted":  # the result was stored before the stream broke
                call.cancel()
                self._result_accepted.set()
                metrics.GATEWAY_RESUMES.labels("accepted").inc()
                return
            if kind != "resumed":
                call.cancel()
                if kind == "refusal":
                    log.warning("resume_refused", job_id=job.job_id, tenant=job.tenant_id,
                                detail=first.refusal.detail)
                    break
                continue
            async with self._write_lock:
                broken, self._call = self._call, call
                broken.cancel()
                stored = {pb.OUTPUT_STREAM_STDOUT: first.resumed.stdout_bytes,
                          pb.OUTPUT_STREAM_STDERR: first.resumed.stderr_bytes}
                try:
                    for stream, sent in self._sent.items():
                        for at in range(stored[stream], len(sent), RESEND_CHUNK_BYTES):
                            await call.write(gw.RunJobRequest(output=pb.OutputChunk(
                                stream=stream, data=bytes(sent[at:at + RESEND_CHUNK_BYTES]))))
                    for case in self._cases[first.resumed.test_case_results:]:
                        await call.write(gw.RunJobRequest(test_case_result=case))
                    if self._result is not None:
                        await call.write(gw.RunJobRequest(result=self._result))
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    continue  # broke again: the next gateway, if any
            self._tasks.append(asyncio.create_task(self._read_commands(call)))
            metrics.GATEWAY_RESUMES.labels("resumed").inc()
            log.info("gateway_stream_resumed", job_id=job.job_id, tenant=job.tenant_id,
                     attempt=self._attempt, resent_from=list(stored.values()))
            return
        log.warning("attempt_lost", job_id=job.job_id, tenant=job.tenant_id,
                    attempt=self._attempt)
        metrics.GATEWAY_RESUMES.labels("lost").inc()
        self._lose()

    async def _heartbeat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._send(gw.RunJobRequest(heartbeat=gw.Heartbeat()))


async def _first_set(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
