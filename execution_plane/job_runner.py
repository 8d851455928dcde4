"""Runs one delivered job: claim it at the gateway, run it in the sandbox, report, ack.

The message is acked only after the gateway has stored the result, so a worker that dies at
any point leaves the message to be delivered again; the gateway's claim then decides
whether the job still needs running.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import grpc
from aio_pika.abc import AbstractIncomingMessage

from execution_plane.output_batcher import OutputBatcher
from execution_plane.proto_mapping import STREAMS, job_spec, result_message
from execution_plane.sandbox import SandboxPool
from execution_plane.sandbox.contract import OutputStream
from sluice.observability import get_logger
from sluice.topology import REPLAYED_BY_HEADER, JobMessage
from sluice.v1 import job_pb2 as pb
from sluice.v1 import worker_gateway_pb2 as gw
from sluice.v1 import worker_gateway_pb2_grpc as gw_grpc

log = get_logger(__name__)
REPLAYS_HEADER = "x-sluice-replays"
RESULT_ACK_TIMEOUT_S = 30.0


class GatewayLost(RuntimeError):
    """The RunJob stream broke: this worker no longer holds the job."""


@dataclass
class Delivery:
    message: AbstractIncomingMessage
    received_at: float


class JobRunner:
    def __init__(
        self, worker_id: str, gateway: gw_grpc.WorkerGatewayStub, sandbox: SandboxPool
    ) -> None:
        self._worker_id = worker_id
        self._gateway = gateway
        self._sandbox = sandbox
        self._running: dict[str, asyncio.Event] = {}  # job id -> its cancel event
        self._abandoning = False

    def abandon_all(self) -> None:
        """Shutdown past its grace: stop every run and hand the jobs back unreported, so
        another worker runs them again (a shutdown is not the caller's cancel)."""
        self._abandoning = True
        for cancelled in self._running.values():
            cancelled.set()

    async def handle(self, delivery: Delivery) -> None:
        message = delivery.message
        try:
            job = JobMessage.decode(message.body)
        except (ValueError, KeyError, TypeError) as exc:
            # Poison: no redelivery can fix it; the broker dead-letters it with its reason.
            log.error("undecodable_message", error=str(exc), message_id=message.message_id)
            await message.reject(requeue=False)
            return
        headers = message.headers or {}
        replays = int(headers.get(REPLAYS_HEADER, 0) or 0)
        replayed_by = str(headers.get(REPLAYED_BY_HEADER, "") or "")
        try:
            settled = await self._run(job, message, replays, replayed_by)
        except (grpc.aio.AioRpcError, GatewayLost) as exc:
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
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)

    async def _run(self, job: JobMessage, message: AbstractIncomingMessage, replays: int,
                   replayed_by: str) -> bool:
        """True when the message is settled (acked or rejected)."""
        call = self._gateway.RunJob()
        try:
            await call.write(
                gw.RunJobRequest(
                    claim=gw.Claim(
                        job_id=job.job_id,
                        worker_id=self._worker_id,
                        redelivered=bool(message.redelivered),
                        replays=replays,
                        replayed_by=replayed_by,
                    )
                )
            )
            first = await call.read()
            if first is grpc.aio.EOF:
                raise GatewayLost("the gateway closed the stream before answering the claim")
            if first.HasField("refusal"):
                reason = first.refusal.reason
                log.info(
                    "claim_refused",
                    job_id=job.job_id,
                    tenant=job.tenant_id,
                    reason=gw.RefusalReason.Name(reason),
                    detail=first.refusal.detail,
                )
                if reason == gw.REFUSAL_REASON_EXHAUSTED:
                    await message.reject(requeue=False)
                else:
                    await message.ack()
                return True
            await self._run_assignment(first.assignment, job, call)
            await message.ack()
            return True
        finally:
            call.cancel()

    async def _run_assignment(
        self, assignment: gw.Assignment, job: JobMessage, call: grpc.aio.StreamStreamCall
    ) -> None:
        started = time.monotonic()
        write_lock = asyncio.Lock()
        cancelled = asyncio.Event()
        gateway_lost = asyncio.Event()
        result_accepted = asyncio.Event()

        async def write(request: gw.RunJobRequest) -> None:
            if gateway_lost.is_set():
                raise GatewayLost("the gateway stream is gone")
            async with write_lock:
                await call.write(request)

        async def send_output(stream: OutputStream, data: bytes) -> None:
            # Never raises into the sandbox: a lost stream stops the run through `cancelled`.
            try:
                await write(
                    gw.RunJobRequest(output=pb.OutputChunk(stream=STREAMS[stream], data=data))
                )
            except (grpc.aio.AioRpcError, GatewayLost):
                gateway_lost.set()
                cancelled.set()

        async def read_commands() -> None:
            try:
                while True:
                    command = await call.read()
                    if command is grpc.aio.EOF:
                        break
                    if command.HasField("cancel"):
                        log.info("cancel_received", job_id=job.job_id, tenant=job.tenant_id)
                        cancelled.set()
                    elif command.HasField("result_accepted"):
                        result_accepted.set()
                        return
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "gateway_stream_failed",
                    job_id=job.job_id,
                    tenant=job.tenant_id,
                    code=exc.code().name,
                    detail=exc.details(),
                )
            # The stream ended without accepting a result: someone else may run the job
            # now, so this attempt must stop at once.
            gateway_lost.set()
            cancelled.set()

        async def heartbeat() -> None:
            interval = max(assignment.heartbeat_interval_ms, 100) / 1000
            while True:
                await asyncio.sleep(interval)
                await write(gw.RunJobRequest(heartbeat=gw.Heartbeat()))

        batcher = OutputBatcher(send_output)
        reader = asyncio.create_task(read_commands())
        beat = asyncio.create_task(heartbeat())
        self._running[job.job_id] = cancelled
        try:
            if self._abandoning:
                cancelled.set()
            outcome = await self._sandbox.run_job(job_spec(assignment), batcher.add, cancelled)
            await batcher.close()
            if gateway_lost.is_set():
                raise GatewayLost("the gateway stream ended while the job ran")
            if self._abandoning:
                raise GatewayLost("the worker is shutting down; the job goes back to the queue")
            await write(gw.RunJobRequest(result=result_message(outcome)))
            # The reader ends on the acceptance, or when the stream breaks without one.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESULT_ACK_TIMEOUT_S):
                    await asyncio.shield(reader)
            if not result_accepted.is_set():
                raise GatewayLost("the gateway did not confirm the result")
            log.info(
                "job_reported",
                job_id=job.job_id,
                tenant=job.tenant_id,
                attempt=assignment.attempt,
                verdict=outcome.verdict.value,
                seconds=round(time.monotonic() - started, 3),
            )
        finally:
            self._running.pop(job.job_id, None)
            beat.cancel()
            reader.cancel()
            await asyncio.gather(beat, reader, return_exceptions=True)
