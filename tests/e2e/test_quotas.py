"""Every tenant quota refuses at its edge and admits under it, through the real platform."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from sluice.client import SluiceClient
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job
from tests.support.admin import AdminClient, NewTenant, max_running_at_once, retry_delay_s
from tests.support.platform import Platform

MIB = 1024 * 1024
SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(60)\n"


async def refused(call, code: grpc.StatusCode, *words: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == code, error.details()
    for word in words:
        assert word in error.details(), error.details()
    return error


async def wait_state(client: SluiceClient, job_id: str, state: int, within_s: float = 60) -> None:
    async with asyncio.timeout(within_s):
        while (await client.get(job_id)).state != state:
            await asyncio.sleep(0.05)


@pytest.fixture
async def tenant(platform: Platform, admin: AdminClient) -> NewTenant:
    return await admin.create_tenant("quota")


async def cancel_all(client: SluiceClient, job_ids: list[str]) -> None:
    for job_id in job_ids:
        await client.cancel(job_id)


async def test_submit_rate_refuses_past_the_burst_then_admits_after_the_retry_delay(
        platform: Platform, admin: AdminClient, tenant: NewTenant) -> None:
    await admin.set_quota(tenant.id, submit_rate_per_s=0.5, submit_burst=3)
    async with SluiceClient(platform.api_target, tenant.key) as client:
        jobs = [await client.submit(python_job("pass")) for _ in range(3)]
        error = await refused(client.submit(python_job("pass")),
                              grpc.StatusCode.RESOURCE_EXHAUSTED, "submit_rate_per_s", "0.5")
        delay = retry_delay_s(error)
        # Three tokens taken from a full bucket of three: about 2 s (1 token at 0.5/s) to go.
        assert delay is not None and 0 < delay <= 2.0
        await asyncio.sleep(delay)
        jobs.append(await client.submit(python_job("pass")))
        for job in jobs:
            assert (await client.wait(job.id)).state == pb.JOB_STATE_SUCCEEDED


async def test_refused_submission_takes_no_token_and_stores_nothing(
        platform: Platform, admin: AdminClient, tenant: NewTenant) -> None:
    await admin.set_quota(tenant.id, submit_rate_per_s=0.001, submit_burst=1,
                          max_queued_jobs=0)
    async with SluiceClient(platform.api_target, tenant.key) as client:
        await refused(client.submit(python_job("pass")), grpc.StatusCode.RESOURCE_EXHAUSTED,
                      "max_queued_jobs")
        await admin.set_quota(tenant.id, max_queued_jobs=10)
        # The refused submission left the one token in the bucket.
        job = await client.submit(python_job("pass"))
        await refused(client.submit(python_job("pass")), grpc.StatusCode.RESOURCE_EXHAUSTED,
                      "submit_rate_per_s")
        assert (await client.wait(job.id)).state == pb.JOB_STATE_SUCCEEDED
    quota = await admin.get_quota(tenant.id)
    assert quota.usage.queued_jobs == 0


async def test_max_queued_jobs_refuses_at_its_edge(platform: Platform, admin: AdminClient,
                                                   tenant: NewTenant) -> None:
    # One running at a time keeps the others QUEUED for as long as the test needs.
    await admin.set_quota(tenant.id, max_running_jobs=1, max_queued_jobs=2)
    async with SluiceClient(platform.api_target, tenant.key) as client:
        running = await client.submit(python_job(SLEEPER))
        await wait_state(client, running.id, pb.JOB_STATE_RUNNING)
        queued = [await client.submit(python_job("pass")) for _ in range(2)]
        error = await refused(client.submit(python_job("pass")),
                              grpc.StatusCode.RESOURCE_EXHAUSTED, "max_queued_jobs", "2")
        assert retry_delay_s(error) is not None
        await client.cancel(queued[0].id)
        # One place free again: admitted.
        admitted = await client.submit(python_job("pass"))
        assert admitted.state == pb.JOB_STATE_QUEUED
        await cancel_all(client, [running.id])
        for job in (queued[1], admitted):
            assert (await client.wait(job.id)).state == pb.JOB_STATE_SUCCEEDED


async def test_max_running_jobs_never_runs_more_at_once(platform: Platform, admin: AdminClient,
                                                        tenant: NewTenant) -> None:
    """The platform's worker has two slots; the tenant may use only one of them. The audit
    trail is in commit order, so it shows how many of the tenant's jobs ran at once."""
    await admin.set_quota(tenant.id, max_running_jobs=1)
    source = "import time\ntime.sleep(0.5)\nprint('ok')\n"
    async with SluiceClient(platform.api_target, tenant.key) as client:
        jobs = await asyncio.gather(*(client.submit(python_job(source)) for _ in range(4)))
        for job in jobs:
            done = await client.wait(job.id)
            assert done.state == pb.JOB_STATE_SUCCEEDED, done
            assert done.attempt == 1  # held, not failed and retried
    trail = await admin.audit(tenant_id=tenant.id)
    assert [e.action for e in trail].count("started") == 4
    assert max_running_at_once(trail) == 1


