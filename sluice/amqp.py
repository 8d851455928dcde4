"""Connecting to RabbitMQ the same way in every service."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from yarl import URL


class BrokerUnreachable(RuntimeError):
    pass


def redact(url: str) -> str:
    return str(URL(url).with_password("***")) if URL(url).password else url


async def connect(
    url: str, *, name: str, connect_timeout_s: float = 5.0
) -> AbstractRobustConnection:
    """A robust connection: it reconnects by itself and restores channels and consumers."""
    try:
        return await aio_pika.connect_robust(
            url, timeout=connect_timeout_s, client_properties={"connection_name": name}
        )
    except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as exc:
        raise BrokerUnreachable(
            f"cannot reach RabbitMQ at {redact(url)} ({exc.__class__.__name__}: {exc}). "
            "Start it with `rabbitmq-server -detached` (Debian package rabbitmq-server), "
            "or point SLUICE_AMQP_URL at a running broker."
        ) from exc
