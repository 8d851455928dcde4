"""JobStore.resume: a worker's attempt goes on over a new gateway stream only while it is
current and leased to that worker; the answer says how much output the store holds."""

from __future__ import annotations

from pathlib import Path

from control_plane.job_messages import CODEC
from control_plane.store.database import Database
from control_plane.store.jobs import JobStore
from control_plane.store.records import (
    JobSpec,
    JobState,
    OutputStream,
    ResultRecord,
    SourceFile,
    Verdict,
)
from control_plane.store.tenants import TenantStore

LEASE_S = 10.0


async def started_job(tmp_path: Path) -> tuple[Database, JobStore, str]:
    db = Database(tmp_path / "store.db")
    await db.open()
    tenant = await TenantStore(db).create_tenant("resumers")
    jobs = JobStore(db, CODEC)
    job, _ = await jobs.create(lambda conn: (tenant.id, "test"), JobSpec(
        language="python", files=(SourceFile(name="main.py", content=b"print(1)"),)))
    claimed = await jobs.claim(job.id, "worker-a", replays=0, lease_s=LEASE_S, max_attempts=3,
                               heartbeat_interval_ms=1000)
    assert claimed.assignment is not None and claimed.assignment.attempt == 1
    return db, jobs, job.id


async def test_the_holder_resumes_with_the_output_the_store_has(tmp_path: Path) -> None:
    db, jobs, job_id = await started_job(tmp_path)
    try:
        for stream, data in ((OutputStream.STDOUT, b"one\n"),
                             (OutputStream.STDERR, b"oops\n"),
                             (OutputStream.STDOUT, b"two\n")):
            assert await jobs.append_output(job_id, 1, "worker-a", stream, data) is not None
        resumed = await jobs.resume(job_id, "worker-a", 1, LEASE_S)
        assert resumed.going_on and not resumed.finished
        assert (resumed.stdout_bytes, resumed.stderr_bytes) == (8, 5)
        assert resumed.tenant_id
        # Another worker, or another attempt, is not the lease's holder.
        assert not (await jobs.resume(job_id, "worker-b", 1, LEASE_S)).going_on
        assert not (await jobs.resume(job_id, "worker-a", 2, LEASE_S)).going_on
    finally:
        await db.close()


async def test_a_stored_result_is_answered_as_finished(tmp_path: Path) -> None:
    db, jobs, job_id = await started_job(tmp_path)
    try:
        stored = await jobs.finish(job_id, 1, "worker-a", ResultRecord(verdict=Verdict.OK))
        assert stored is not None and stored.state == JobState.SUCCEEDED
        resumed = await jobs.resume(job_id, "worker-a", 1, LEASE_S)
        assert resumed.finished and not resumed.going_on
    finally:
        await db.close()


async def test_a_lost_attempt_is_not_resumed(tmp_path: Path) -> None:
    db, jobs, job_id = await started_job(tmp_path)
    try:
        # The lease ran out and a redelivered claim took the job as attempt 2.
        await jobs.drop_lease(job_id, 1, "worker-a")
        again = await jobs.claim(job_id, "worker-b", replays=0, lease_s=LEASE_S,
                                 max_attempts=3, heartbeat_interval_ms=1000)
        assert again.assignment is not None and again.assignment.attempt == 2
        lost = await jobs.resume(job_id, "worker-a", 1, LEASE_S)
        assert not lost.going_on and not lost.finished
    finally:
        await db.close()
