"""Every refusal: a gRPC status a client can branch on and a message naming the field."""

from __future__ import annotations

import asyncio
import collections

import grpc
import pytest

from sluice.client import SluiceClient
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import execution_service_pb2_grpc as api_grpc
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job
from tests.support.platform import Platform


async def expect(code: grpc.StatusCode, call, *words: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    for word in words:
        assert word in caught.value.details(), caught.value.details()
    return caught.value.details()


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (api.SubmitJobRequest(language="cobol", files=[pb.File(name="a", content=b"x")]),
         ["language", "cobol", "python"]),
        (api.SubmitJobRequest(files=[pb.File(name="a.py", content=b"x")]), ["language"]),
        (api.SubmitJobRequest(language="python"), ["files"]),
        (api.SubmitJobRequest(language="python",
                              files=[pb.File(name="main.py", content=b"#" * (1024 * 1024 + 1))]),
         ["files", "1048576"]),
        (api.SubmitJobRequest(language="python",
                              files=[pb.File(name="../etc/passwd", content=b"x")]),
         ["files[0].name"]),
        (api.SubmitJobRequest(language="python", files=[pb.File(name="a.py", content=b"x"),
                                                        pb.File(name="a.py", content=b"y")]),
         ["files[1].name", "twice"]),
        (python_job("x", limits=pb.Limits(wall_time_ms=600_000)),
         ["limits.wall_time_ms", "600000", "60000"]),
        (python_job("x", limits=pb.Limits(memory_bytes=1 << 40)), ["limits.memory_bytes"]),
        (python_job("x", limits=pb.Limits(max_processes=100_000)), ["limits.max_processes"]),
        (python_job("x", limits=pb.Limits(max_output_bytes=1 << 40)),
         ["limits.max_output_bytes"]),
        (python_job("x", limits=pb.Limits(cpu_time_ms=10_000_000)), ["limits.cpu_time_ms"]),
        (python_job("x", stdin=b"x" * (1024 * 1024 + 1)), ["stdin"]),
        (python_job("x", labels={"Bad Key": "v"}), ["labels"]),
        (python_job("x", idempotency_key="k" * 200), ["idempotency_key"]),
    ],
)
async def test_invalid_submissions_name_the_field(client: SluiceClient,
                                                  request_: api.SubmitJobRequest,
                                                  words: list[str]) -> None:
    before = await client.stub.ListJobs(api.ListJobsRequest(page_size=1),
                                        metadata=client.metadata)
    await expect(grpc.StatusCode.INVALID_ARGUMENT, client.submit(request_), *words)
    after = await client.stub.ListJobs(api.ListJobsRequest(page_size=1),
                                       metadata=client.metadata)
    assert list(after.jobs) == list(before.jobs)  # nothing was stored


async def test_no_key_bad_key_and_malformed_header_are_unauthenticated(
        platform: Platform) -> None:
    async with grpc.aio.insecure_channel(platform.api_target) as channel:
        stub = api_grpc.ExecutionServiceStub(channel)
        request = python_job("print(1)")
        await expect(grpc.StatusCode.UNAUTHENTICATED, stub.SubmitJob(request), "authorization")
        await expect(grpc.StatusCode.UNAUTHENTICATED,
                     stub.SubmitJob(request, metadata=(("authorization", "Bearer sk_nope"),)),
                     "unknown or revoked")
        await expect(grpc.StatusCode.UNAUTHENTICATED,
                     stub.SubmitJob(request, metadata=(("authorization", "sk_nope"),)),
                     "Bearer")
        await expect(grpc.StatusCode.UNAUTHENTICATED,
                     stub.GetJob(api.GetJobRequest(job_id="x")), "authorization")


async def test_revoked_key_is_refused_at_once(platform: Platform) -> None:
    key = platform.create_tenant("revocation-team")
    async with SluiceClient(platform.api_target, key) as client:
        await client.languages()
        job = await client.submit(python_job("print('before')"))
        listing = platform.cli("key", "list", "revocation-team")
        key_id = listing.stdout.split()[0]
        assert platform.cli("key", "revoke", key_id).returncode == 0
        await expect(grpc.StatusCode.UNAUTHENTICATED, client.languages(), "revoked")
        # GetJob and WatchJob check the key inside their read of the job: still refused,
        # not answered as the job's owner, nor as NOT_FOUND.
        await expect(grpc.StatusCode.UNAUTHENTICATED, client.get(job.id), "revoked")

        async def watch() -> None:
            async for _ in client.watch(job.id, reconnect=False):
                pass

        await expect(grpc.StatusCode.UNAUTHENTICATED, watch(), "revoked")
        await expect(grpc.StatusCode.UNAUTHENTICATED, client.get(""), "revoked")


async def test_another_tenants_job_is_not_found(client: SluiceClient,
                                                other_client: SluiceClient) -> None:
    job = await client.submit(python_job("print('mine')"))
    await expect(grpc.StatusCode.NOT_FOUND, other_client.get(job.id), job.id)
    await expect(grpc.StatusCode.NOT_FOUND, other_client.cancel(job.id), job.id)

    async def watch() -> None:
        async for _ in other_client.watch(job.id):
            pass

    await expect(grpc.StatusCode.NOT_FOUND, watch(), job.id)
    listing = await other_client.stub.ListJobs(api.ListJobsRequest(),
                                               metadata=other_client.metadata)
    assert job.id not in {j.id for j in listing.jobs}
    done = await client.wait(job.id)
    assert done.result.stdout == b"mine\n"


async def test_unknown_job_is_not_found_and_bad_paging_is_invalid(
        client: SluiceClient) -> None:
    await expect(grpc.StatusCode.NOT_FOUND, client.get("0000nope"), "0000nope")
    await expect(grpc.StatusCode.INVALID_ARGUMENT, client.get(""), "job_id")
    await expect(grpc.StatusCode.INVALID_ARGUMENT,
                 client.stub.ListJobs(api.ListJobsRequest(page_size=5000),
                                      metadata=client.metadata), "page_size")
    await expect(grpc.StatusCode.INVALID_ARGUMENT,
                 client.stub.ListJobs(api.ListJobsRequest(page_token="%%%"),
                                      metadata=client.metadata), "page_token")


async def test_a_burst_of_concurrent_calls_is_answered_not_dropped(
        client: SluiceClient) -> None:
    """A batch client firing thousands of calls at once on one connection: each gets its
    answer. gRPC's default queue of calls not yet picked up holds 1,000 and drops the rest
    at random with a bare CANCELLED, which no client retries."""
    async def code_of_one() -> grpc.StatusCode:
        try:
            await client.get("0000nope")
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*(code_of_one() for _ in range(3000)))
    assert collections.Counter(codes) == {grpc.StatusCode.NOT_FOUND: 3000}
