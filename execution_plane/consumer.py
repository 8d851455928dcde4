"""Consumes every shard queue and feeds the fair scheduler; acks are the runner's business."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from execution_plane import metrics
from execution_plane.fair_scheduler import FairScheduler
from execution_plane.job_runner import Delivery
from sluice.topology import DeclaredTopology


class JobConsumer:
    def __init__(
        self,
        channel: AbstractChannel,
        declared: DeclaredTopology,
        scheduler: FairScheduler[Delivery],
        prefetch: int,
    ) -> None:
        self._channel = channel
        self._declared = declared
        self._scheduler = scheduler
        self._prefetch = prefetch
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._paused = False

    @property
    def consuming(self) -> bool:
        return bool(self._consumers)

    async def start(self, prefetch: int | None = None) -> None:
        """Starts consuming (again, after pause(); with a new prefetch when given)."""
        self._prefetch = prefetch or self._prefetch
        self._paused = False
        # Per consumer (global_=False): each shard may hold up to `prefetch` messages here,
        # so a busy shard cannot take every place and a quiet one is always next in line.
        # It applies to consumers started after it, hence a new prefetch means a restart.
        await self._channel.set_qos(prefetch_count=self._prefetch, global_=False)
        for shard, queue in enumerate(self._declared.work_queues):
            tag = await queue.consume(self._receiver(shard))
            self._consumers.append((queue, tag))

    async def pause(self) -> int:
        """A drain: takes no more messages and hands those not yet started back to the
        broker, for other workers; start() takes them again. Returns how many went back."""
        self._paused = True
        for queue, tag in self._consumers:
            await queue.cancel(tag)
        self._consumers.clear()
        waiting = self._scheduler.take_waiting()
        for delivery in waiting:
            metrics.DELIVERIES_RETURNED.inc()
            await delivery.message.nack(requeue=True)
        return len(waiting)

    def _receiver(self, shard: int) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def receive(message: AbstractIncomingMessage) -> None:
            if self._paused or not await self._scheduler.put(
                    shard, Delivery(message, time.monotonic())):
                # Delivered after pause() or stop() (the broker may send until it confirms
                # the cancel): back to the queue now, for another worker, rather
                # than held unacked until this worker's connection closes.
                metrics.DELIVERIES_RETURNED.inc()
                await message.nack(requeue=True)

        return receive

    async def stop(self) -> None:
        """Takes no more messages; those not yet started go back to the broker, and so does
        any that arrives later."""
        for queue, tag in self._consumers:
            await queue.cancel(tag)
        self._consumers.clear()
        for delivery in self._scheduler.close():
            metrics.DELIVERIES_RETURNED.inc()
            await delivery.message.nack(requeue=True)
