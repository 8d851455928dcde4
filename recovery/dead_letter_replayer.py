"""Replays dead letters: each goes back to its shard while it has replay budget, else parks.

A sweep takes at most the messages that were in the dead-letter queue when it began, so a
message it sends round again cannot keep it busy. Every action is one structured log line
(the audit record) with the job and tenant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from sluice.amqp import queue_depth
from sluice.observability import get_logger
from sluice.topology import REPLAYED_BY_HEADER, DeclaredTopology, JobMessage, job_message
from sluice.v1 import worker_gateway_pb2 as gw
from sluice.v1 import worker_gateway_pb2_grpc as gw_grpc

log = get_logger(__name__)
REPLAYS_HEADER = "x-sluice-replays"
DEAD_REASON_HEADER = "x-sluice-dead-reason"


@dataclass
class SweepReport:
    depth_before: int = 0
    replayed: int = 0
    parked: int = 0
    deferred: int = 0
    dropped: int = 0  # stale letters: the job finished or was replayed since


def death_reason(message: AbstractIncomingMessage) -> str:
    headers = message.headers or {}
    if headers.get(DEAD_REASON_HEADER):
        return str(headers[DEAD_REASON_HEADER])
    deaths = headers.get("x-death") or []
    if deaths and isinstance(deaths, list | tuple):
        first = deaths[0]
        return f"{first.get('reason', 'unknown')} from {first.get('queue', '?')}"
    return "unknown"


def shard_routing_key(message: AbstractIncomingMessage) -> str:
    deaths = (message.headers or {}).get("x-death") or []
    for death in deaths:
        keys = death.get("routing-keys") or []
        if keys:
            return str(keys[0])
    return message.routing_key or ""


class DeadLetterReplayer:
    def __init__(self, channel: AbstractChannel, declared: DeclaredTopology,
                 gateway: gw_grpc.WorkerGatewayStub, *, replay_budget: int,
                 base_backoff_s: float = 0.0) -> None:
        self._channel = channel
        self._declared = declared
        self._gateway = gateway
        self._budget = replay_budget
        self._base_backoff_s = base_backoff_s

    async def depth(self) -> int:
        """Read from the broker now, not from the declaration remembered at start."""
        return await queue_depth(self._channel, self._declared.topology.dead_letter_queue)

    async def sweep(self, *, max_messages: int = 1000) -> SweepReport:
        report = SweepReport(depth_before=await self.depth())
        for _ in range(min(report.depth_before, max_messages)):
            message = await self._declared.dead_letter_queue.get(no_ack=False, fail=False)
            if message is None:
                break
            try:
                await self._handle(message, report)
            except BaseException:
                # Unsettled, it stays a dead letter for the next sweep.
                await message.nack(requeue=True)
                raise
        return report

    async def _report(self, job: JobMessage, replays: int, reason: str, *,
                      parked: bool) -> bool:
        response = await self._gateway.ReportDeadLetter(
            gw.ReportDeadLetterRequest(job_id=job.job_id, replays=replays, reason=reason,
                                       parked=parked), timeout=10)
        return response.current

    async def _handle(self, message: AbstractIncomingMessage, report: SweepReport) -> None:
        headers = dict(message.headers or {})
        replays = int(headers.get(REPLAYS_HEADER, 0) or 0)
        reason = death_reason(message)
        try:
            job = JobMessage.decode(message.body)
        except (ValueError, KeyError, TypeError):
            await self._park(message, headers, reason="undecodable message body", job=None)
            report.parked += 1
            return
        if not await self._report(job, replays, reason, parked=False):
            await message.ack()
            report.dropped += 1
            log.info("dead_letter_dropped", job_id=job.job_id, tenant=job.tenant_id,
                     reason="stale: the job finished or was replayed since", actor="recovery")
            return
        if replays >= self._budget:
            parked_reason = f"replay budget of {self._budget} used up; last: {reason}"
            await self._park(message, headers, job=job, reason=parked_reason)
            await self._report(job, replays, parked_reason, parked=True)
            report.parked += 1
            return
        wait_s = self._base_backoff_s * (2 ** replays)
        dead_at = float(headers.get("x-sluice-dead-at", 0) or 0) or time.time()
        if time.time() - dead_at < wait_s:
            # Not yet: to the back of the dead letters, for a later sweep.
            headers["x-sluice-dead-at"] = dead_at
            await self._declared.dead_letter_exchange.publish(
                job_message(job, headers=headers), routing_key=shard_routing_key(message))
            await message.ack()
            report.deferred += 1
            return
        headers[REPLAYS_HEADER] = replays + 1
        headers[REPLAYED_BY_HEADER] = "recovery"  # not an earlier replay's operator
        headers.pop("x-death", None)
        await self._declared.jobs_exchange.publish(
            job_message(job, headers=headers), routing_key=shard_routing_key(message),
            mandatory=True)
        await message.ack()
        report.replayed += 1
        log.info("dead_letter_replayed", job_id=job.job_id, tenant=job.tenant_id,
                 replay=replays + 1, reason=reason, actor="recovery")

    async def _park(self, message: AbstractIncomingMessage, headers: dict[str, object], *,
                    reason: str, job: JobMessage | None) -> None:
        headers["x-sluice-parked-reason"] = reason
        await self._declared.parking_exchange.publish(
            aio_pika.Message(body=message.body, headers=headers,
                             content_type=message.content_type, message_id=message.message_id,
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=message.routing_key or "")
        await message.ack()
        log.warning("dead_letter_parked", job_id=job.job_id if job else None,
                    tenant=job.tenant_id if job else None, reason=reason, actor="recovery")
