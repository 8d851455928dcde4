"""Test cases: the program, compiled once, runs once per case, one case after another in
the same slot, each a fresh sandboxed run with the job's limits.

Each case's outcome goes to the caller as it ends. The job's verdict is the first case's
that is not OK (else OK), its usage every case's together (the compile's is added by the
caller), and a cancel stops the case that runs and starts no other. Each case starts from
the work directory as the compile left it (the caller restores it between cases).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from execution_plane.sandbox.contract import (
    Comparison,
    JobOutcome,
    JobSpec,
    OutputSink,
    OutputStream,
    ResourceUsage,
    TestCaseOutcome,
    TestCaseSink,
    Verdict,
)
from sluice.message_limits import MAX_TEST_CASE_OUTPUT_BYTES

# One run of the compiled program: (args, stdin, where its output goes) -> how it ended.
RunCase = Callable[[list[str], bytes, OutputSink], Awaitable[JobOutcome]]
# A case that ends so stops the job: the sandbox failed, or the caller cancelled.
_STOPPING = frozenset({Verdict.CANCELLED, Verdict.INTERNAL_ERROR})


class _CaseOutput:
    """A case's stdout and stderr apart (the run's output cap bounds them)."""

    def __init__(self) -> None:
        self.streams = {OutputStream.STDOUT: bytearray(), OutputStream.STDERR: bytearray()}

    async def __call__(self, stream: OutputStream, data: bytes) -> None:
        self.streams[stream] += data


def same_output(actual: bytes, expected: bytes, comparison: Comparison) -> bool:
    if comparison is Comparison.EXACT:
        return actual == expected
    return _trimmed(actual) == _trimmed(expected)


def _trimmed(data: bytes) -> list[bytes]:
    lines = [line.rstrip() for line in data.split(b"\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


async def run_cases(spec: JobSpec, run: RunCase, on_case: TestCaseSink,
                    cancelled: asyncio.Event) -> JobOutcome:
    usage = ResourceUsage()
    first_failure: JobOutcome | None = None
    # What the results keep of all the cases' output together; each case is judged on its
    # whole output (up to its own cap) whatever is kept.
    keep_left = spec.limits.max_output_bytes
    for case in spec.test_cases:
        if cancelled.is_set():
            first_failure = first_failure or JobOutcome(Verdict.CANCELLED)
            break
        output = _CaseOutput()
        outcome = await run(case.args or spec.args, case.stdin, output)
        stdout = bytes(output.streams[OutputStream.STDOUT])
        if (outcome.verdict is Verdict.OK and case.expected_stdout is not None
                and not same_output(stdout, case.expected_stdout, spec.comparison)):
            outcome.verdict = Verdict.WRONG_ANSWER
        kept = {}
        for stream, data in output.streams.items():
            cut = min(len(data), MAX_TEST_CASE_OUTPUT_BYTES // 2, max(keep_left, 0))
            kept[stream] = bytes(data[:cut])
            keep_left -= cut
            if cut < len(data):
                if stream is OutputStream.STDOUT:
                    outcome.stdout_truncated = True
                else:
                    outcome.stderr_truncated = True
        await on_case(TestCaseOutcome(case.name, outcome, kept[OutputStream.STDOUT],
                                      kept[OutputStream.STDERR]))
        usage.cpu_time_ms += outcome.usage.cpu_time_ms
        usage.wall_time_ms += outcome.usage.wall_time_ms
        usage.peak_memory_bytes = max(usage.peak_memory_bytes, outcome.usage.peak_memory_bytes)
        if first_failure is None and outcome.verdict is not Verdict.OK:
            first_failure = outcome
        if outcome.verdict in _STOPPING:
            first_failure = outcome
            break
    if first_failure is None:
        return JobOutcome(Verdict.OK, usage=usage)
    return JobOutcome(first_failure.verdict, exit_code=first_failure.exit_code,
                      signal=first_failure.signal, usage=usage, detail=first_failure.detail)
