"""A stopping worker hands every message it holds back to the broker at once, including one
the broker delivers after the stop (it may, until it confirms the consumer's cancel)."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika

from execution_plane.consumer import JobConsumer
from execution_plane.fair_scheduler import FairScheduler
from execution_plane.job_runner import Delivery
from sluice.topology import JobMessage, Topology, declare_topology
from tests.support.broker import RunVhost, ready_messages


async def ready_within(amqp_url: str, queue: str, expected: int, within_s: float = 10) -> int:
    deadline = time.monotonic() + within_s
    while (ready := await ready_messages(amqp_url, queue)) != expected:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return ready


async def test_a_closed_scheduler_takes_nothing_and_returns_what_waited() -> None:
    scheduler: FairScheduler[str] = FairScheduler(2)
    assert await scheduler.put(0, "a") and await scheduler.put(1, "b")
    assert sorted(scheduler.close()) == ["a", "b"]
    assert await scheduler.put(0, "late") is False
    assert len(scheduler) == 0


async def test_stop_hands_back_held_messages_and_late_deliveries(vhost: RunVhost) -> None:
    amqp_url = vhost.amqp_url()
    topology = Topology(f"consumer-{uuid.uuid4().hex[:8]}")
    queue = topology.work_queue(0)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await declare_topology(channel, topology)
        for number in range(3):
            await channel.default_exchange.publish(
                aio_pika.Message(JobMessage(f"job-{number}", "tenant").encode()),
                routing_key=queue)
        scheduler: FairScheduler[Delivery] = FairScheduler(topology.shard_count)
        consumer = JobConsumer(channel, declared, scheduler, prefetch=2)
        await consumer.start()
        deadline = time.monotonic() + 10
        while len(scheduler) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(scheduler) == 2  # the prefetch: held here, unacked
        # The third, taken on the same channel: it stands for one the broker delivers
        # between the consumer's cancel and its confirmation.
        late = await declared.work_queues[0].get(no_ack=False, timeout=10)

        await consumer.stop()
        assert len(scheduler) == 0
        await consumer._receiver(0)(late)

        # All three are ready again for other workers while this connection stays open.
        assert await ready_within(amqp_url, queue, 3) == 3
    finally:
        await connection.close()
