"""The operator's view of dead letters: list them, replay them, purge the parking lot.

Replaying publishes a fresh message carrying the next replay number; the worker's claim
then gives the job a new budget of attempts, and any older copy of its message still in a
queue is recognised as stale and dropped, so a replay never runs a job twice.
"""

from __future__ import annotations

from control_plane.job_publisher import JobPublisher
from control_plane.store.jobs import JobStore
from sluice.observability import get_logger
from sluice.topology import REPLAYED_BY_HEADER, JobMessage
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import job_pb2 as pb

log = get_logger(__name__)
REPLAYS_HEADER = "x-sluice-replays"
BATCH = 1000


class UnknownJob(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job_ids: no job {job_id!r}")


class NotDeadLettered(ValueError):
    def __init__(self, job_id: str, why: str) -> None:
        super().__init__(f"job_ids: job {job_id!r} {why}; nothing was replayed")


class DeadLetterAdmin:
    def __init__(self, jobs: JobStore, publisher: JobPublisher) -> None:
        self._jobs = jobs
        self._publisher = publisher

    async def list_dead_letters(self, parked: bool | None, tenant_id: str, *,
                                after_id: str, limit: int) -> adm.ListDeadLettersResponse:
        """One page; next_page_token is the last job id when more may follow."""
        rows = await self._jobs.dead_lettered(parked=parked, tenant_id=tenant_id,
                                              after_id=after_id, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        dead_depth, parked_depth = await self._publisher.dead_letter_depths()
        return adm.ListDeadLettersResponse(
            dead_letters=[adm.DeadLetter(job_id=job_id, tenant_id=tenant, replays=replays,
                                         reason=reason, parked=is_parked)
                          for job_id, tenant, replays, reason, is_parked in rows],
            dead_letter_queue_depth=dead_depth, parked_queue_depth=parked_depth,
            next_page_token=rows[-1][0] if more else "")

    async def replay(self, *, job_ids: list[str], tenant_id: str, replay_all: bool,
                     actor: str) -> list[str]:
        """Raises UnknownJob or NotDeadLettered (before replaying any) when a named job is
        missing or not dead-lettered; BrokerUnavailable after replaying those it could."""
        if not (job_ids or tenant_id or replay_all):
            return []
        if job_ids:
            rows = await self._jobs.dead_lettered(parked=None, job_ids=job_ids, limit=BATCH)
            found = {row[0] for row in rows}
            for job_id in job_ids:
                if job_id not in found:
                    await self._refuse(job_id)
            rows = [row for row in rows if not tenant_id or row[1] == tenant_id]
        else:
            rows = []
            while batch := await self._jobs.dead_lettered(
                    parked=None, tenant_id=tenant_id, after_id=rows[-1][0] if rows else "",
                    limit=BATCH):
                rows.extend(batch)
        replayed = []
        for job_id, tenant, replays, _reason, _parked in rows:
            await self._publisher.publish(JobMessage(job_id, tenant),
                                          headers={REPLAYS_HEADER: replays + 1,
                                                   REPLAYED_BY_HEADER: actor})
            replayed.append(job_id)
            log.info("dead_letter_replayed", job_id=job_id, tenant=tenant, replay=replays + 1,
                     actor=actor)
        return replayed

    async def _refuse(self, job_id: str) -> None:
        job = await self._jobs.get(job_id, None)
        if job is None:
            raise UnknownJob(job_id)
        if job.state == pb.JOB_STATE_DEAD_LETTERED:
            raise NotDeadLettered(job_id, "was purged from the parking lot for good")
        raise NotDeadLettered(job_id, f"is {pb.JobState.Name(job.state)}, not dead-lettered")

    async def purge_parked(self, *, actor: str) -> int:
        purged_messages = await self._publisher.purge_parked()
        jobs = await self._jobs.purge_parked(actor=actor)
        log.warning("parking_lot_purged", messages=purged_messages, jobs=jobs, actor=actor)
        return purged_messages
