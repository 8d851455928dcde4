"""Small builders shared by the store's tests."""

from __future__ import annotations

import uuid

from control_plane.job_messages import CODEC
from control_plane.store.backend import Backend
from control_plane.store.holds import ClaimGate
from control_plane.store.jobs import ClaimOutcome, JobStore
from control_plane.store.quotas import TenantQuota
from control_plane.store.records import JobRecord, JobSpec, SourceFile
from control_plane.store.tenants import TenantStore
from sluice.settings import Settings

DEFAULTS = TenantQuota.defaults(Settings())


def job_store(db: Backend, defaults: TenantQuota = DEFAULTS) -> JobStore:
    return JobStore(db, CODEC, claim_gate=ClaimGate(defaults))


async def new_tenant(db: Backend) -> str:
    return (await TenantStore(db).create_tenant(f"t-{uuid.uuid4().hex[:8]}")).id


def spec(source: str = "print(1)", **fields: object) -> JobSpec:
    return JobSpec(language="python",  # type: ignore[arg-type]
                   files=(SourceFile(name="main.py", content=source.encode()),), **fields)


async def submit(jobs: JobStore, tenant_id: str, **fields: object) -> JobRecord:
    job, created = await jobs.create(lambda tx: (tenant_id, "key:test"), spec(**fields))
    assert created
    return job


async def claim(jobs: JobStore, job_id: str, worker: str = "w1", *,
                lease_s: float = 30) -> ClaimOutcome:
    return await jobs.claim(job_id, worker, replays=0, lease_s=lease_s, max_attempts=3,
                            heartbeat_interval_ms=1000)
