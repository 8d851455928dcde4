"""A RabbitMQ vhost of the test run's own, so runs never see each other's messages."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import aio_pika

from sluice.amqp import queue_depth


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
