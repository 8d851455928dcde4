"""Connecting to RabbitMQ the same way in every service."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from yarl import URL


class BrokerUnreachable(RuntimeError):
    pass


def redact(url: str) -> str:
    return str(URL(url).with_password("***")) if URL(url).password else url


async def connect(
    url: str, *, name: str, connect_timeout_s: float = 15.0
) -> AbstractRobustConnection:
    """A robust connection: it reconnects by itself and restores channels and consumers.
    A busy broker may take seconds to accept a connection (seen: 10 s on a loaded 2-core
    machine); a service that gave up sooner would not start at all."""
    try:
        # Reconnect after 1 s (aio-pika's default is 5 s): a broker restart should cost
        # seconds of UNAVAILABLE, not a multiple of them.
        return await aio_pika.connect_robust(
            url, timeout=connect_timeout_s, reconnect_interval=1.0,
            client_properties={"connection_name": name},
        )
    except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as exc:
        raise BrokerUnreachable(
            f"cannot reach RabbitMQ at {redact(url)} ({exc.__class__.__name__}: {exc}). "
            "Start it with `rabbitmq-server -detached` (Debian package rabbitmq-server), "
            "or point SLUICE_AMQP_URL at a running broker."
        ) from exc


async def queue_depth(channel: AbstractChannel, queue_name: str) -> int:
    """Messages ready in the queue, asked of the broker now.

    Not `channel.declare_queue(name, passive=True)`: on a robust channel aio-pika answers
    that from the queue it remembers declaring, with the count of back then.
    """
    underlay = await channel.get_underlay_channel()
    declare_ok = await underlay.queue_declare(queue_name, passive=True)
    return int(declare_ok.message_count or 0)
