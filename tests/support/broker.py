"""A RabbitMQ vhost of the test run's own, so runs never see each other's messages."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import aio_pika

from sluice.amqp import queue_depth
from sluice.topology import RETRY_DELAYS_MS, Topology


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


class RunVhost:
    def __init__(self) -> None:
        if shutil.which("rabbitmqctl") is None:
            raise RuntimeError("rabbitmqctl not found: run deploy/local/bootstrap.sh first")
        self.name = f"sluice-test-{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> RunVhost:
        _rabbitmqctl("add_vhost", self.name)
        _rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self

    def __exit__(self, *exc: object) -> None:
        _rabbitmqctl("delete_vhost", self.name)

    def amqp_url(self, port: int = 5672) -> str:
        return f"amqp://guest:guest@127.0.0.1:{port}/{self.name}"


async def ready_messages(amqp_url: str, queue: str) -> int:
    """Messages ready (not held by any consumer) in the queue, asked of the broker now."""
    connection = await aio_pika.connect(amqp_url)
    try:
        return await queue_depth(await connection.channel(), queue)
    finally:
        await connection.close()


async def delete_topology(amqp_url: str, prefix: str) -> None:
    """Deletes a stopped platform's queues and exchanges. A run makes dozens of platforms,
    each with 13 quorum queues, and the broker's file descriptors (1,024 on a stock Debian
    service) run out long before the run's vhost is deleted at its end: then the broker
    refuses connections and every later test fails for it."""
    topology = Topology(prefix)
    queues = [topology.dead_letter_queue, topology.parked_queue,
              *(topology.work_queue(shard) for shard in range(topology.shard_count)),
              *(topology.retry_queue(delay) for delay in RETRY_DELAYS_MS)]
    exchanges = [topology.jobs_exchange, topology.dead_letter_exchange,
                 topology.parking_exchange,
                 *(topology.retry_exchange(delay) for delay in RETRY_DELAYS_MS)]
    connection = await aio_pika.connect(amqp_url, timeout=10)
    try:
        channel = await connection.channel()
        underlay = await channel.get_underlay_channel()
        for queue in queues:
            await underlay.queue_delete(queue)
        for exchange in exchanges:
            await underlay.exchange_delete(exchange)
    finally:
        await connection.close()
