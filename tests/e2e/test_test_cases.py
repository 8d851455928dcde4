"""Test cases: one compile, one sandboxed run per case, each case's verdict as it ends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from sluice.client import SluiceClient
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job
from tests.support.platform import Platform

# Reads n, prints n*n; 7 crashes (abort), 8 spins forever, 9 prints the wrong answer.
SQUARE_C = b"""
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    long n;
    if (scanf("%ld", &n) != 1) return 2;
    if (n == 7) abort();
    if (n == 8) for (;;) {}
    if (n == 9) { printf("%ld\\n", n + 1); return 0; }
    printf("%ld\\n", n * n);
    return 0;
}
"""


def square_cases(numbers: list[int]) -> list[pb.TestCase]:
    return [pb.TestCase(name=f"case-{n}", stdin=f"{n}\n".encode(),
                        expected_stdout=f"{n * n}\n".encode()) for n in numbers]


async def events_of(client: SluiceClient, job_id: str, within_s: float = 120
                    ) -> list[pb.JobEvent]:
    events = []
    async with asyncio.timeout(within_s):
        async for event in client.watch(job_id):
            events.append(event)
    return events


async def test_ten_cases_one_compile_each_verdict_right(client: SluiceClient) -> None:
    cases = square_cases([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    cases[4].expected_stdout = b"26\n"  # the program is right, the expectation wrong
    job = await client.submit(api.SubmitJobRequest(
        language="c", files=[pb.File(name="main.c", content=SQUARE_C)], test_cases=cases,
        limits=pb.Limits(cpu_time_ms=500, wall_time_ms=2000)))
    events = await events_of(client, job.id)
    streamed = [e.test_case_result for e in events if e.HasField("test_case_result")]
    verdicts = {case.name: pb.Verdict.Name(case.verdict) for case in streamed}
    assert verdicts == {
        "case-1": "VERDICT_OK", "case-2": "VERDICT_OK", "case-3": "VERDICT_OK",
        "case-4": "VERDICT_OK", "case-5": "VERDICT_WRONG_ANSWER", "case-6": "VERDICT_OK",
        "case-7": "VERDICT_SIGNALED", "case-8": "VERDICT_TIME_LIMIT_EXCEEDED",
        "case-9": "VERDICT_WRONG_ANSWER", "case-10": "VERDICT_OK",
    }
    assert [case.name for case in streamed] == [case.name for case in cases]  # in order
    by_name = {case.name: case for case in streamed}
    assert by_name["case-7"].signal == "SIGABRT"
    assert by_name["case-9"].stdout == b"10\n"
    assert by_name["case-3"].stdout == b"9\n"
    # Each case streamed as it ended, before the result.
    result_at = next(i for i, e in enumerate(events) if e.HasField("result"))
    assert all(i < result_at for i, e in enumerate(events) if e.HasField("test_case_result"))
    # Compiled once: one RUNNING, one compile output, and usage past the spinning case's
    # CPU limit (the clamp allows the compile and every case).
    states = [e.state_change.state for e in events if e.HasField("state_change")]
    assert states.count(pb.JOB_STATE_RUNNING) == 1
    done = await client.get(job.id)
    assert done.state == pb.JOB_STATE_FAILED
    assert done.result.verdict == pb.VERDICT_WRONG_ANSWER  # case-5's, the first failure
    assert [c.name for c in done.result.test_results] == [c.name for c in cases]
    assert done.result.test_results == streamed
    assert done.result.usage.cpu_time_ms >= 500
    # What the usage counts beyond the cases is one compile: about one plain run of the same
    # program (compile and run), far from ten.
    plain = await client.submit(api.SubmitJobRequest(
        language="c", files=[pb.File(name="main.c", content=SQUARE_C)], stdin=b"4\n"))
    one_compile_ms = (await client.wait(plain.id)).result.usage.cpu_time_ms
    beyond_cases = (done.result.usage.cpu_time_ms
                    - sum(c.usage.cpu_time_ms for c in done.result.test_results))
    assert 0 < beyond_cases < 5 * max(one_compile_ms, 20), (beyond_cases, one_compile_ms)


async def test_compile_error_runs_no_case(client: SluiceClient) -> None:
    job = await client.submit(api.SubmitJobRequest(
        language="c", files=[pb.File(name="main.c", content=b"int main( {")],
        test_cases=square_cases([1, 2])))
    events = await events_of(client, job.id)
    assert not [e for e in events if e.HasField("test_case_result")]
    done = await client.get(job.id)
    assert done.result.verdict == pb.VERDICT_COMPILE_ERROR
    assert done.result.compile_output
    assert not done.result.test_results


async def test_fifty_cases_from_one_compile_all_ok(client: SluiceClient) -> None:
    """The grader's job: fifty inputs, fifty verdicts, one compile."""
    numbers = list(range(100, 150))
    job = await client.submit(api.SubmitJobRequest(
        language="c", files=[pb.File(name="main.c", content=SQUARE_C)],
        test_cases=square_cases(numbers)))
    done = await client.wait(job.id, within_s=240)
    assert done.result.verdict == pb.VERDICT_OK, done.result.detail
    assert len(done.result.test_results) == 50
    assert {c.verdict for c in done.result.test_results} == {pb.VERDICT_OK}
    assert done.result.test_results[49].stdout == b"22201\n"


