"""The operator's view of dead letters: list them, replay them, purge the parking lot.

Replaying publishes a fresh message carrying the next replay number; the worker's claim
then gives the job a new budget of attempts, and any older copy of its message still in a
queue is recognised as stale and dropped, so a replay never runs a job twice.
"""

from __future__ import annotations

from control_plane.job_publisher import JobPublisher
from control_plane.store.jobs import JobStore
from sluice.observability import get_logger
from sluice.topology import JobMessage
from sluice.v1 import admin_service_pb2 as adm

log = get_logger(__name__)
REPLAYS_HEADER = "x-sluice-replays"


class DeadLetterAdmin:
    def __init__(self, jobs: JobStore, publisher: JobPublisher) -> None:
        self._jobs = jobs
        self._publisher = publisher

    async def list_dead_letters(self, parked: bool | None, tenant_id: str
                                ) -> adm.ListDeadLettersResponse:
        rows = await self._jobs.dead_lettered(parked=parked, tenant_id=tenant_id)
        dead_depth, parked_depth = await self._publisher.dead_letter_depths()
        return adm.ListDeadLettersResponse(
            dead_letters=[adm.DeadLetter(job_id=job_id, tenant_id=tenant, replays=replays,
                                         reason=reason, parked=is_parked)
                          for job_id, tenant, replays, reason, is_parked in rows],
            dead_letter_queue_depth=dead_depth, parked_queue_depth=parked_depth)

    async def replay(self, *, job_ids: list[str], tenant_id: str, replay_all: bool,
                     actor: str) -> list[str]:
        """Raises BrokerUnavailable after replaying those it could."""
        if not (job_ids or tenant_id or replay_all):
            return []
        rows = await self._jobs.dead_lettered(parked=None, tenant_id=tenant_id,
                                              job_ids=job_ids or None)
        replayed = []
        for job_id, tenant, replays, _reason, _parked in rows:
            await self._publisher.publish(JobMessage(job_id, tenant),
                                          headers={REPLAYS_HEADER: replays + 1})
            replayed.append(job_id)
            log.info("dead_letter_replayed", job_id=job_id, tenant=tenant, replay=replays + 1,
                     actor=actor)
        return replayed

    async def purge_parked(self, *, actor: str) -> int:
        purged_messages = await self._publisher.purge_parked()
        jobs = await self._jobs.purge_parked(actor=actor)
        log.warning("parking_lot_purged", messages=purged_messages, jobs=jobs, actor=actor)
        return purged_messages

