"""Between the gateway's protobuf messages and the sandbox's plain types."""

from __future__ import annotations

from execution_plane.sandbox.contract import (
    Comparison,
    JobOutcome,
    JobSpec,
    LanguageInfo,
    OutputStream,
    ResourceLimits,
    ResourceUsage,
    SourceFile,
    StdinSource,
    TestCaseOutcome,
    TestCaseSpec,
)
from sluice.message_limits import MAX_COMPILE_OUTPUT_BYTES
from sluice.v1 import job_pb2 as pb
from sluice.v1 import worker_gateway_pb2 as gw

STREAMS = {
    OutputStream.STDOUT: pb.OUTPUT_STREAM_STDOUT,
    OutputStream.STDERR: pb.OUTPUT_STREAM_STDERR,
}


def job_spec(assignment: gw.Assignment, live_stdin: StdinSource | None = None) -> JobSpec:
    """live_stdin: an interactive job's stdin as it comes down the stream."""
    limits = assignment.limits
    stdin: bytes | StdinSource = assignment.stdin
    if assignment.interactive and live_stdin is not None:
        stdin = live_stdin
    return JobSpec(
        language=assignment.language,
        files=[SourceFile(name=f.name, content=f.content) for f in assignment.files],
        stdin=stdin,
        args=list(assignment.args),
        test_cases=[
            TestCaseSpec(name=case.name, stdin=case.stdin, args=list(case.args),
                         expected_stdout=(case.expected_stdout
                                          if case.HasField("expected_stdout") else None))
            for case in assignment.test_cases
        ],
        comparison=(Comparison.IGNORE_TRAILING_WHITESPACE
                    if assignment.comparison == pb.COMPARISON_IGNORE_TRAILING_WHITESPACE
                    else Comparison.EXACT),
        limits=ResourceLimits(
            wall_time_ms=limits.wall_time_ms,
            cpu_time_ms=limits.cpu_time_ms,
            memory_bytes=limits.memory_bytes,
            max_processes=limits.max_processes,
            max_output_bytes=limits.max_output_bytes,
        ),
    )


def result_message(outcome: JobOutcome) -> pb.Result:
    return pb.Result(
        verdict=pb.Verdict.Value(f"VERDICT_{outcome.verdict.value}"),
        exit_code=outcome.exit_code,
        signal=outcome.signal,
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        # Within what the gateway receives, whatever languages.toml lets a compiler print.
        compile_output=outcome.compile_output.encode()[:MAX_COMPILE_OUTPUT_BYTES].decode(
            errors="ignore"),
        usage=_usage(outcome.usage),
        detail=outcome.detail,
    )


def test_case_message(case: TestCaseOutcome) -> pb.TestCaseResult:
    outcome = case.outcome
    return pb.TestCaseResult(
        name=case.name,
        verdict=pb.Verdict.Value(f"VERDICT_{outcome.verdict.value}"),
        exit_code=outcome.exit_code,
        signal=outcome.signal,
        stdout=case.stdout,
        stderr=case.stderr,
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        usage=_usage(outcome.usage),
    )


def _usage(usage: ResourceUsage) -> pb.Usage:
    return pb.Usage(cpu_time_ms=usage.cpu_time_ms, wall_time_ms=usage.wall_time_ms,
                    peak_memory_bytes=usage.peak_memory_bytes)


def language_message(info: LanguageInfo) -> pb.Language:
    return pb.Language(
        id=info.id,
        name=info.name,
        version=info.version,
        file_name=info.file_name,
        compiled=info.compiled,
    )
