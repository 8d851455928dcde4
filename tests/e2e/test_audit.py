"""The audit trail: a job's whole life, keys and quotas, queryable and logged."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from sluice.client import SluiceClient
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job
from tests.support.admin import AdminClient
from tests.support.platform import Platform


async def test_a_jobs_life_in_the_audit_trail(platform: Platform, admin: AdminClient) -> None:
    tenant = await admin.create_tenant("audited")
    async with SluiceClient(platform.api_target, tenant.key) as client:
        job = await client.submit(python_job("print('hello')"))
        done = await client.wait(job.id)
        assert done.state == pb.JOB_STATE_SUCCEEDED
    trail = await admin.audit(job_id=job.id)
    assert [e.action for e in trail] == ["submitted", "started", "output_finished", "succeeded"]
    assert all(e.tenant_id == tenant.id and e.job_id == job.id for e in trail)
    assert trail[0].actor == f"key:{tenant.key_id}"
    assert all(e.actor.startswith("worker:") for e in trail[1:])
    times = [e.time.ToNanoseconds() for e in trail]
    assert times == sorted(times)
    assert times[0] >= done.create_time.ToNanoseconds() - 1_000_000
    assert trail[1].detail["attempt"] == 1
    assert trail[2].detail["stdout_bytes"] == len(b"hello\n")
    # Each record is also one structured (JSON) log line of the control plane.
    logged = [json.loads(line) for line in platform.log("control-plane").splitlines()
              if job.id in line and line.startswith("{")]
    assert [r["event"] for r in logged if r["event"].startswith("audit_")] == [
        "audit_submitted", "audit_started", "audit_output_finished", "audit_succeeded"]
    assert all(r["tenant"] == tenant.id for r in logged if r["event"].startswith("audit_"))


async def test_failed_and_cancelled_jobs_and_key_and_quota_changes_are_recorded(
        platform: Platform, admin: AdminClient) -> None:
    tenant = await admin.create_tenant("audited-more")
    async with SluiceClient(platform.api_target, tenant.key) as client:
        failed = await client.submit(python_job("raise SystemExit(2)"))
        await client.wait(failed.id)
        sleeper = await client.submit(python_job("import time\nprint(1, flush=True)\n"
                                                 "time.sleep(60)\n"))
        async for event in client.watch(sleeper.id):
            if event.HasField("output"):
                break
        await client.cancel(sleeper.id)
        await client.wait(sleeper.id)
    await admin.set_quota(tenant.id, max_queued_jobs=5)
    extra = await admin.stub.CreateApiKey(adm.CreateApiKeyRequest(tenant_id=tenant.id),
                                          metadata=admin.metadata)
    await admin.stub.RevokeApiKey(adm.RevokeApiKeyRequest(key_id=extra.api_key.id),
                                  metadata=admin.metadata)

    assert [e.action for e in await admin.audit(job_id=failed.id)][-1] == "failed"
    assert [e.action for e in await admin.audit(job_id=sleeper.id)] == [
        "submitted", "started", "cancel_requested", "output_finished", "cancelled"]
    quota_changes = await admin.audit(tenant_id=tenant.id, action="quota_changed")
    assert len(quota_changes) == 1
    assert quota_changes[0].detail["changed"]["max_queued_jobs"] == 5
    assert quota_changes[0].actor.startswith("key:")
    keys = await admin.audit(tenant_id=tenant.id, action="key_revoked")
    assert [e.detail["key_id"] for e in keys] == [extra.api_key.id]
    created = await admin.audit(tenant_id=tenant.id, action="key_created")
    assert {e.detail["key_id"] for e in created} == {tenant.key_id, extra.api_key.id}


async def test_paging_returns_every_record_once_and_filters_combine(
        platform: Platform, admin: AdminClient) -> None:
    tenant = await admin.create_tenant("audit-pages")
    async with SluiceClient(platform.api_target, tenant.key) as client:
        jobs = await asyncio.gather(*(client.submit(python_job("pass")) for _ in range(3)))
        for job in jobs:
            await client.wait(job.id)
    everything = await admin.audit(tenant_id=tenant.id)
    paged = await admin.audit(tenant_id=tenant.id, page_size=2)
    assert [e.seq for e in paged] == [e.seq for e in everything]
    assert len({e.seq for e in paged}) == len(paged) == 1 + 3 * 4  # key + 4 per job
    submitted = await admin.audit(tenant_id=tenant.id, action="submitted", page_size=1)
    assert {e.job_id for e in submitted} == {job.id for job in jobs}
    other = await admin.audit(tenant_id="t_nobody")
    assert other == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.stub.ListAuditEvents(adm.ListAuditEventsRequest(page_token="%%"),
                                         metadata=admin.metadata)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in caught.value.details()


async def test_audit_cli_prints_a_tenants_trail(platform: Platform, admin: AdminClient) -> None:
    tenant = await admin.create_tenant("audit-cli")
    await admin.set_quota(tenant.id, max_running_jobs=2)
    result = await asyncio.to_thread(platform.cli, "audit", "--tenant", tenant.name)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    assert [row[4] for row in rows] == ["key_created", "quota_changed"]
    assert all(row[2] == tenant.id for row in rows)
    assert json.loads(rows[1][6])["changed"] == {"max_running_jobs": 2}
