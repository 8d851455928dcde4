"""Publishes job messages with publisher confirms; a publish either is confirmed or raises."""

from __future__ import annotations

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from sluice.amqp import connect, queue_depth
from sluice.topology import (
    DeclaredTopology,
    JobMessage,
    Topology,
    declare_topology,
    job_properties,
)


class BrokerUnavailable(RuntimeError):
    """The broker did not confirm the message: it must be treated as not sent."""


class JobPublisher:
    def __init__(self, amqp_url: str, topology: Topology, *, confirm_timeout_s: float = 5.0):
        self._url = amqp_url
        self._topology = topology
        self._timeout = confirm_timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._declared: DeclaredTopology | None = None

    async def start(self) -> None:
        self._connection = await connect(self._url, name="sluice-control-plane")
        # Confirms are pipelined: many publishes may await their own ack at once.
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._declared = await declare_topology(self._channel, self._topology)

    @property
    def declared(self) -> DeclaredTopology:
        assert self._declared is not None, "JobPublisher.start() was not awaited"
        return self._declared

    async def publish(self, job: JobMessage, *, delay_ms: int | None = None,
                      headers: dict[str, object] | None = None) -> None:
        """To the job's shard, or through the retry tier `delay_ms` first."""
        declared = self.declared
        exchange = (declared.jobs_exchange if delay_ms is None
                    else declared.retry_exchanges[delay_ms])
        await self._publish(exchange, job, headers)

    async def publish_dead_letter(self, job: JobMessage, *, reason: str) -> None:
        """Straight to the dead-letter queue, for a job the platform gave up on itself."""
        await self._publish(self.declared.dead_letter_exchange, job,
                            {"x-sluice-dead-reason": reason})

    async def _publish(self, exchange: AbstractExchange, job: JobMessage,
                       headers: dict[str, object] | None) -> None:
        # The shard key travels with the message through retry and dead-letter queues.
        routing_key = self._topology.shard_key(self._topology.shard_of(job.tenant_id))
        channel = self._channel
        assert channel is not None
        try:
            # Checked first, as aio-pika's Exchange.publish does: while the robust connection
            # is down, get_underlay_channel() would wait for it to come back, with no timeout;
            # a closed channel must answer BrokerUnavailable at once instead.
            if channel.is_closed:
                raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
            underlay = await channel.get_underlay_channel()
            # Straight onto the aiormq channel the robust channel currently holds (it is
            # replaced on reconnect), with the properties built directly: aio-pika's
            # Message and Exchange wrappers cost a good share of SubmitJob's CPU for nothing
            # here. The channel was opened with confirms and on_return_raises, so aiormq
            # itself raises on a nack (DeliveryError) or a return (PublishError): mandatory
            # makes an unroutable message an error, not a silent drop.
            await underlay.basic_publish(
                job.encode(), exchange=exchange.name, routing_key=routing_key,
                properties=job_properties(job, headers=headers), mandatory=True,
                timeout=self._timeout,
            )
        except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailable(f"{exc.__class__.__name__}: {exc}") from exc

    async def dead_letter_depths(self) -> tuple[int, int]:
        """Messages in the dead-letter and parking queues, asked of the broker now (a
        passive declare), never a count remembered from start-up."""
        assert self._channel is not None
        return (await queue_depth(self._channel, self._topology.dead_letter_queue),
                await queue_depth(self._channel, self._topology.parked_queue))

    async def purge_parked(self) -> int:
        result = await self.declared.parked_queue.purge()
        return result.message_count or 0

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