async def test_comparison_ignores_trailing_whitespace_when_asked(client: SluiceClient) -> None:
    source = "print('a  ')\nprint('b')\nprint()\n"
    cases = [pb.TestCase(name="loose", expected_stdout=b"a\nb")]
    exact = await client.submit(python_job(source, test_cases=cases))
    loose = await client.submit(python_job(
        source, test_cases=cases, comparison=pb.COMPARISON_IGNORE_TRAILING_WHITESPACE))
    assert (await client.wait(exact.id)).result.verdict == pb.VERDICT_WRONG_ANSWER
    assert (await client.wait(loose.id)).result.verdict == pb.VERDICT_OK


async def test_cancel_mid_cases_stops_the_current_and_runs_no_more(
        client: SluiceClient) -> None:
    cases = [pb.TestCase(name=f"slow-{i}", args=["2"]) for i in range(5)]
    job = await client.submit(python_job(
        "import sys, time\ntime.sleep(float(sys.argv[1]))\nprint('slept')\n",
        test_cases=cases, limits=pb.Limits(wall_time_ms=10_000)))
    seen: list[pb.TestCaseResult] = []
    async with asyncio.timeout(60):
        async for event in client.watch(job.id):
            if event.HasField("test_case_result"):
                seen.append(event.test_case_result)
                if len(seen) == 1:
                    await client.cancel(job.id)
    done = await client.get(job.id)
    assert done.state == pb.JOB_STATE_CANCELLED
    assert seen[0].verdict == pb.VERDICT_OK
    assert len(seen) == 2 and seen[1].verdict == pb.VERDICT_CANCELLED
    assert len(done.result.test_results) == 2


@pytest.mark.parametrize(("fields", "named"), [
    ({"stdin": b"x", "test_cases": [pb.TestCase(name="a")]}, "stdin"),
    ({"interactive": True, "test_cases": [pb.TestCase(name="a")]}, "interactive"),
    ({"interactive": True, "stdin": b"x"}, "interactive"),
    ({"test_cases": [pb.TestCase(name=str(i)) for i in range(101)]}, "test_cases has 101"),
    ({"test_cases": [pb.TestCase(name="big", stdin=b"x" * (1 << 20),
                                 expected_stdout=b"y")]}, "stdin cap"),
])
async def test_conflicting_or_oversized_fields_are_refused(
        client: SluiceClient, fields: dict[str, object], named: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.submit(python_job("print(1)", **fields))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (refused.value.details() or "")


def test_sluice_run_cases_prints_a_table_of_verdicts(platform: Platform, tenant_key: str,
                                                     tmp_path: Path) -> None:
    (tmp_path / "square.c").write_bytes(SQUARE_C)
    cases = tmp_path / "cases"
    cases.mkdir()
    for n in (2, 3, 7, 9):
        (cases / f"n{n}.in").write_text(f"{n}\n")
        (cases / f"n{n}.out").write_text(f"{n * n}  \n\n")  # trailing whitespace is ignored
    (cases / "unchecked.in").write_text("5\n")  # no .out: any output of a clean run is OK
    ran = platform.cli("run", "square.c", "--cases", str(cases), "--target",
                       platform.api_target, admin=False,
                       env={"SLUICE_API_KEY": tenant_key}, cwd=tmp_path)
    rows = {line.split()[0]: line.split()[1] for line in ran.stdout.splitlines()[1:]}
    assert rows == {"n2": "OK", "n3": "OK", "n7": "SIGNALED", "n9": "WRONG_ANSWER",
                    "unchecked": "OK"}, ran.stdout + ran.stderr
    assert ran.stdout.splitlines()[0].split() == ["case", "verdict", "wall", "ms", "cpu", "ms"]
    assert "3/5 passed" in ran.stderr
    assert ran.returncode != 0
