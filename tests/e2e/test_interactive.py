"""Interactive jobs: stdin fed live through AttachJob, answers streamed back."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from sluice.client import Attachment, SluiceClient
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job

ECHO_UPPER = """
import sys
for line in sys.stdin:
    print(line.strip().upper(), flush=True)
print("eof", flush=True)
"""

ECHO_UPPER_C = b"""
#include <stdio.h>
#include <ctype.h>
int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        for (char *p = line; *p; p++) *p = toupper((unsigned char)*p);
        fputs(line, stdout);
        fflush(stdout);
    }
    puts("eof");
    return 0;
}
"""


async def read_stdout_until(attachment: Attachment, wanted: bytes, within_s: float = 60
                            ) -> tuple[bytes, int]:
    """stdout read until it ends with `wanted`; (what was read, the last seq)."""
    seen = b""
    seq = 0
    async with asyncio.timeout(within_s):
        while not seen.endswith(wanted):
            event = await attachment.next_event()
            assert event is not None, (f"the stream ended; stdout so far {seen!r}",
                                       await attachment.call.code(),
                                       await attachment.call.details())
            seq = event.seq
            if event.HasField("output") and event.output.stream == pb.OUTPUT_STREAM_STDOUT:
                seen += event.output.data
    return seen, seq


async def rest_of(attachment: Attachment) -> list[pb.JobEvent]:
    async with asyncio.timeout(60):
        return [event async for event in attachment.events()]


@pytest.mark.parametrize("language", ["python", "c"])
async def test_each_line_is_answered_before_the_next_is_sent(client: SluiceClient,
                                                             language: str) -> None:
    if language == "python":
        request = python_job(ECHO_UPPER, interactive=True)
    else:
        request = api.SubmitJobRequest(language="c", interactive=True,
                                       files=[pb.File(name="main.c", content=ECHO_UPPER_C)])
    job = await client.submit(request)
    attachment = await client.attach(job.id)
    for word in (b"alpha", b"beta", b"gamma"):
        await attachment.send(word + b"\n")
        seen, _ = await read_stdout_until(attachment, word.upper() + b"\n")
        assert seen == word.upper() + b"\n"  # this line's answer, and nothing ahead of it
    await attachment.close_stdin()
    tail = await rest_of(attachment)
    assert b"".join(e.output.data for e in tail if e.HasField("output")) == b"eof\n"
    done = await client.get(job.id)
    assert done.result.verdict == pb.VERDICT_OK
    assert done.result.stdout == b"ALPHA\nBETA\nGAMMA\neof\n"


async def test_input_sent_before_the_job_starts_is_held_in_order(
        client: SluiceClient) -> None:
    # Held QUEUED behind a job of the same ordering key while the input is sent.
    blocker = await client.submit(python_job("import time\ntime.sleep(2)\n",
                                             ordering_key="held-stdin"))
    job = await client.submit(python_job(ECHO_UPPER, interactive=True,
                                         ordering_key="held-stdin"))
    attachment = await client.attach(job.id)
    for piece in (b"one\n", b"tw", b"o\nthree\n"):
        await attachment.send(piece)
    await attachment.close_stdin()
    assert (await client.get(job.id)).state == pb.JOB_STATE_QUEUED
    events = await rest_of(attachment)
    stdout = b"".join(e.output.data for e in events if e.HasField("output"))
    assert stdout == b"ONE\nTWO\nTHREE\neof\n"
    assert (await client.get(blocker.id)).state == pb.JOB_STATE_SUCCEEDED


async def test_close_stdin_is_eof_and_an_unattached_job_ends_at_its_wall_time(
        client: SluiceClient) -> None:
    reader = await client.submit(python_job(
        "import sys\ndata = sys.stdin.read()\nprint(len(data), 'bytes then eof')\n",
        interactive=True))
    attachment = await client.attach(reader.id)
    await attachment.send(b"12345")
    await attachment.close_stdin()
    await rest_of(attachment)
    assert (await client.get(reader.id)).result.stdout == b"5 bytes then eof\n"

    forgotten = await client.submit(python_job(
        "import sys\nsys.stdin.read()\n", interactive=True,
        limits=pb.Limits(wall_time_ms=1500)))
    done = await client.wait(forgotten.id)
    assert done.result.verdict == pb.VERDICT_TIME_LIMIT_EXCEEDED


async def test_detach_and_reattach_with_after_seq(client: SluiceClient) -> None:
    job = await client.submit(python_job(ECHO_UPPER, interactive=True))
    first = await client.attach(job.id)
    await first.send(b"before\n")
    _, seq = await read_stdout_until(first, b"BEFORE\n")
    first.detach()
    second = await client.attach(job.id, after_seq=seq)
    await second.send(b"after\n")
    seen, _ = await read_stdout_until(second, b"AFTER\n")
    assert seen == b"AFTER\n"  # nothing before after_seq again
    await second.close_stdin()
    await rest_of(second)
    done = await client.get(job.id)
    assert done.result.stdout == b"BEFORE\nAFTER\neof\n"


async def test_stdin_over_the_cap_is_refused_and_nothing_of_it_is_taken(
        platform: object, client: SluiceClient) -> None:
    cap = client_cap()
    job = await client.submit(python_job(
        "import sys\nprint(len(sys.stdin.buffer.read()))\n", interactive=True))
    attachment = await client.attach(job.id)
    await attachment.send(b"x" * (cap - 10))
    await attachment.send(b"y" * 11)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await rest_of(attachment)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "SLUICE_MAX_STDIN_BYTES" in (refused.value.details() or "")
    assert str(cap) in (refused.value.details() or "")
    again = await client.attach(job.id)
    await again.send(b"z" * 10)  # exactly the cap: taken
    await again.close_stdin()
    await rest_of(again)
    assert (await client.get(job.id)).result.stdout == f"{cap}\n".encode()


async def test_stdin_for_a_job_that_is_not_interactive_is_refused(
        client: SluiceClient) -> None:
    job = await client.submit(python_job("import time\ntime.sleep(5)\n"))
    attachment = await client.attach(job.id)
    await attachment.send(b"hello\n")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await rest_of(attachment)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "interactive" in (refused.value.details() or "")
    await client.cancel(job.id)


def client_cap() -> int:
    from sluice.settings import get_settings

    return get_settings().max_stdin_bytes


@pytest.mark.parametrize(("first", "code", "named"), [
    (api.AttachJobRequest(), grpc.StatusCode.INVALID_ARGUMENT, "job_id"),
    (api.AttachJobRequest(job_id="x", stdin=b"early"), grpc.StatusCode.INVALID_ARGUMENT,
     "stdin"),
    (api.AttachJobRequest(job_id="0" * 28), grpc.StatusCode.NOT_FOUND, "not found"),
])
async def test_a_bad_first_message_is_refused_naming_the_field(
        client: SluiceClient, first: api.AttachJobRequest, code: grpc.StatusCode,
        named: str) -> None:
    call = client.stub.AttachJob(metadata=client.metadata)
    await call.write(first)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    assert refused.value.code() == code
    assert named in (refused.value.details() or "")


async def test_another_tenants_job_cannot_be_attached(client: SluiceClient,
                                                      other_client: SluiceClient) -> None:
    job = await client.submit(python_job(ECHO_UPPER, interactive=True,
                                         limits=pb.Limits(wall_time_ms=2000)))
    intruder = await other_client.attach(job.id)
    await intruder.send(b"rm -rf /\n")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await rest_of(intruder)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    done = await client.wait(job.id)
    assert done.result.stdout == b""  # nothing of the intruder's reached the program
