"""What the store does, the same on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from control_plane.job_messages import CODEC, spec_message
from control_plane.quotas import QuotaExceeded, SubmitAdmission
from control_plane.store.audit import AuditLog
from control_plane.store.backend import Backend
from control_plane.store.holds import ORDERING, HoldStore
from control_plane.store.quotas import QuotaStore
from control_plane.store.records import (
    JobState,
    LanguageRecord,
    OutputStream,
    Refusal,
    ResultRecord,
    Verdict,
)
from control_plane.store.tenants import TenantExists, TenantStore
from control_plane.store.worker_languages import WorkerLanguageStore
from control_plane.store.worker_tokens import WorkerTokenStore
from tests.store.helpers import DEFAULTS, claim, job_store, new_tenant, spec, submit


async def test_tenants_and_keys(db: Backend) -> None:
    tenants = TenantStore(db)
    tenant = await tenants.create_tenant("acme")
    with pytest.raises(TenantExists, match="acme"):
        await tenants.create_tenant("acme")
    assert await tenants.get_tenant("acme") == tenant
    record, secret = await tenants.create_key(tenant.id, admin=True)
    principal = await tenants.authenticate(secret)
    assert principal is not None and principal.tenant_id == tenant.id and principal.admin
    revoked = await tenants.revoke_key(record.id)
    assert revoked is not None and revoked.revoked_at is not None
    assert await tenants.authenticate(secret) is None
    assert [k.id for k in await tenants.list_keys(tenant.id)] == [record.id]
    actions = [r.action for r in await AuditLog(db).query(tenant_id=tenant.id)]
    assert actions == ["key_created", "key_revoked"]


async def test_a_job_runs_and_its_events_tell_it(db: Backend) -> None:
    jobs = job_store(db)
    tenant_id = await new_tenant(db)
    job = await submit(jobs, tenant_id, labels={"team": "x"})
    outcome = await claim(jobs, job.id)
    assert outcome.assignment is not None and outcome.assignment.attempt == 1
    assert await jobs.append_output(job.id, 1, "w1", OutputStream.STDOUT, b"hello ") is not None
    assert await jobs.append_output(job.id, 1, "w1", OutputStream.STDOUT, b"world") is not None
    stored = await jobs.finish(job.id, 1, "w1", ResultRecord(verdict=Verdict.OK))
    assert stored is not None and stored.state == JobState.SUCCEEDED
    # A late report of the same attempt: answered as stored, nothing written.
    again = await jobs.finish(job.id, 1, "w1", ResultRecord(verdict=Verdict.OK))
    assert again is not None and again.events == []
    assert await jobs.append_output(job.id, 1, "w1", OutputStream.STDOUT, b"late") is None

    read = await jobs.get(job.id, tenant_id)
    assert read is not None and read.state == JobState.SUCCEEDED
    assert read.result.stdout == b"hello world" and dict(read.labels) == {"team": "x"}
    assert await jobs.get(job.id, "someone-else") is None
    events = await jobs.events_after(job.id, 0)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    kinds = [next(kind for kind in ("state_change", "output", "result")
                  if getattr(e, kind) is not None) for e in events]
    assert kinds == ["state_change", "state_change", "output", "output", "result",
                     "state_change"]
    watched = await jobs.watch_read(job.id, tenant_id, 4)
    assert watched is not None and [e.seq for e in watched[0]] == [5, 6] and watched[1]
    assert await jobs.last_seqs([job.id, "nope"]) == {job.id: 6}


async def test_listing_filters_by_label_and_pages_in_submission_order(db: Backend) -> None:
    jobs = job_store(db)
    tenant_id = await new_tenant(db)
    submitted = [await submit(jobs, tenant_id, labels={"n": str(i % 2)}) for i in range(5)]

    async def page(before: str | None, **filters: object) -> list[str]:
        listed = await jobs.list_for_tenant(
            tenant_id, states=[], labels=filters.get("labels", {}),  # type: ignore[arg-type]
            created_after=None, created_before=None, before_id=before, limit=2)
        return [job.id for job in listed]

    newest_first = [job.id for job in reversed(submitted)]
    first = await page(None)
    second = await page(first[-1])
    third = await page(second[-1])
    assert first + second + third == newest_first
    assert await page(None, labels={"n": "1"}) == [submitted[3].id, submitted[1].id]


async def test_a_second_claim_is_refused_while_the_lease_lives(db: Backend) -> None:
    jobs = job_store(db)
    job = await submit(jobs, await new_tenant(db))
    assert (await claim(jobs, job.id, "w1")).assignment is not None
    refused = await claim(jobs, job.id, "w2")
    assert refused.assignment is None and refused.refusal == Refusal.LEASED


async def test_a_lost_attempt_goes_back_to_the_queue_once(db: Backend) -> None:
    jobs = job_store(db)
    job = await submit(jobs, await new_tenant(db))
    await claim(jobs, job.id, lease_s=-1)  # its lease has run out already
    [lost] = [e for e in await jobs.expired_leases() if e.job_id == job.id]
    assert [e.state_change.state for e in await jobs.release_lost_attempt(
        lost, dead_reason=None)] == [JobState.QUEUED]
    assert await jobs.release_lost_attempt(lost, dead_reason=None) == []
    again = await claim(jobs, job.id)
    assert again.assignment is not None and again.assignment.attempt == 2


async def test_cancel_ends_a_queued_job(db: Backend) -> None:
    jobs = job_store(db)
    tenant_id = await new_tenant(db)
    job = await submit(jobs, tenant_id)
    assert await jobs.cancel(job.id, "someone-else", actor="key:x") is None
    outcome = await jobs.cancel(job.id, tenant_id, actor="key:x")
    assert outcome is not None and outcome[0].state == JobState.CANCELLED
    assert (await claim(jobs, job.id)).refusal == Refusal.FINISHED


async def test_dead_letters_are_listed_parked_and_purged(db: Backend) -> None:
    jobs = job_store(db)
    tenant_id = await new_tenant(db)
    first, second = await submit(jobs, tenant_id), await submit(jobs, tenant_id)
    for job, parked in ((first, False), (second, True)):
        state, current, events = await jobs.record_dead_letter(
            job.id, replays=0, reason="gone", parked=parked, actor="recovery")
        assert (state, current, len(events)) == (JobState.DEAD_LETTERED, True, 1)
    listed = await jobs.dead_lettered(parked=None, tenant_id=tenant_id)
    assert [row[0] for row in listed] == [first.id, second.id]
    after = await jobs.dead_lettered(parked=None, tenant_id=tenant_id, after_id=first.id)
    assert [row[0] for row in after] == [second.id]
    assert await jobs.purge_parked(actor="cli") == 1
    assert [row[0] for row in await jobs.dead_lettered(parked=None, tenant_id=tenant_id)] \
        == [first.id]


async def test_quotas_are_set_and_enforced(db: Backend) -> None:
    jobs = job_store(db)
    tenant_id = await new_tenant(db)
    quotas = QuotaStore(db, DEFAULTS)
    view = await quotas.set(tenant_id, {"max_queued_jobs": 2}, [], actor="cli")
    assert view.quota.max_queued_jobs == 2

    async def admit() -> None:
        request = spec()
        await jobs.create(lambda tx: (tenant_id, "key:test"), request,
                          check=SubmitAdmission(DEFAULTS, spec_message(request), request))

    await admit()
    await admit()
    with pytest.raises(QuotaExceeded, match="max_queued_jobs"):
        await admit()
    usage = (await quotas.get(tenant_id)).usage
    assert usage is not None and usage.queued_jobs == 2


async def test_ordering_keys_hold_the_later_jobs(db: Backend) -> None:
    jobs = job_store(db)
    tenant_id = await new_tenant(db)
    holds = HoldStore(db, DEFAULTS)
    admissions = []
    submitted = []
    for _ in range(3):
        request = spec(ordering_key="k")
        admission = SubmitAdmission(DEFAULTS, spec_message(request), request)
        job, _ = await jobs.create(lambda tx: (tenant_id, "key:test"), request,
                                   check=admission)
        admissions.append(admission.held)
        submitted.append(job)
    assert admissions == [False, True, True]
    assert await holds.releasable() == []
    # Out of order: the claim holds it again.
    assert (await claim(jobs, submitted[2].id)).refusal == Refusal.ORDERED
    await claim(jobs, submitted[0].id)
    await jobs.finish(submitted[0].id, 1, "w1", ResultRecord(verdict=Verdict.OK))
    released = await holds.releasable()
    assert [r.job_id for r in released] == [submitted[1].id]
    await holds.mark_released(released)
    assert await holds.releasable() == []
    assert ORDERING == "ordering"


async def test_languages_are_kept_per_live_identity(db: Backend) -> None:
    languages = WorkerLanguageStore(db, CODEC)
    tokens = WorkerTokenStore(db)
    await tokens.create("worker-a", actor="test")
    await languages.record("worker-a", [LanguageRecord(id="python", name="Python")])
    await languages.record("worker-a", [LanguageRecord(id="python", name="Python 3")])
    await languages.record("unknown", [LanguageRecord(id="cobol", name="COBOL")])
    assert [lang.name for lang in await languages.live(60)] == ["Python 3"]
    await tokens.revoke("worker-a", actor="test")
    assert await languages.live(60) == []


async def test_a_failing_call_leaves_nothing(db: Backend) -> None:
    tenants = TenantStore(db)

    def half(tx) -> None:  # type: ignore[no-untyped-def]
        tx.execute("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
                   ("t_half", "half", 1.0))
        raise RuntimeError("refused after the insert")

    with pytest.raises(RuntimeError, match="refused"):
        await db.run(half)
    assert await tenants.get_tenant("half") is None
    results = await asyncio.gather(*(tenants.create_tenant(f"many-{i}") for i in range(20)))
    assert len({t.id for t in results}) == 20
