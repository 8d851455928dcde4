"""A hostile tenant against the real platform's API, each attack refused: a message far
over what a request can be (refused from its length, before it is read), one WatchJob
stream too many, a stream kept open after its key was revoked, CPU spent past the day's
quota by jobs queued before it ran out, and a label key made to break the store's query."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from sluice.client import SluiceClient, bearer
from sluice.grpc_channels import open_channel
from sluice.message_limits import MAX_ARG_CHARS, MAX_LABEL_KEY_CHARS, MAX_LABEL_VALUE_CHARS
from sluice.settings import Settings
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from sluice.v1 import worker_gateway_pb2 as gw
from sluice.v1 import worker_gateway_pb2_grpc as gw_grpc
from tests.conftest import python_job, wait_for_languages
from tests.support.admin import AdminClient, NewTenant
from tests.support.platform import Platform

MIB = 1024 * 1024
SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(60)\n"
# Generous guards against a hang, not timings: the machine may be busy.
WITHIN_S = 120
# Spins on the CPU for 1.5 CPU-seconds, so a quota of 1 CPU-second a day is used up.
BURNER = ("import time\nstart = time.process_time()\n"
          "while time.process_time() - start < 1.5:\n    pass\nprint('burnt', flush=True)\n")


@pytest.fixture(scope="module")
def admin_key(platform: Platform) -> str:
    key = platform.create_tenant(f"ops-{uuid.uuid4().hex[:6]}", admin=True)
    wait_for_languages(platform, key)
    return key


@pytest.fixture
async def admin(platform: Platform, admin_key: str) -> AsyncIterator[AdminClient]:
    async with AdminClient(platform.api_target, admin_key) as client:
        yield client


@pytest.fixture
async def tenant(admin: AdminClient) -> NewTenant:
    return await admin.create_tenant("hostile")


async def refused(call, code: grpc.StatusCode, *words: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == code, error.details()
    for word in words:
        assert word in (error.details() or ""), error.details()
    return error


def sleeper() -> api.SubmitJobRequest:
    """A job that keeps its watchers' streams open until it is cancelled (its wall time
    outlasts the test)."""
    return python_job(SLEEPER, limits=pb.Limits(wall_time_ms=Settings().max_wall_time_ms))


async def wait_state(client: SluiceClient, job_id: str, state: int) -> pb.Job:
    async with asyncio.timeout(WITHIN_S):
        while (job := await client.get(job_id)).state != state:
            await asyncio.sleep(0.05)
    return job


# Message size ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8 * MIB, 64 * MIB], ids=["8MiB", "64MiB"])
async def test_a_huge_submission_is_refused_before_it_is_read(platform: Platform,
                                                              tenant_key: str,
                                                              size: int) -> None:
    request = api.SubmitJobRequest(language="python",
                                   files=[pb.File(name="main.py", content=b"#" * size)])
    async with SluiceClient(platform.api_target, tenant_key) as client:
        # Not INVALID_ARGUMENT from validation: the message never reached the service.
        await refused(client.submit(request, deadline_s=120), grpc.StatusCode.RESOURCE_EXHAUSTED)
        # The connection serves the next call as before.
        assert await client.languages()


@pytest.mark.parametrize("size", [8 * MIB, 64 * MIB], ids=["8MiB", "64MiB"])
async def test_a_huge_message_to_the_gateway_is_refused_before_it_is_read(platform: Platform,
                                                                          size: int) -> None:
    request = gw.RegisterWorkerRequest(worker_id="intruder", slots=1,
                                       languages=[pb.Language(id="x", name="n" * size)])
    async with open_channel(f"127.0.0.1:{platform.gateway_port}", Settings()) as channel:
        await refused(gw_grpc.WorkerGatewayStub(channel).RegisterWorker(request, timeout=120),
                      grpc.StatusCode.RESOURCE_EXHAUSTED)


async def test_the_largest_legitimate_submission_still_fits(platform: Platform,
                                                            tenant: NewTenant) -> None:
    caps = Settings()
    source = b"pass\n" + b"#" * (caps.max_source_bytes - 5)
    request = api.SubmitJobRequest(
        language="python", files=[pb.File(name="main.py", content=source)],
        stdin=b"\xff" * caps.max_stdin_bytes,
        # Four bytes of UTF-8 a character: the most an argument can weigh.
        args=["\U0001F600" * MAX_ARG_CHARS] * caps.max_args,
        labels={f"k{index:02d}" + "x" * (MAX_LABEL_KEY_CHARS - 3):
                "\U0001F600" * MAX_LABEL_VALUE_CHARS for index in range(caps.max_labels)},
        idempotency_key="i" * 128, ordering_key="o" * 128)
    assert request.ByteSize() > 3 * MIB
    async with SluiceClient(platform.api_target, tenant.key) as client:
        job = await client.submit(request, deadline_s=60)
        assert job.state == pb.JOB_STATE_QUEUED
        await client.cancel(job.id)


# WatchJob streams --------------------------------------------------------------------


async def first_event(call: grpc.aio.UnaryStreamCall) -> pb.JobEvent:
    async with asyncio.timeout(WITHIN_S):
        return await call.read()


async def test_one_watch_too_many_is_refused_naming_the_setting(
        platform: Platform, tenant: NewTenant, other_tenant_key: str) -> None:
    cap = Settings().max_watches_per_tenant
    async with SluiceClient(platform.api_target, tenant.key) as client:
        job = await client.submit(sleeper())
        calls = []
        try:
            for _ in range(cap):
                call = client.stub.WatchJob(api.WatchJobRequest(job_id=job.id),
                                            metadata=client.metadata)
                calls.append(call)
                await first_event(call)  # open and counted
            extra = client.stub.WatchJob(api.WatchJobRequest(job_id=job.id),
                                         metadata=client.metadata)
            await refused(first_event(extra), grpc.StatusCode.RESOURCE_EXHAUSTED,
                          "SLUICE_MAX_WATCHES_PER_TENANT", str(cap))
            # The cap is the tenant's own: another tenant watches as before.
            async with SluiceClient(platform.api_target, other_tenant_key) as other:
                theirs = await other.submit(python_job("print('mine')"))
                assert (await other.result(theirs.id, within_s=WITHIN_S)).stdout == b"mine\n"
        finally:
            for call in calls:
                call.cancel()
            await client.cancel(job.id)
        # Ended streams give their places back.
        async with asyncio.timeout(WITHIN_S):
            events = [event async for event in client.watch(job.id)]
        assert events[-1].state_change.state == pb.JOB_STATE_CANCELLED


async def _key_of(admin: AdminClient, tenant: NewTenant) -> tuple[str, str]:
    reply = await admin.stub.CreateApiKey(adm.CreateApiKeyRequest(tenant_id=tenant.id),
                                          metadata=admin.metadata, timeout=10)
    return reply.api_key.id, reply.secret


async def stream_ends_unauthenticated(call: grpc.aio.UnaryStreamCall) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async with asyncio.timeout(30):  # the sleeper keeps it open for 60 s
            while await call.read() is not grpc.aio.EOF:
                pass
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, caught.value.details()
    assert "revoked" in (caught.value.details() or "")


@pytest.mark.parametrize("how", ["RevokeApiKey", "sluice key revoke"])
async def test_a_revoked_keys_open_stream_ends(platform: Platform, admin: AdminClient,
                                               tenant: NewTenant, how: str) -> None:
    key_id, secret = await _key_of(admin, tenant)
    async with SluiceClient(platform.api_target, tenant.key) as owner:
        job = await owner.submit(sleeper())
        try:
            async with SluiceClient(platform.api_target, secret) as watcher:
                call = watcher.stub.WatchJob(api.WatchJobRequest(job_id=job.id),
                                             metadata=watcher.metadata)
                await first_event(call)
                if how == "RevokeApiKey":  # on the process serving the stream
                    await admin.stub.RevokeApiKey(adm.RevokeApiKeyRequest(key_id=key_id),
                                                  metadata=admin.metadata, timeout=10)
                else:  # straight to the store: the process finds out by itself
                    done = await asyncio.to_thread(platform.cli, "key", "revoke", key_id)
                    assert done.returncode == 0, done.stderr
                await stream_ends_unauthenticated(call)
                await refused(watcher.get(job.id), grpc.StatusCode.UNAUTHENTICATED)
        finally:
            await owner.cancel(job.id)


# The CPU quota at claim --------------------------------------------------------------


async def test_a_tenant_over_its_cpu_quota_starts_no_job_it_queued_before(
        platform: Platform, admin: AdminClient, tenant: NewTenant) -> None:
    await admin.set_quota(tenant.id, cpu_seconds_per_day=1, max_running_jobs=1)
    async with SluiceClient(platform.api_target, tenant.key) as client:
        burner = await client.submit(python_job(BURNER))
        await wait_state(client, burner.id, pb.JOB_STATE_RUNNING)
        # Admitted: no CPU is used yet. It is claimed once the burner has used the day's.
        waiting = await client.submit(python_job("print('ran', flush=True)"))
        burnt = await client.wait(burner.id, within_s=WITHIN_S)
        assert burnt.state == pb.JOB_STATE_SUCCEEDED
        assert burnt.result.usage.cpu_time_ms >= 1000

        async with asyncio.timeout(WITHIN_S):
            while "cpu_seconds_per_day" not in (job := await client.get(waiting.id)).state_reason:
                await asyncio.sleep(0.1)
        assert job.state == pb.JOB_STATE_QUEUED
        assert "CPU-seconds in the last 24 hours" in job.state_reason
        trail = await admin.audit(job_id=waiting.id)
        assert "started" not in {event.action for event in trail}
        # A submission now is refused outright, as before.
        await refused(client.submit(python_job("pass")), grpc.StatusCode.RESOURCE_EXHAUSTED,
                      "cpu_seconds_per_day")

        # Room in the day (here: a larger quota) lets it start.
        await admin.set_quota(tenant.id, cpu_seconds_per_day=3600)
        result = await client.result(waiting.id, within_s=WITHIN_S)
        assert result.verdict == pb.VERDICT_OK and result.stdout == b"ran\n"
        assert (await client.get(waiting.id)).state_reason == ""


# Label keys --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ['team"x', "team') OR 1=1 --", "Team", "team\n", "", "a" * 64])
async def test_a_label_key_outside_the_pattern_is_invalid_argument(platform: Platform,
                                                                   tenant_key: str,
                                                                   key: str) -> None:
    async with SluiceClient(platform.api_target, tenant_key) as client:
        await refused(client.stub.ListJobs(api.ListJobsRequest(labels={key: "x"}),
                                           metadata=bearer(tenant_key), timeout=10),
                      grpc.StatusCode.INVALID_ARGUMENT, "labels key", "[a-z0-9]")
        await refused(client.submit(python_job("pass", labels={key: "x"})),
                      grpc.StatusCode.INVALID_ARGUMENT, "labels key", "[a-z0-9]")


async def test_a_label_filter_value_over_the_cap_is_invalid_argument(platform: Platform,
                                                                     tenant_key: str) -> None:
    async with SluiceClient(platform.api_target, tenant_key) as client:
        await refused(client.stub.ListJobs(
            api.ListJobsRequest(labels={"team": "v" * (MAX_LABEL_VALUE_CHARS + 1)}),
            metadata=client.metadata, timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT, "labels['team']", str(MAX_LABEL_VALUE_CHARS))


async def test_a_label_filter_inside_the_pattern_still_finds_its_jobs(platform: Platform,
                                                                      tenant: NewTenant) -> None:
    async with SluiceClient(platform.api_target, tenant.key) as client:
        job = await client.submit(python_job("pass", labels={"team.a/b-c_d": 'say "hi"'}))
        other = await client.submit(python_job("pass", labels={"team.a/b-c_d": "other"}))
        listed = await client.stub.ListJobs(
            api.ListJobsRequest(labels={"team.a/b-c_d": 'say "hi"'}), metadata=client.metadata,
            timeout=10)
        assert [j.id for j in listed.jobs] == [job.id]
        for done in (job, other):
            await client.wait(done.id, within_s=WITHIN_S)
