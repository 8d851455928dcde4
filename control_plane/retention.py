"""The retention sweep: finished jobs past SLUICE_RETENTION_S leave the store, audit records
past SLUICE_AUDIT_RETENTION_S too; into the archive first when one is configured.

Batch by batch: claim up to BATCH expired jobs, write each to the archive (WRITERS at once),
and delete from the store only those the archive confirmed, each only if it is still as it
was read. An archive that is down leaves the batch in the store (claims released), is
counted and logged, and ends this sweep; the next one tries again. Nothing is deleted that
was not written, so an outage delays deletion and never loses a job.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from control_plane import metrics
from control_plane.admin_service import audit_message
from control_plane.archive import ArchiveUnavailable, JobArchive
from control_plane.job_messages import archived_job
from control_plane.periodic_sweep import sweep_forever
from control_plane.store.retention import ExpiredJob, RetentionStore
from sluice.observability import get_logger
from sluice.v1 import archive_pb2 as arc

log = get_logger(__name__)

BATCH = 100  # jobs per claim and per delete transaction
AUDIT_BATCH = 1000  # audit records per object and per delete transaction
WRITERS = 8  # objects written at once
# How long a claim keeps other replicas off a batch: past the longest a batch takes to write
# while the archive answers (a put that fails ends the sweep and releases the claims).
CLAIM_S = 300.0


@dataclass
class SweepOutcome:
    archived: int = 0
    deleted: int = 0
    failures: int = 0
    audit_archived: int = 0
    audit_deleted: int = 0


class RetentionSweeper:
    def __init__(self, store: RetentionStore, archive: JobArchive | None, *,
                 retention_s: float, audit_retention_s: float, interval_s: float) -> None:
        self._store = store
        self._archive = archive
        self._retention_s = retention_s
        self._audit_retention_s = audit_retention_s
        self._interval_s = interval_s

    async def run_forever(self) -> None:
        await sweep_forever(self.sweep, interval_s=self._interval_s,
                            failure_event="retention_sweep_failed")

    async def sweep(self) -> SweepOutcome:
        outcome = SweepOutcome()
        now = time.time()
        try:
            if self._retention_s > 0:
                await self._sweep_jobs(now, outcome)
            if self._audit_retention_s > 0:
                await self._sweep_audit(now, outcome)
        finally:
            oldest = await self._store.oldest_job_created_at()
            metrics.OLDEST_JOB_AGE_SECONDS.set(0 if oldest is None else max(0, now - oldest))
            if outcome.deleted or outcome.audit_deleted or outcome.failures:
                log.info("retention_swept", archived=outcome.archived, deleted=outcome.deleted,
                         failures=outcome.failures, audit_archived=outcome.audit_archived,
                         audit_deleted=outcome.audit_deleted)
        return outcome

    async def _sweep_jobs(self, now: float, outcome: SweepOutcome) -> None:
        while True:
            claimed = await self._store.claim_expired(
                ended_before=now - self._retention_s, now=time.time(), claim_s=CLAIM_S,
                limit=BATCH)
            if not claimed:
                return
            written, failed = (await self._write(claimed) if self._archive is not None
                               else (claimed, 0))
            deleted = await self._store.delete(written, release=claimed)
            outcome.archived += len(written) if self._archive is not None else 0
            outcome.deleted += len(deleted)
            outcome.failures += failed
            metrics.JOBS_DELETED.inc(len(deleted))
            # Ended by an archive that is down, by a short batch (nothing more is due) or by
            # a batch of jobs that all changed since they were read (no busy loop on them).
            if failed or len(claimed) < BATCH or not deleted:
                return

    async def _write(self, claimed: list[ExpiredJob]) -> tuple[list[ExpiredJob], int]:
        """The claimed jobs the archive has confirmed, and how many puts failed. The first
        failure stops the rest: an archive that is down is not asked a hundred times."""
        assert self._archive is not None
        archive = self._archive
        slots = asyncio.Semaphore(WRITERS)
        down = asyncio.Event()
        written: list[ExpiredJob] = []
        failed = 0

        async def write(job: ExpiredJob) -> None:
            nonlocal failed
            async with slots:
                if down.is_set():
                    return
                snapshot = await self._store.snapshot(job)
                if snapshot is None:
                    return  # deleted by another replica, or changed: not this sweep's
                try:
                    await archive.put_job(archived_job(snapshot))
                except ArchiveUnavailable as exc:
                    failed += 1
                    metrics.ARCHIVE_FAILURES.labels("put").inc()
                    if not down.is_set():
                        down.set()
                        log.warning("archive_unavailable", error=str(exc),
                                    detail="finished jobs stay in the store until the archive"
                                           " takes them; the next sweep tries again")
                    return
                written.append(job)
                metrics.JOBS_ARCHIVED.inc()

        # Every write settles before this returns (none left running unowned), and a store
        # error among them is raised once they have.
        for settled in await asyncio.gather(*(write(job) for job in claimed),
                                           return_exceptions=True):
            if isinstance(settled, BaseException):
                raise settled
        return written, failed

    async def _sweep_audit(self, now: float, outcome: SweepOutcome) -> None:
        before = now - self._audit_retention_s
        while True:
            records = await self._store.expired_audit(before=before, limit=AUDIT_BATCH)
            if not records:
                return
            if self._archive is not None:
                batch = arc.ArchivedAuditBatch(events=[audit_message(r) for r in records])
                try:
                    await self._archive.put_audit(batch)
                except ArchiveUnavailable as exc:
                    outcome.failures += 1
                    metrics.ARCHIVE_FAILURES.labels("put").inc()
                    log.warning("archive_unavailable", error=str(exc),
                                detail="audit records stay in the store until the archive"
                                       " takes them; the next sweep tries again")
                    return
                outcome.audit_archived += len(records)
            deleted = await self._store.delete_audit(
                first_seq=records[0].seq, last_seq=records[-1].seq, before=before)
            outcome.audit_deleted += deleted
            metrics.AUDIT_RECORDS_DELETED.inc(deleted)
            if len(records) < AUDIT_BATCH or not deleted:
                return
