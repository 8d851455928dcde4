"""Attacks on the worker gateway, each refused, against the real platform.

Before worker tokens, anyone who reached the gateway's port could claim any job whose id
they knew (reading its source), stream fake output and a fake result for it, charge its
tenant a day of CPU, dead-letter it, or add languages to everyone's catalogue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from sluice.client import SluiceClient, bearer
from sluice.message_limits import MAX_OUTPUT_CHUNK_BYTES
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import admin_service_pb2_grpc as adm_grpc
from sluice.v1 import job_pb2 as pb
from sluice.v1 import worker_gateway_pb2 as gw
from sluice.v1 import worker_gateway_pb2_grpc as gw_grpc
from tests.conftest import python_job, wait_for_languages
from tests.support.admin import AdminClient
from tests.support.broker import RunVhost
from tests.support.platform import REPO, Platform

Metadata = tuple[tuple[str, str], ...]
GATEWAY_METHODS = gw.DESCRIPTOR.services_by_name["WorkerGateway"].methods
DAY_MS = 86_400_000
SLOW_JOB = ('import time\nprint("started", flush=True)\ntime.sleep(2)\n'
            'print("done", flush=True)\n')


@asynccontextmanager
async def gateway(stack: Platform) -> AsyncIterator[gw_grpc.WorkerGatewayStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.gateway_port}") as channel:
        yield gw_grpc.WorkerGatewayStub(channel)


async def each_gateway_rpc(stub: gw_grpc.WorkerGatewayStub, job_id: str,
                           metadata: Metadata) -> dict[str, grpc.aio.AioRpcError]:
    """Calls every WorkerGateway method as a worker would (RunJob with a claim on a real
    job); returns each one's error. A method that answers fails the test."""
    requests = {
        "RegisterWorker": gw.RegisterWorkerRequest(
            worker_id="intruder", languages=[pb.Language(id="evil")]),
        "ReportDeadLetter": gw.ReportDeadLetterRequest(job_id=job_id, reason="forged"),
    }
    errors: dict[str, grpc.aio.AioRpcError] = {}
    for method in GATEWAY_METHODS:
        try:
            if method.name == "RunJob":
                call = stub.RunJob(metadata=metadata)
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    # The gateway may refuse the stream before the claim is out; the read
                    # says why.
                    await call.write(gw.RunJobRequest(claim=gw.Claim(job_id=job_id,
                                                                     worker_id="worker-1")))
                answer = await call.read()
                raise AssertionError(f"RunJob answered an unauthenticated claim: {answer}")
            answer = await getattr(stub, method.name)(requests[method.name],
                                                     metadata=metadata, timeout=10)
            raise AssertionError(f"{method.name} answered: {answer}")
        except grpc.aio.AioRpcError as exc:
            errors[method.name] = exc
    return errors


async def submitted(client: SluiceClient, source: str = "print('hi')") -> str:
    return (await client.submit(python_job(source))).id


async def test_no_token_and_no_gateway_rpc(platform: Platform, client: SluiceClient) -> None:
    job_id = await submitted(client)
    async with gateway(platform) as stub:
        errors = await each_gateway_rpc(stub, job_id, ())
    assert set(errors) == {method.name for method in GATEWAY_METHODS}
    for name, exc in errors.items():
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, (name, exc)
        assert "worker token" in exc.details(), (name, exc.details())
        assert "sluice worker-token create" in exc.details()
    forged = await client.get(job_id)
    assert forged.state != pb.JOB_STATE_DEAD_LETTERED


async def test_a_tenant_key_is_no_worker_token(platform: Platform, client: SluiceClient,
                                               tenant_key: str) -> None:
    admin_key = platform.create_tenant(f"ops-{uuid.uuid4().hex[:6]}", admin=True)
    job_id = await submitted(client)
    async with gateway(platform) as stub:
        for key in (tenant_key, admin_key, "swt_" + "A" * 43):
            errors = await each_gateway_rpc(stub, job_id, bearer(key))
            for name, exc in errors.items():
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, (name, exc)
                expected = "unknown or revoked" if key.startswith("swt_") else "not an API key"
                assert expected in exc.details(), (name, exc.details())


