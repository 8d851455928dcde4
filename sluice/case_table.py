"""`sluice run FILE --cases DIR`: DIR/NAME.in against DIR/NAME.out, a table of verdicts.

Each NAME.in is a test case's stdin; NAME.out, when there is one, its expected stdout
(compared ignoring trailing whitespace, as graders usually do). The program is compiled
once; each case's row is printed as it ends.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sluice.client import SluiceClient
from sluice.v1 import job_pb2 as pb

HEADER = f"{'case':<24} {'verdict':<24} {'wall ms':>8} {'cpu ms':>8}"


class NoCases(ValueError):
    pass


def read_cases(directory: Path) -> list[pb.TestCase]:
    inputs = sorted(directory.glob("*.in"))
    if not inputs:
        raise NoCases(f"{directory} holds no *.in file")
    cases = []
    for path in inputs:
        case = pb.TestCase(name=path.stem, stdin=path.read_bytes())
        expected = path.with_suffix(".out")
        if expected.is_file():
            case.expected_stdout = expected.read_bytes()
        cases.append(case)
    return cases


def row(case: pb.TestCaseResult) -> str:
    verdict = pb.Verdict.Name(case.verdict).removeprefix("VERDICT_")
    if case.signal:
        verdict += f" ({case.signal})"
    elif case.verdict == pb.VERDICT_RUNTIME_ERROR:
        verdict += f" (exit {case.exit_code})"
    return (f"{case.name:<24} {verdict:<24} {case.usage.wall_time_ms:>8} "
            f"{case.usage.cpu_time_ms:>8}")


async def print_cases(client: SluiceClient, job_id: str) -> pb.Result | None:
    """Each case's row as it ends, then a summary line; the job's result."""
    print(HEADER)
    result = None
    async for event in client.watch(job_id):
        if event.HasField("test_case_result"):
            print(row(event.test_case_result), flush=True)
        elif event.HasField("result"):
            result = event.result
    if result is not None and result.test_results:
        passed = sum(case.verdict == pb.VERDICT_OK for case in result.test_results)
        print(f"{passed}/{len(result.test_results)} passed; compiled once, "
              f"{result.usage.cpu_time_ms} ms CPU in all", file=sys.stderr)
    return result
