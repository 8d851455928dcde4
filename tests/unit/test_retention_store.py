"""The retention store on a real SQLite file: claims keep two sweeps off one job, a job
leaves only as it was read, old audit records go in seq order."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control_plane.job_messages import CODEC
from control_plane.store.database import Database
from control_plane.store.jobs import JobStore
from control_plane.store.records import JobSpec, JobState
from control_plane.store.retention import RetentionStore

TENANT = "t_0123456789abcdef"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "store.db")
    await database.open()
    try:
        yield database
    finally:
        await database.close()


async def cancelled_jobs(jobs: JobStore, count: int) -> list[str]:
    """Jobs that ended at once: cancelled while queued."""
    ids = []
    for n in range(count):
        job, _ = await jobs.create(lambda conn: (TENANT, "test"),
                                   JobSpec(language="python", labels={"n": str(n)}))
        await jobs.cancel(job.id, TENANT, actor="test")
        ids.append(job.id)
    return ids


def rows(path: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchall()


async def test_a_claimed_job_is_not_claimed_again_until_its_claim_runs_out(
        db: Database) -> None:
    jobs, retention = JobStore(db, CODEC), RetentionStore(db, CODEC)
    ids = await cancelled_jobs(jobs, 5)
    now = time.time() + 1
    first = await retention.claim_expired(ended_before=now, now=now, claim_s=60, limit=3)
    second = await retention.claim_expired(ended_before=now, now=now, claim_s=60, limit=10)
    assert [job.job_id for job in first] == ids[:3]  # oldest end first
    assert [job.job_id for job in second] == ids[3:]  # the first sweep's three left alone
    assert await retention.claim_expired(ended_before=now, now=now, claim_s=60, limit=10) == []
    later = now + 61
    again = await retention.claim_expired(ended_before=later, now=later, claim_s=60, limit=10)
    assert sorted(job.job_id for job in again) == sorted(ids)


async def test_only_jobs_ended_before_the_cut_and_final_are_claimed(db: Database) -> None:
    jobs, retention = JobStore(db, CODEC), RetentionStore(db, CODEC)
    [ended] = await cancelled_jobs(jobs, 1)
    cut = time.time()
    queued, _ = await jobs.create(lambda conn: (TENANT, "test"),
                                  JobSpec(language="python"))
    await cancelled_jobs(jobs, 1)  # ended after the cut
    claimed = await retention.claim_expired(ended_before=cut, now=cut, claim_s=60, limit=10)
    assert [job.job_id for job in claimed] == [ended]
    assert queued.id not in [job.job_id for job in claimed]


async def test_a_job_leaves_with_its_events_only_as_it_was_read(
        db: Database, tmp_path: Path) -> None:
    jobs, retention = JobStore(db, CODEC), RetentionStore(db, CODEC)
    kept_id, gone_id = await cancelled_jobs(jobs, 2)
    now = time.time() + 1
    claimed = await retention.claim_expired(ended_before=now, now=now, claim_s=60, limit=10)
    snapshot = await retention.snapshot(claimed[1])
    assert snapshot is not None
    assert snapshot.tenant_id == TENANT
    assert snapshot.job == await jobs.get(gone_id, TENANT)
    assert list(snapshot.events) == await jobs.events_after(gone_id, 0)
    assert snapshot.events[-1].state_change.state == JobState.CANCELLED
    assert snapshot.spec.labels == {"n": "1"}

    # The first job changes after it was claimed (one more event): it must stay.
    await db.run(lambda conn: conn.execute(
        "UPDATE jobs SET last_seq = last_seq + 1 WHERE id = ?", (kept_id,)))
    assert await retention.snapshot(claimed[0]) is None
    deleted = await retention.delete(claimed, release=claimed)

    assert deleted == [gone_id]
    store = tmp_path / "store.db"
    assert rows(store, "SELECT id FROM jobs") == [(kept_id,)]
    assert rows(store, "SELECT count(*) FROM job_events WHERE job_id = ?", gone_id) == [(0,)]
    assert rows(store, "SELECT count(*) FROM job_events WHERE job_id = ?", kept_id) != [(0,)]
    assert rows(store, "SELECT count(*) FROM job_archiving") == [(0,)]  # claims released
    # The tenant's job counts follow the delete (kept by trigger).
    assert rows(store, "SELECT jobs FROM tenant_job_counts WHERE state = ?",
                JobState.CANCELLED) == [(1,)]
    # A second delete of the same snapshot (another replica's) finds nothing.
    assert await retention.delete(claimed[1:], release=claimed[1:]) == []


async def test_old_audit_records_go_oldest_first_and_stop_at_the_first_newer(
        db: Database, tmp_path: Path) -> None:
    jobs, retention = JobStore(db, CODEC), RetentionStore(db, CODEC)
    await cancelled_jobs(jobs, 3)  # two records each: submitted, cancelled
    cut = time.time()
    await cancelled_jobs(jobs, 1)
    old = await retention.expired_audit(before=cut, limit=4)
    assert [r.action for r in old] == ["submitted", "cancelled"] * 2
    assert [r.seq for r in old] == sorted(r.seq for r in old)
    assert await retention.delete_audit(first_seq=old[0].seq, last_seq=old[-1].seq,
                                        before=cut) == 4
    rest = await retention.expired_audit(before=cut, limit=100)
    assert [r.action for r in rest] == ["submitted", "cancelled"]  # the newer two stay out
    assert rows(tmp_path / "store.db", "SELECT count(*) FROM audit_events") == [(4,)]
    assert await retention.oldest_job_created_at() is not None