async def test_a_worker_token_is_no_api_key(platform: Platform) -> None:
    token = platform.worker_token(f"pool-{uuid.uuid4().hex[:6]}")
    async with SluiceClient(platform.api_target, token) as as_tenant:
        for call in (as_tenant.languages(), as_tenant.submit(python_job("print(1)")),
                     as_tenant.get("0" * 28)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "worker token" in refused.value.details()
    async with grpc.aio.insecure_channel(platform.api_target) as channel:
        admin = adm_grpc.AdminServiceStub(channel)
        for call in (admin.ListTenants(adm.ListTenantsRequest(), metadata=bearer(token)),
                     admin.CreateWorkerToken(adm.CreateWorkerTokenRequest(name="mine"),
                                             metadata=bearer(token))):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "worker token" in refused.value.details()


async def test_a_forged_report_on_another_identitys_lease_is_refused(
        platform: Platform, client: SluiceClient) -> None:
    """worker-1 runs the job; an intruder with a token of its own, calling itself worker-1,
    cannot take the job over, read its source, report for it or dead-letter it."""
    job_id = await submitted(client, SLOW_JOB)
    async with asyncio.timeout(60):
        async for event in client.watch(job_id):
            if event.HasField("output"):
                break  # running on worker-1, which holds the lease
    intruder = platform.worker_token(f"intruder-{uuid.uuid4().hex[:6]}")
    async with gateway(platform) as stub:
        call = stub.RunJob(metadata=bearer(intruder))
        await call.write(gw.RunJobRequest(claim=gw.Claim(job_id=job_id, worker_id="worker-1")))
        answer = await call.read()
        assert answer.WhichOneof("command") == "refusal", answer
        assert answer.refusal.reason == gw.REFUSAL_REASON_LEASED
        # The stream is over for the intruder: its forged reports go nowhere.
        try:
            await call.write(gw.RunJobRequest(output=pb.OutputChunk(
                stream=pb.OUTPUT_STREAM_STDOUT, data=b"forged")))
            await call.write(gw.RunJobRequest(result=pb.Result(
                verdict=pb.VERDICT_OK, stdout=b"forged", usage=pb.Usage(cpu_time_ms=DAY_MS))))
            after = await call.read()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            after = grpc.aio.EOF
        assert after is grpc.aio.EOF
        letter = await stub.ReportDeadLetter(
            gw.ReportDeadLetterRequest(job_id=job_id, reason="forged"),
            metadata=bearer(intruder), timeout=10)
        assert not letter.current
    job = await client.wait(job_id)
    assert job.state == pb.JOB_STATE_SUCCEEDED and job.attempt == 1
    assert job.result.stdout == b"started\ndone\n"
    assert job.result.usage.cpu_time_ms < DAY_MS


# Revocation ---------------------------------------------------------------------------


@pytest.fixture
def stacks(vhost: RunVhost, tmp_path: Path) -> Iterator[list[Platform]]:
    made: list[Platform] = []
    yield made
    for stack in made:
        stack.stop()


def new_stack(made: list[Platform], vhost: RunVhost, tmp_path: Path,
              env: dict[str, str] | None = None) -> Platform:
    stack = Platform(tmp_path / f"s{len(made)}", vhost.amqp_url(),
                     prefix=f"{tmp_path.name}-{len(made)}", extra_env=env)
    stack.workdir.mkdir()
    made.append(stack)
    stack.start_control_plane()
    return stack


@pytest.mark.parametrize("revoked_through", ["admin-service", "cli"])
async def test_a_revoked_tokens_stream_ends_and_its_job_runs_again(
        revoked_through: str, vhost: RunVhost, tmp_path: Path,
        stacks: list[Platform]) -> None:
    stack = await asyncio.to_thread(new_stack, stacks, vhost, tmp_path)
    admin_key = await asyncio.to_thread(stack.create_tenant, "ops", admin=True)
    await asyncio.to_thread(stack.start_worker)
    await asyncio.to_thread(wait_for_languages, stack, admin_key)
    async with AdminClient(stack.api_target, admin_key) as admin:
        tenant = await admin.create_tenant("team")
        async with SluiceClient(stack.api_target, tenant.key) as client:
            job_id = await submitted(client, SLOW_JOB)
            async with asyncio.timeout(60):
                async for event in client.watch(job_id):
                    if event.HasField("output"):
                        break
            if revoked_through == "cli":
                # Straight into the store: the control plane hears of it at its next check.
                result = await asyncio.to_thread(stack.cli, "worker-token", "revoke",
                                                 "worker-1")
                assert result.returncode == 0, result.stderr
            else:
                reply = await admin.stub.RevokeWorkerToken(
                    adm.RevokeWorkerTokenRequest(id="worker-1"), metadata=admin.metadata,
                    timeout=10)
                assert reply.worker_token.name == "worker-1"
                assert reply.worker_token.HasField("revoke_time")
            await asyncio.to_thread(stack.start_worker)  # worker-2, with a live token
            job = await client.wait(job_id, within_s=120)
            trail = await admin.audit(job_id=job_id)
    status = await asyncio.to_thread(stack.wait_exited, "worker-1", 120)
    assert status != 0
    assert "worker_token_refused" in stack.log("worker-1")
    assert job.state == pb.JOB_STATE_SUCCEEDED and job.attempt == 2
    assert job.result.stdout == b"started\ndone\n"
    started = [event.actor for event in trail if event.action == "started"]
    assert started == ["worker:worker-1", "worker:worker-2"]
    assert "retried" in [event.action for event in trail]


# What a worker reports, re-checked --------------------------------------------------------


@pytest.fixture(scope="module")
def bare(vhost: RunVhost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A control plane without workers: the tests' own rogue worker talks to it."""
    workdir = tmp_path_factory.mktemp("bare")
    stack = Platform(workdir, vhost.amqp_url(), prefix=f"bare-{uuid.uuid4().hex[:6]}",
                     extra_env={"SLUICE_WORKER_REGISTER_INTERVAL_S": "1"})
    stack.start_control_plane()
    try:
        yield stack
    finally:
        stack.stop()


@asynccontextmanager
async def rogue_worker(stack: Platform, language: str = "python"
                       ) -> AsyncIterator[tuple[gw_grpc.WorkerGatewayStub, Metadata]]:
    """A worker with a valid token that lies; it keeps its language registered meanwhile."""
    token = await asyncio.to_thread(stack.worker_token, f"rogue-{uuid.uuid4().hex[:6]}")
    metadata = bearer(token)
    async with gateway(stack) as stub:
        async def register() -> None:
            while True:
                await stub.RegisterWorker(gw.RegisterWorkerRequest(
                    worker_id="rogue", languages=[pb.Language(id=language)]),
                    metadata=metadata, timeout=10)
                await asyncio.sleep(0.5)

        registering = asyncio.create_task(register())
        try:
            yield stub, metadata
        finally:
            registering.cancel()


async def run_as_rogue(stub: gw_grpc.WorkerGatewayStub, metadata: Metadata,
                       job_id: str, reports: list[gw.RunJobRequest]) -> None:
    call = stub.RunJob(metadata=metadata)
    await call.write(gw.RunJobRequest(claim=gw.Claim(job_id=job_id, worker_id="rogue")))
    assert (await call.read()).HasField("assignment")
    for report in reports:
        await call.write(report)
    assert (await call.read()).HasField("result_accepted")
    call.cancel()


@asynccontextmanager
async def tenant_on(stack: Platform) -> AsyncIterator[tuple[AdminClient, str, SluiceClient]]:
    admin_key = await asyncio.to_thread(stack.create_tenant, f"ops-{uuid.uuid4().hex[:6]}",
                                        admin=True)
    async with AdminClient(stack.api_target, admin_key) as admin:
        tenant = await admin.create_tenant("team")
        async with SluiceClient(stack.api_target, tenant.key) as client:
            yield admin, tenant.id, client


async def submit_when_listed(client: SluiceClient, **fields: object) -> str:
    async with asyncio.timeout(60):
        while "python" not in {language.id for language in await client.languages()}:
            await asyncio.sleep(0.2)
    return (await client.submit(python_job("print('hi')", **fields))).id


async def test_output_over_the_jobs_limit_is_cut(bare: Platform) -> None:
    async with tenant_on(bare) as (_, _, client), rogue_worker(bare) as (stub, metadata):
        job_id = await submit_when_listed(client, limits=pb.Limits(max_output_bytes=1000))
        await run_as_rogue(stub, metadata, job_id, [
            gw.RunJobRequest(output=pb.OutputChunk(stream=pb.OUTPUT_STREAM_STDOUT,
                                                   data=b"o" * 600)),
            gw.RunJobRequest(output=pb.OutputChunk(stream=pb.OUTPUT_STREAM_STDERR,
                                                   data=b"e" * 600)),
            # Chunks as large as the gateway takes, far past the job's limit.
            *[gw.RunJobRequest(output=pb.OutputChunk(stream=pb.OUTPUT_STREAM_STDOUT,
                                                     data=b"o" * MAX_OUTPUT_CHUNK_BYTES))
              for _ in range(4)],
            gw.RunJobRequest(result=pb.Result(verdict=pb.VERDICT_OK)),
        ])
        job = await client.wait(job_id)
        streamed = [e.output.data for e in [e async for e in client.watch(job_id)]
                    if e.HasField("output")]
    assert job.result.stdout == b"o" * 600 and job.result.stderr == b"e" * 400
    assert sum(map(len, streamed)) == 1000  # watchers never saw more either
    assert job.result.stdout_truncated and job.result.stderr_truncated
    assert job.result.verdict == pb.VERDICT_OUTPUT_LIMIT_EXCEEDED


async def test_absurd_usage_does_not_charge_a_day_of_cpu(bare: Platform) -> None:
    async with tenant_on(bare) as (admin, tenant_id, client), \
            rogue_worker(bare) as (stub, metadata):
        job_id = await submit_when_listed(client, limits=pb.Limits(cpu_time_ms=2000,
                                                                   wall_time_ms=4000))
        await run_as_rogue(stub, metadata, job_id, [gw.RunJobRequest(result=pb.Result(
            verdict=pb.VERDICT_OK,
            usage=pb.Usage(cpu_time_ms=DAY_MS, wall_time_ms=DAY_MS,
                           peak_memory_bytes=1 << 50)))])
        job = await client.wait(job_id)
        usage = (await admin.get_quota(tenant_id)).usage
    assert job.state == pb.JOB_STATE_SUCCEEDED
    # At most a compile and a run, each within the job's 2 s, and the sandbox's margin.
    assert job.result.usage.cpu_time_ms <= 2 * 2000 + 1000
    assert job.result.usage.peak_memory_bytes <= job.limits.memory_bytes
    assert 0 < usage.cpu_seconds_last_day <= 5.0


@pytest.mark.parametrize(("report", "field"), [
    (gw.RunJobRequest(output=pb.OutputChunk(stream=7, data=b"x")), "output.stream is 7"),
    (gw.RunJobRequest(result=pb.Result(verdict=99)), "result.verdict is 99"),
])
async def test_a_report_outside_the_contracts_values_is_refused(
        bare: Platform, report: gw.RunJobRequest, field: str) -> None:
    async with tenant_on(bare) as (_, _, client), rogue_worker(bare) as (stub, metadata):
        job_id = await submit_when_listed(client)
        call = stub.RunJob(metadata=metadata)
        await call.write(gw.RunJobRequest(claim=gw.Claim(job_id=job_id, worker_id="rogue")))
        assert (await call.read()).HasField("assignment")
        await call.write(report)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (refused.value.details() or "")
        job = await client.get(job_id)
        seen: list[pb.JobEvent] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                async for event in client.watch(job_id):
                    seen.append(event)
    # Nothing of it stored: no output, no result (the attempt is dropped and runs again).
    assert job.state in (pb.JOB_STATE_RUNNING, pb.JOB_STATE_QUEUED)
    assert not job.HasField("result")
    assert seen and not any(e.HasField("output") or e.HasField("result") for e in seen)


async def test_languages_leave_the_catalogue_when_their_worker_goes(bare: Platform) -> None:
    language = f"lang{uuid.uuid4().hex[:6]}"
    async with tenant_on(bare) as (_, _, client):
        async with rogue_worker(bare, language):
            async with asyncio.timeout(60):
                while language not in {lang.id for lang in await client.languages()}:
                    await asyncio.sleep(0.2)
        # The worker stopped registering (gone): three intervals later it is not listed.
        async with asyncio.timeout(60):
            while language in {lang.id for lang in await client.languages()}:
                await asyncio.sleep(0.2)
        request = python_job("print(1)")
        request.language = language
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.submit(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# The worker's side: a missing or refused token stops it, saying so ----------------------


@pytest.mark.parametrize("service", ["worker", "recovery"])
def test_a_missing_token_stops_the_service_at_start(service: str, tmp_path: Path) -> None:
    env = {**os.environ, "SLUICE_WORKER_TOKEN": "",
           "SLUICE_STORE_URL": f"sqlite:///{tmp_path / 'sluice.db'}"}
    result = subprocess.run([sys.executable, "-m", "sluice.cli", service], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SLUICE_WORKER_TOKEN" in lines[0] and "sluice worker-token create" in lines[0]


@pytest.mark.parametrize("token", ["swt_" + "B" * 43, "sk_not-a-worker-token"])
async def test_a_refused_token_stops_the_worker(token: str, bare: Platform) -> None:
    name = await asyncio.to_thread(bare.start_worker, {"SLUICE_WORKER_TOKEN": token})
    status = await asyncio.to_thread(bare.wait_exited, name, 120)
    log = bare.log(name)
    assert status != 0
    assert "worker_token_refused" in log and "SLUICE_WORKER_TOKEN" in log


# The operator's side: AdminService mints, lists and revokes, for admin keys only ----------


async def test_worker_tokens_through_admin_service(platform: Platform, tenant_key: str) -> None:
    admin_key = await asyncio.to_thread(platform.create_tenant,
                                        f"ops-{uuid.uuid4().hex[:6]}", admin=True)
    name = f"pool-{uuid.uuid4().hex[:6]}"
    async with AdminClient(platform.api_target, admin_key) as admin:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin.stub.CreateWorkerToken(adm.CreateWorkerTokenRequest(name=name),
                                               metadata=bearer(tenant_key), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        for bad in ("-rf", "@opts", ""):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await admin.stub.CreateWorkerToken(adm.CreateWorkerTokenRequest(name=bad),
                                                   metadata=admin.metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "name" in refused.value.details()
        made = await admin.stub.CreateWorkerToken(adm.CreateWorkerTokenRequest(name=name),
                                                  metadata=admin.metadata, timeout=10)
        assert made.secret.startswith("swt_") and made.worker_token.name == name
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin.stub.CreateWorkerToken(adm.CreateWorkerTokenRequest(name=name),
                                               metadata=admin.metadata, timeout=10)
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS

        async with gateway(platform) as stub:
            await stub.RegisterWorker(gw.RegisterWorkerRequest(worker_id=name),
                                      metadata=bearer(made.secret), timeout=10)
            listed = await admin.stub.ListWorkerTokens(adm.ListWorkerTokensRequest(),
                                                       metadata=admin.metadata, timeout=10)
            mine = [t for t in listed.worker_tokens if t.name == name]
            assert len(mine) == 1 and mine[0].prefix == made.secret[:10]
            assert made.secret not in str(listed)
            await admin.stub.RevokeWorkerToken(
                adm.RevokeWorkerTokenRequest(id=made.worker_token.id), metadata=admin.metadata,
                timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RegisterWorker(gw.RegisterWorkerRequest(worker_id=name),
                                          metadata=bearer(made.secret), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        live = await admin.stub.ListWorkerTokens(adm.ListWorkerTokensRequest(),
                                                 metadata=admin.metadata, timeout=10)
        assert name not in {t.name for t in live.worker_tokens}
        every = await admin.stub.ListWorkerTokens(
            adm.ListWorkerTokensRequest(include_revoked=True), metadata=admin.metadata,
            timeout=10)
        assert any(t.name == name and t.HasField("revoke_time") for t in every.worker_tokens)
        trail = [e for e in await admin.audit(action="worker_token_created")
                 if e.detail.fields["name"].string_value == name]
        assert len(trail) == 1 and trail[0].actor.startswith("key:")
