"""Queue depths as the broker counts them now, from RabbitMQ's management HTTP API.

AMQP's passive declare tells ready messages only; how many are delivered and not yet acked
(jobs held by workers) only the management API knows. One GET lists the vhost's queues;
the names asked about are the topology's (sluice/topology.py), so nothing else on a shared
broker shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import aiohttp

from sluice.topology import QueueRole, Topology

_TIMEOUT = aiohttp.ClientTimeout(total=5)


class BrokerUnreachable(Exception):
    pass


@dataclass(frozen=True)
class QueueDepth:
    role: QueueRole
    ready: int
    unacked: int
    consumers: int
    exists: bool


class QueueDepths:
    def __init__(self, management_url: str, vhost: str, topology: Topology) -> None:
        parts = urlsplit(management_url)
        self._auth = aiohttp.BasicAuth(parts.username or "guest", parts.password or "guest")
        host = parts.hostname or "127.0.0.1"
        self._base = f"{parts.scheme}://{host}:{parts.port or 15672}"
        self._vhost = vhost
        self._topology = topology

    async def read(self) -> list[QueueDepth]:
        url = (f"{self._base}/api/queues/{quote(self._vhost, safe='')}"
               "?columns=name,messages_ready,messages_unacknowledged,consumers")
        try:
            async with aiohttp.ClientSession(timeout=_TIMEOUT) as session, \
                    session.get(url, auth=self._auth) as response:
                if response.status != 200:
                    raise BrokerUnreachable(
                        f"the RabbitMQ management API at {self._base} answered HTTP"
                        f" {response.status} (SLUICE_RABBITMQ_MANAGEMENT_URL; is the"
                        " rabbitmq_management plugin enabled?)")
                listed = await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BrokerUnreachable(
                f"the RabbitMQ management API at {self._base} did not answer ({exc!r};"
                " SLUICE_RABBITMQ_MANAGEMENT_URL)") from exc
        by_name = {queue["name"]: queue for queue in listed}
        depths = []
        for role in self._topology.queues():
            queue = by_name.get(role.name)
            depths.append(QueueDepth(
                role, ready=int((queue or {}).get("messages_ready") or 0),
                unacked=int((queue or {}).get("messages_unacknowledged") or 0),
                consumers=int((queue or {}).get("consumers") or 0), exists=queue is not None))
        return depths
