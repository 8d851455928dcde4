"""The JSON messages a sandbox process (the slot's runner, a sandbox's init) sends the
service over its socket, one datagram each, read into a queue as they come."""

from __future__ import annotations

import asyncio
import json
import socket


async def read_messages(sock: socket.socket, messages: asyncio.Queue[dict[str, object]],
                        max_bytes: int) -> None:
    """Queues each message until the socket ends or breaks (or a message is not JSON: the
    peer is not to be trusted further); the caller then marks its peer gone."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await loop.sock_recv(sock, max_bytes)
            if not data:
                return
            await messages.put(json.loads(data))
    except (OSError, ValueError):
        return
