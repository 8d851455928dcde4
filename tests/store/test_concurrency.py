"""Two backends on one store are two control planes: what one decides, the other cannot
decide again. Run on both backends (two SQLite connections to one file are two processes)."""

from __future__ import annotations

import asyncio

from control_plane.job_messages import spec_message
from control_plane.quotas import QuotaExceeded, SubmitAdmission
from control_plane.store.holds import HoldStore
from control_plane.store.quotas import QuotaStore
from control_plane.store.records import JobState, OutputStream, ResultRecord, Verdict
from control_plane.store.tenants import TenantExists, TenantStore
from tests.store.conftest import OpenBackend
from tests.store.helpers import DEFAULTS, claim, job_store, new_tenant, spec, submit


async def test_one_claim_of_a_job_wins_across_replicas(open_backend: OpenBackend) -> None:
    one, other = await open_backend(), await open_backend()
    jobs_one, jobs_other = job_store(one), job_store(other)
    tenant_id = await new_tenant(one)
    submitted = [await submit(jobs_one, tenant_id) for _ in range(20)]
    outcomes = await asyncio.gather(*(
        claim(jobs, job.id, worker)
        for job in submitted for jobs, worker in ((jobs_one, "w1"), (jobs_other, "w2"))))
    for i, job in enumerate(submitted):
        pair = outcomes[2 * i:2 * i + 2]
        assert sum(o.assignment is not None for o in pair) == 1, job.id
        events = await jobs_other.events_after(job.id, 0)
        started = [e for e in events if e.state_change.state == JobState.RUNNING]
        assert len(started) == 1


async def test_submits_through_two_replicas_accept_exactly_the_quota(
        open_backend: OpenBackend) -> None:
    one, other = await open_backend(), await open_backend()
    tenant_id = await new_tenant(one)
    await QuotaStore(one, DEFAULTS).set(tenant_id, {"max_queued_jobs": 10}, [], actor="cli")
    replicas = [job_store(one), job_store(other)]

    async def admit(i: int) -> bool:
        request = spec()
        try:
            await replicas[i % 2].create(
                lambda tx: (tenant_id, "key:test"), request,
                check=SubmitAdmission(DEFAULTS, spec_message(request), request))
        except QuotaExceeded:
            return False
        return True

    accepted = await asyncio.gather(*(admit(i) for i in range(40)))
    assert sum(accepted) == 10
    queued = await one.run(lambda tx: tx.execute(
        "SELECT count(*) FROM jobs WHERE tenant_id = ? AND state = ?",
        (tenant_id, JobState.QUEUED)).fetchone()[0])
    assert queued == 10


async def test_an_idempotency_key_makes_one_job_across_replicas(
        open_backend: OpenBackend) -> None:
    one, other = await open_backend(), await open_backend()
    tenant_id = await new_tenant(one)
    results = await asyncio.gather(*(
        jobs.create(lambda tx: (tenant_id, "key:test"), spec(idempotency_key="once"))
        for jobs in (job_store(one), job_store(other)) * 5))
    assert len({job.id for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_a_lost_attempt_is_released_by_one_reaper(open_backend: OpenBackend) -> None:
    one, other = await open_backend(), await open_backend()
    jobs_one, jobs_other = job_store(one), job_store(other)
    job = await submit(jobs_one, await new_tenant(one))
    await claim(jobs_one, job.id, lease_s=-1)
    [lost] = [e for e in await jobs_one.expired_leases() if e.job_id == job.id]
    released = await asyncio.gather(*(jobs.release_lost_attempt(lost, dead_reason=None)
                                      for jobs in (jobs_one, jobs_other) * 3))
    assert sum(bool(events) for events in released) == 1


async def test_a_tenant_name_is_taken_once(open_backend: OpenBackend) -> None:
    one, other = await open_backend(), await open_backend()
    results = await asyncio.gather(*(store.create_tenant("same") for store in
                                     (TenantStore(one), TenantStore(other)) * 3),
                                   return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, TenantExists) for r in results if isinstance(r, BaseException))


async def test_output_and_the_result_race_without_a_late_chunk(
        open_backend: OpenBackend) -> None:
    """A chunk stored after the result would follow the job's end: the guarded append
    refuses it once the attempt is over."""
    one, other = await open_backend(), await open_backend()
    jobs_one, jobs_other = job_store(one), job_store(other)
    job = await submit(jobs_one, await new_tenant(one))
    await claim(jobs_one, job.id)
    chunks = [jobs_other.append_output(job.id, 1, "w1", OutputStream.STDOUT, b"x")
              for _ in range(10)]
    await asyncio.gather(jobs_one.finish(job.id, 1, "w1", ResultRecord(verdict=Verdict.OK)),
                         *chunks)
    events = await jobs_one.events_after(job.id, 0)
    assert events[-1].state_change.state == JobState.SUCCEEDED
    stdout = (await jobs_one.get(job.id, None)).result.stdout  # type: ignore[union-attr]
    stored_chunks = sum(1 for e in events if e.output is not None)
    assert stdout == b"x" * stored_chunks


async def test_a_held_job_released_by_two_replicas_runs_once(
        open_backend: OpenBackend) -> None:
    """Every replica runs a HoldReleaser: both may publish the same job; its second copy is
    refused at the claim."""
    one, other = await open_backend(), await open_backend()
    jobs_one, jobs_other = job_store(one), job_store(other)
    tenant_id = await new_tenant(one)
    first = await submit(jobs_one, tenant_id, ordering_key="k")
    request = spec(ordering_key="k")
    admission = SubmitAdmission(DEFAULTS, spec_message(request), request)
    second, _ = await jobs_one.create(lambda tx: (tenant_id, "key:test"), request,
                                      check=admission)
    assert admission.held
    await claim(jobs_one, first.id)
    await jobs_one.finish(first.id, 1, "w1", ResultRecord(verdict=Verdict.OK))
    releasers = [HoldStore(one, DEFAULTS), HoldStore(other, DEFAULTS)]
    released = await asyncio.gather(*(holds.releasable() for holds in releasers))
    assert [[r.job_id for r in each] for each in released] == [[second.id], [second.id]]
    await asyncio.gather(*(holds.mark_released(each)
                           for holds, each in zip(releasers, released, strict=True)))
    claims = await asyncio.gather(claim(jobs_one, second.id, "w1"),
                                  claim(jobs_other, second.id, "w2"))
    assert sum(c.assignment is not None for c in claims) == 1
