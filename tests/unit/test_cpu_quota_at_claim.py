"""The CPU-seconds quota at the claim, in a real store: a job queued while its tenant had CPU
left is not started once the day's CPU is used; it waits, held, saying why, and the hold
releaser lets it go once there is room again."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control_plane.job_messages import CODEC
from control_plane.store import quotas
from control_plane.store.database import Database
from control_plane.store.holds import ClaimGate, HoldStore
from control_plane.store.jobs import JobStore
from control_plane.store.quotas import QuotaStore, TenantQuota
from control_plane.store.records import JobSpec, JobState, Refusal, SourceFile
from control_plane.store.tenants import TenantStore
from sluice.settings import Settings

DEFAULTS = TenantQuota.defaults(Settings())


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "store.db")
    await database.open()
    yield database
    await database.close()


async def claim(jobs: JobStore, job_id: str):
    return await jobs.claim(job_id, "worker-1", replays=0, lease_s=10, max_attempts=3,
                            heartbeat_interval_ms=1000)


async def test_a_job_claimed_after_the_days_cpu_is_used_waits_until_there_is_room(
        db: Database) -> None:
    tenant = await TenantStore(db).create_tenant("cpu")
    quota_store = QuotaStore(db, DEFAULTS)
    await quota_store.set(tenant.id, {"cpu_seconds_per_day": 1}, [], actor="test")
    jobs = JobStore(db, CODEC, claim_gate=ClaimGate(DEFAULTS))
    spec = JobSpec(language="python",
                                files=(SourceFile(name="main.py", content=b"pass"),))
    job, _ = await jobs.create(lambda conn: (tenant.id, "test"), spec)

    # Another job of the tenant used 2 CPU-seconds after this one was admitted.
    def used(conn: sqlite3.Connection) -> None:
        quotas.record_cpu(conn, tenant.id, time.time(), 2000)

    await db.run(used)

    refused = await claim(jobs, job.id)
    assert refused.assignment is None
    assert refused.refusal == Refusal.THROTTLED
    assert "cpu_seconds_per_day" in refused.detail
    waiting = await jobs.get(job.id, None)
    assert waiting is not None and waiting.state == JobState.QUEUED
    assert "2.0 CPU-seconds in the last 24 hours" in waiting.state_reason

    holds = HoldStore(db, DEFAULTS)
    assert await holds.releasable() == []  # over the quota: nothing to publish

    await quota_store.set(tenant.id, {"cpu_seconds_per_day": 10}, [], actor="test")
    released = await holds.releasable()
    assert [release.job_id for release in released] == [job.id]
    await holds.mark_released(released)
    cleared = await jobs.get(job.id, None)
    assert cleared is not None and cleared.state_reason == ""
    started = await claim(jobs, job.id)
    assert started.assignment is not None and started.assignment.attempt == 1