async def test_cpu_seconds_per_day_refuses_once_used_up(platform: Platform, admin: AdminClient,
                                                        tenant: NewTenant) -> None:
    await admin.set_quota(tenant.id, cpu_seconds_per_day=1)
    burner = ("import time\nend = time.process_time() + 1.2\n"
              "while time.process_time() < end:\n    pass\n")
    async with SluiceClient(platform.api_target, tenant.key) as client:
        job = await client.submit(python_job(burner))  # nothing used yet: under the quota
        done = await client.wait(job.id)
        assert done.state == pb.JOB_STATE_SUCCEEDED
        assert done.result.usage.cpu_time_ms >= 1000
        error = await refused(client.submit(python_job("pass")),
                              grpc.StatusCode.RESOURCE_EXHAUSTED, "cpu_seconds_per_day")
        delay = retry_delay_s(error)
        # The use ages out of the rolling day about a day after it happened.
        assert delay is not None and 86_000 < delay <= 86_460
        usage = (await admin.get_quota(tenant.id)).usage
        assert usage.cpu_seconds_last_day * 1000 >= done.result.usage.cpu_time_ms - 1
        await admin.set_quota(tenant.id, cpu_seconds_per_day=60)
        again = await client.submit(python_job("pass"))
        assert (await client.wait(again.id)).state == pb.JOB_STATE_SUCCEEDED


@pytest.mark.parametrize(("field", "quota", "ceiling"), [
    ("wall_time_ms", "max_wall_time_ms", 2_000),
    ("cpu_time_ms", "max_cpu_time_ms", 1_500),
    ("memory_bytes", "max_memory_bytes", 128 * MIB),
    ("max_processes", "max_processes", 16),
    ("max_output_bytes", "max_output_bytes", 4_096),
])
async def test_per_job_ceiling_refuses_over_and_lowers_the_default(
        platform: Platform, admin: AdminClient, tenant: NewTenant,
        field: str, quota: str, ceiling: int) -> None:
    await admin.set_quota(tenant.id, **{quota: ceiling})
    async with SluiceClient(platform.api_target, tenant.key) as client:
        await refused(client.submit(python_job("pass", limits=pb.Limits(**{field: ceiling + 1}))),
                      grpc.StatusCode.INVALID_ARGUMENT, f"limits.{field}", str(ceiling), quota)
        at_edge = await client.submit(python_job("pass", limits=pb.Limits(**{field: ceiling})))
        assert getattr(at_edge.limits, field) == ceiling
        # The platform default is over this tenant's ceiling: the job gets the ceiling.
        defaulted = await client.submit(python_job("pass"))
        assert getattr(defaulted.limits, field) == ceiling
        for job in (at_edge, defaulted):
            await client.wait(job.id)


async def test_source_size_ceiling(platform: Platform, admin: AdminClient,
                                   tenant: NewTenant) -> None:
    await admin.set_quota(tenant.id, max_source_bytes=100)
    async with SluiceClient(platform.api_target, tenant.key) as client:
        await refused(client.submit(python_job("#" * 101)), grpc.StatusCode.INVALID_ARGUMENT,
                      "101", "100", "max_source_bytes")
        job = await client.submit(python_job("#" * 100))
        assert (await client.wait(job.id)).state == pb.JOB_STATE_SUCCEEDED


async def test_set_quota_is_checked_and_get_quota_shows_defaults_and_overrides(
        admin: AdminClient, tenant: NewTenant) -> None:
    await refused(admin.set_quota(tenant.id, max_wall_time_ms=10_000_000),
                  grpc.StatusCode.INVALID_ARGUMENT, "max_wall_time_ms", "60000")
    await refused(admin.set_quota(tenant.id, submit_rate_per_s=0),
                  grpc.StatusCode.INVALID_ARGUMENT, "submit_rate_per_s")
    await refused(admin.set_quota("t_nobody", max_queued_jobs=1), grpc.StatusCode.NOT_FOUND,
                  "t_nobody")
    await refused(admin.stub.SetQuota(adm.SetQuotaRequest(tenant_id=tenant.id,
                                                          reset_fields=["bogus"]),
                                      metadata=admin.metadata),
                  grpc.StatusCode.INVALID_ARGUMENT, "bogus")
    set_reply = await admin.set_quota(tenant.id, max_queued_jobs=7)
    assert set_reply.overrides.max_queued_jobs == 7
    assert not set_reply.overrides.HasField("submit_burst")
    got = await admin.get_quota(tenant.id)
    assert got.quota.max_queued_jobs == 7
    assert got.quota.max_wall_time_ms == 60_000  # the platform default
    reset = await admin.stub.SetQuota(
        adm.SetQuotaRequest(tenant_id=tenant.id, reset_fields=["max_queued_jobs"]),
        metadata=admin.metadata)
    assert not reset.overrides.HasField("max_queued_jobs")
    assert reset.quota.max_queued_jobs == 10_000


async def test_quota_cli_sets_and_shows(platform: Platform, tenant: NewTenant,
                                        admin: AdminClient) -> None:
    result = await asyncio.to_thread(platform.cli, "quota", "set", tenant.name,
                                     "--max-running", "3", "--submit-rate", "12.5")
    assert result.returncode == 0, result.stderr
    shown = await asyncio.to_thread(platform.cli, "quota", "get", tenant.name)
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines() if line.strip()}
    assert "3" in lines["max_running_jobs"] and "(set)" in lines["max_running_jobs"]
    assert "12.5" in lines["submit_rate_per_s"]
    assert "(default)" in lines["max_queued_jobs"]
    assert (await admin.get_quota(tenant.id)).quota.max_running_jobs == 3
    bad = await asyncio.to_thread(platform.cli, "quota", "set", tenant.name,
                                  "--max-memory-bytes", str(1 << 40))
    assert bad.returncode == 1 and "max_memory_bytes" in bad.stderr
