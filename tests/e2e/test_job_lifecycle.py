"""A job's whole path through the real platform: submit, stream, result, stored."""

from __future__ import annotations

import asyncio
import time

from sluice.client import SluiceClient
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job

STREAMING = """
import sys, time
for i in range(3):
    print(f"tick {i}", flush=True)
    time.sleep(0.4)
print("to stderr", file=sys.stderr, flush=True)
"""


async def test_output_streams_while_the_program_runs(client: SluiceClient) -> None:
    job = await client.submit(python_job(STREAMING))
    assert job.state == pb.JOB_STATE_QUEUED
    assert job.id
    arrivals: list[tuple[float, bytes]] = []
    states: list[int] = []
    result = None
    async with asyncio.timeout(60):
        async for event in client.watch(job.id):
            if event.HasField("output") and event.output.stream == pb.OUTPUT_STREAM_STDOUT:
                arrivals.append((time.monotonic(), event.output.data))
            elif event.HasField("state_change"):
                states.append(event.state_change.state)
            elif event.HasField("result"):
                result = event.result
    assert states == [pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING, pb.JOB_STATE_SUCCEEDED]
    assert b"".join(data for _, data in arrivals) == b"tick 0\ntick 1\ntick 2\n"
    # Streamed, not delivered at the end: the first tick arrived well before the last.
    assert len(arrivals) >= 2
    assert arrivals[-1][0] - arrivals[0][0] > 0.3
    assert result is not None and result.verdict == pb.VERDICT_OK
    stored = await client.get(job.id)
    assert stored.state == pb.JOB_STATE_SUCCEEDED
    assert stored.result.stdout == b"tick 0\ntick 1\ntick 2\n"
    assert stored.result.stderr == b"to stderr\n"
    assert stored.result.exit_code == 0
    assert stored.attempt == 1
    assert stored.result.usage.wall_time_ms > 0
    assert stored.start_time.seconds and stored.end_time.seconds


async def test_stdin_and_args_reach_the_program(client: SluiceClient) -> None:
    source = "import sys\nprint(sys.argv[1:])\nprint(sys.stdin.read().upper(), end='')\n"
    job = await client.submit(python_job(source, stdin=b"hello\nworld\n",
                                         args=["--flag", "two words"]))
    done = await client.wait(job.id)
    assert done.result.verdict == pb.VERDICT_OK
    assert done.result.stdout == b"['--flag', 'two words']\nHELLO\nWORLD\n"


async def test_non_zero_exit_is_a_runtime_error_with_its_code(client: SluiceClient) -> None:
    job = await client.submit(python_job("import sys\nprint('bye')\nsys.exit(3)\n"))
    done = await client.wait(job.id)
    assert done.state == pb.JOB_STATE_FAILED
    assert done.result.verdict == pb.VERDICT_RUNTIME_ERROR
    assert done.result.exit_code == 3
    assert done.result.stdout == b"bye\n"
    assert done.attempt == 1  # a program's own failure is a result, not a retry


async def test_compiled_language_runs(client: SluiceClient) -> None:
    source = b'#include <stdio.h>\nint main(void){puts("hi from c");return 0;}\n'
    job = await client.submit(api.SubmitJobRequest(
        language="c", files=[pb.File(name="main.c", content=source)]))
    done = await client.wait(job.id)
    assert done.result.verdict == pb.VERDICT_OK, done.result
    assert done.result.stdout == b"hi from c\n"


async def test_same_program_same_result_fields(client: SluiceClient) -> None:
    request = python_job("import sys\nprint(sys.stdin.read()[::-1])\n", stdin=b"abc")
    first = await client.wait((await client.submit(request)).id)
    second = await client.wait((await client.submit(request)).id)
    for result in (first.result, second.result):
        result.ClearField("usage")
    assert first.result == second.result


async def test_idempotency_key_returns_the_same_job_and_runs_it_once(
        client: SluiceClient) -> None:
    request = python_job("print('once')", idempotency_key=f"idem-{time.time_ns()}")
    first = await client.submit(request)
    second = await client.submit(request)
    assert first.id == second.id
    done = await client.wait(first.id)
    third = await client.submit(request)
    assert third.id == first.id and third.state == pb.JOB_STATE_SUCCEEDED
    events = [event async for event in client.watch(first.id)]
    running = [e for e in events
               if e.HasField("state_change") and e.state_change.state == pb.JOB_STATE_RUNNING]
    assert len(running) == 1
    assert done.result.stdout == b"once\n"


async def test_watch_resumes_after_seq_without_loss_or_duplicates(
        client: SluiceClient) -> None:
    job = await client.submit(python_job(
        "import time\nfor i in range(6):\n    print(i, flush=True)\n    time.sleep(0.2)\n"))
    first_part: list[pb.JobEvent] = []
    async for event in client.watch(job.id):
        first_part.append(event)
        if event.HasField("output"):
            break  # the caller goes away mid-stream
    rest = [event async for event in client.watch(job.id, after_seq=first_part[-1].seq)]
    replay = [event async for event in client.watch(job.id)]
    seqs = [event.seq for event in first_part + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert first_part + rest == replay
    output = b"".join(e.output.data for e in replay if e.HasField("output"))
    assert output == b"0\n1\n2\n3\n4\n5\n"
    assert replay[-1].state_change.state == pb.JOB_STATE_SUCCEEDED


async def test_watching_a_finished_job_replays_it(client: SluiceClient) -> None:
    job = await client.submit(python_job("print('done')"))
    await client.wait(job.id)
    events = [event async for event in client.watch(job.id)]
    assert events[0].state_change.state == pb.JOB_STATE_QUEUED
    assert any(e.HasField("result") and e.result.stdout == b"done\n" for e in events)
    assert events[-1].state_change.state == pb.JOB_STATE_SUCCEEDED


async def test_list_jobs_pages_and_filters(client: SluiceClient) -> None:
    label = f"batch-{time.time_ns()}"
    ids = []
    for i in range(5):
        job = await client.submit(python_job(f"print({i})", labels={"batch": label}))
        ids.append(job.id)
    for job_id in ids:
        await client.wait(job_id)
    seen: list[str] = []
    token = ""
    while True:
        page = await client.stub.ListJobs(
            api.ListJobsRequest(page_size=2, page_token=token, labels={"batch": label}),
            metadata=client.metadata)
        seen.extend(job.id for job in page.jobs)
        assert len(page.jobs) <= 2
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))
    failed = await client.stub.ListJobs(
        api.ListJobsRequest(states=[pb.JOB_STATE_FAILED], labels={"batch": label}),
        metadata=client.metadata)
    assert list(failed.jobs) == []


async def test_list_languages_names_what_workers_run(client: SluiceClient) -> None:
    ids = {language.id for language in await client.languages()}
    assert {"python", "c", "cpp", "javascript", "bash"} <= ids
