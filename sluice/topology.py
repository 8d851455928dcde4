"""The RabbitMQ topology: declared here only, idempotently, by every service at start.

    publish ──▶ {p}.jobs (direct) ──shard.N──▶ {p}.work.N   (quorum, one per shard)
                    ▲                               │ delivery limit / reject
                    │ TTL expires                   ▼
    {p}.retry.<tier> (fanout) ─▶ {p}.retry.<tier>  {p}.dead-letter (fanout) ─▶ {p}.dead
                                                                    recovery ──┤ over budget
                                                    {p}.parking (fanout) ─▶ {p}.parked

A job's message keeps its routing key (shard.N) through the retry and dead-letter queues,
because RabbitMQ dead-letters with the original routing key when none is set; so any of
them can send it back to the right shard. Tenants are hashed onto shards and workers drain
the shards round-robin, which is what keeps one tenant's backlog from starving another's.
Every queue argument is set explicitly: broker-version defaults have changed before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

# Backoff tiers for jobs the platform failed to run (not for a program's own failure).
RETRY_DELAYS_MS: tuple[int, ...] = (1_000, 5_000, 30_000)
SHARD_COUNT = 8


def retry_delay_ms(attempt: int) -> int:
    """Exponential by tier: after attempt 1 fails the first tier, and so on."""
    return RETRY_DELAYS_MS[min(max(attempt, 1), len(RETRY_DELAYS_MS)) - 1]
JOB_MESSAGE_TYPE = "sluice.job.v1"
# On a replayed job's message: the audit actor of the replay ("key:<id>" or "recovery").
REPLAYED_BY_HEADER = "x-sluice-replayed-by"


@dataclass(frozen=True)
class JobMessage:
    """The body of a job's message: just enough to claim it; the spec lives in the store."""

    job_id: str
    tenant_id: str

    def encode(self) -> bytes:
        return json.dumps({"job_id": self.job_id, "tenant_id": self.tenant_id}).encode()

    @classmethod
    def decode(cls, body: bytes) -> JobMessage:
        data = json.loads(body)
        return cls(job_id=str(data["job_id"]), tenant_id=str(data["tenant_id"]))


@dataclass(frozen=True)
class QueueRole:
    name: str
    kind: str  # "work", "retry", "dead_letter" or "parked"
    shard: int | None = None
    retry_delay_ms: int | None = None


@dataclass(frozen=True)
class Topology:
    prefix: str
    delivery_limit: int = 10
    shard_count: int = SHARD_COUNT

    @property
    def jobs_exchange(self) -> str:
        return f"{self.prefix}.jobs"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dead-letter"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def parking_exchange(self) -> str:
        return f"{self.prefix}.parking"

    @property
    def parked_queue(self) -> str:
        return f"{self.prefix}.parked"

    def work_queue(self, shard: int) -> str:
        return f"{self.prefix}.work.{shard}"

    def retry_exchange(self, delay_ms: int) -> str:
        return f"{self.prefix}.retry.{delay_ms}ms"

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.prefix}.retry.{delay_ms}ms"

    def queues(self) -> list[QueueRole]:
        """Every queue of the topology with its part in it, in a reading order: the work
        shards, the retry tiers, the dead letters, the parking lot."""
        return [
            *(QueueRole(self.work_queue(shard), "work", shard=shard)
              for shard in range(self.shard_count)),
            *(QueueRole(self.retry_queue(delay_ms), "retry", retry_delay_ms=delay_ms)
              for delay_ms in RETRY_DELAYS_MS),
            QueueRole(self.dead_letter_queue, "dead_letter"),
            QueueRole(self.parked_queue, "parked"),
        ]

    @staticmethod
    def shard_key(shard: int) -> str:
        return f"shard.{shard}"

    def shard_of(self, tenant_id: str) -> int:
        digest = hashlib.blake2s(tenant_id.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") % self.shard_count

    def work_queue_arguments(self) -> dict[str, object]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            # at-least-once dead-lettering needs reject-publish: the broker then holds a
            # message until the dead-letter queue confirms it, so dead-lettering loses none.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    @staticmethod
    def plain_quorum_arguments() -> dict[str, object]:
        return {"x-queue-type": "quorum", "x-overflow": "reject-publish"}

    def retry_queue_arguments(self, delay_ms: int) -> dict[str, object]:
        return {
            "x-queue-type": "quorum",
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": self.jobs_exchange,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }


@dataclass
class DeclaredTopology:
    topology: Topology
    jobs_exchange: AbstractExchange
    dead_letter_exchange: AbstractExchange
    parking_exchange: AbstractExchange
    retry_exchanges: dict[int, AbstractExchange]
    work_queues: list[AbstractQueue]
    dead_letter_queue: AbstractQueue
    parked_queue: AbstractQueue


async def declare_topology(channel: AbstractChannel, topology: Topology) -> DeclaredTopology:
    durable = {"durable": True}
    jobs = await channel.declare_exchange(
        topology.jobs_exchange, aio_pika.ExchangeType.DIRECT, **durable
    )
    dead_letter = await channel.declare_exchange(
        topology.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, **durable
    )
    parking = await channel.declare_exchange(
        topology.parking_exchange, aio_pika.ExchangeType.FANOUT, **durable
    )
    dead_queue = await channel.declare_queue(
        topology.dead_letter_queue, arguments=topology.plain_quorum_arguments(), **durable
    )
    await dead_queue.bind(dead_letter)
    parked_queue = await channel.declare_queue(
        topology.parked_queue, arguments=topology.plain_quorum_arguments(), **durable
    )
    await parked_queue.bind(parking)

    work_queues = []
    for shard in range(topology.shard_count):
        queue = await channel.declare_queue(
            topology.work_queue(shard), arguments=topology.work_queue_arguments(), **durable
        )
        await queue.bind(jobs, routing_key=topology.shard_key(shard))
        work_queues.append(queue)

    retry_exchanges = {}
    for delay_ms in RETRY_DELAYS_MS:
        exchange = await channel.declare_exchange(
            topology.retry_exchange(delay_ms), aio_pika.ExchangeType.FANOUT, **durable
        )
        queue = await channel.declare_queue(
            topology.retry_queue(delay_ms),
            arguments=topology.retry_queue_arguments(delay_ms),
            **durable,
        )
        await queue.bind(exchange)
        retry_exchanges[delay_ms] = exchange

    return DeclaredTopology(
        topology=topology,
        jobs_exchange=jobs,
        dead_letter_exchange=dead_letter,
        parking_exchange=parking,
        retry_exchanges=retry_exchanges,
        work_queues=work_queues,
        dead_letter_queue=dead_queue,
        parked_queue=parked_queue,
    )


def job_message(job: JobMessage, *, headers: dict[str, object] | None = None) -> aio_pika.Message:
    return aio_pika.Message(
        body=job.encode(),
        content_type="application/json",
        type=JOB_MESSAGE_TYPE,
        message_id=job.job_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={"tenant_id": job.tenant_id, **(headers or {})},
    )


def job_properties(job: JobMessage, *,
                   headers: dict[str, object] | None = None) -> aiormq.spec.Basic.Properties:
    """job_message's properties, built without an aio_pika.Message: for publishing on the
    aiormq channel directly (the control plane's hot path)."""
    return aiormq.spec.Basic.Properties(
        content_type="application/json",
        message_type=JOB_MESSAGE_TYPE,
        message_id=job.job_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
        priority=0,  # as aio_pika.Message sends it
        headers={"tenant_id": job.tenant_id, **(headers or {})},
    )
