"""What the store takes and returns: the platform's own types, not protobuf messages.

Frozen dataclasses, every field with a default, so that a field the API gains is one line
here (and one in control_plane/job_messages.py, which converts these to and from the
sluice.v1 messages). The enums' numbers are the stored ones (jobs.state, the verdicts in
stored results) and are those of protos/sluice/v1 too: the contract fixes them.

How records become the blobs the store keeps is not the store's business: it is handed a
RecordCodec (control_plane/job_messages.py's encodes them as the sluice.v1 messages, so
stored rows read the same as before there were records).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol


class JobState(IntEnum):
    UNSPECIFIED = 0
    QUEUED = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5
    DEAD_LETTERED = 6


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED,
                             JobState.DEAD_LETTERED})


class Verdict(IntEnum):
    UNSPECIFIED = 0
    OK = 1
    RUNTIME_ERROR = 2
    SIGNALED = 3
    TIME_LIMIT_EXCEEDED = 4
    MEMORY_LIMIT_EXCEEDED = 5
    OUTPUT_LIMIT_EXCEEDED = 6
    COMPILE_ERROR = 7
    INTERNAL_ERROR = 8
    CANCELLED = 9
    WRONG_ANSWER = 10


class Comparison(IntEnum):
    UNSPECIFIED = 0  # as EXACT
    EXACT = 1
    IGNORE_TRAILING_WHITESPACE = 2


class OutputStream(IntEnum):
    UNSPECIFIED = 0
    STDOUT = 1
    STDERR = 2


class Refusal(IntEnum):
    """Why a claim did not start the job (what the worker does with its message)."""
    UNSPECIFIED = 0
    FINISHED = 1
    LEASED = 2
    NOT_FOUND = 3
    ORDERED = 4
    EXHAUSTED = 5
    THROTTLED = 6


@dataclass(frozen=True)
class Limits:
    wall_time_ms: int = 0
    cpu_time_ms: int = 0
    memory_bytes: int = 0
    max_processes: int = 0
    max_output_bytes: int = 0


@dataclass(frozen=True)
class Usage:
    cpu_time_ms: int = 0
    wall_time_ms: int = 0
    peak_memory_bytes: int = 0


@dataclass(frozen=True)
class TestCaseResult:
    __test__ = False  # not a pytest class, whatever its name

    name: str = ""
    verdict: Verdict = Verdict.UNSPECIFIED
    exit_code: int = 0
    signal: str = ""
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class ResultRecord:
    verdict: Verdict = Verdict.UNSPECIFIED
    exit_code: int = 0
    signal: str = ""
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    compile_output: str = ""
    usage: Usage = field(default_factory=Usage)
    detail: str = ""
    # A job with test cases: each case's, in order. Stored once, as the cases' events
    # (control_plane/store/jobs.py puts them back here on reads, as it does the output).
    test_results: tuple[TestCaseResult, ...] = ()


@dataclass(frozen=True)
class SourceFile:
    name: str = ""
    content: bytes = b""


@dataclass(frozen=True)
class TestCase:
    __test__ = False

    name: str = ""
    stdin: bytes = b""
    args: tuple[str, ...] = ()
    expected_stdout: bytes | None = None  # None: not checked


@dataclass(frozen=True)
class JobSpec:
    """What was submitted, limits after defaults and the tenant's ceilings."""
    language: str = ""
    files: tuple[SourceFile, ...] = ()
    stdin: bytes = b""
    args: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    idempotency_key: str = ""
    ordering_key: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    interactive: bool = False
    test_cases: tuple[TestCase, ...] = ()
    comparison: Comparison = Comparison.UNSPECIFIED


@dataclass(frozen=True)
class JobRecord:
    id: str
    tenant_id: str = ""
    state: JobState = JobState.UNSPECIFIED
    language: str = ""
    attempt: int = 0
    # Seconds since the epoch.
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    result: ResultRecord | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str = ""
    ordering_key: str = ""
    limits: Limits = field(default_factory=Limits)
    state_reason: str = ""
    # The files submitted: read only when asked for (GetJob's include_files).
    files: tuple[SourceFile, ...] = ()


@dataclass(frozen=True)
class StateChange:
    state: JobState = JobState.UNSPECIFIED
    attempt: int = 0
    reason: str = ""


@dataclass(frozen=True)
class OutputChunk:
    stream: OutputStream = OutputStream.UNSPECIFIED
    data: bytes = b""


@dataclass(frozen=True)
class EventRecord:
    """One of a job's events: exactly one of state_change, output, result,
    test_case_result is set."""
    job_id: str
    seq: int
    time_ns: int = 0  # nanoseconds since the epoch, as stored
    state_change: StateChange | None = None
    output: OutputChunk | None = None
    result: ResultRecord | None = None
    test_case_result: TestCaseResult | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state_change is not None and self.state_change.state in TERMINAL_STATES


@dataclass(frozen=True)
class LanguageRecord:
    id: str = ""
    name: str = ""
    version: str = ""
    file_name: str = ""
    compiled: bool = False


@dataclass(frozen=True)
class Assignment:
    """A claim that started an attempt: what the worker runs."""
    job_id: str
    attempt: int
    spec: JobSpec
    heartbeat_interval_ms: int


@dataclass(frozen=True)
class JobSnapshot:
    """A finished job as the archive keeps it: the job as a read gives it, every event,
    what was submitted and how often it was replayed."""
    tenant_id: str
    job: JobRecord
    events: tuple[EventRecord, ...]
    spec: JobSpec
    replays: int


class RecordCodec(Protocol):
    """The bytes the store keeps for records (job_events.event, jobs.result, jobs.spec,
    worker_languages.language)."""

    def encode_event(self, event: EventRecord) -> bytes: ...

    def decode_event(self, blob: bytes) -> EventRecord: ...

    def encode_result(self, result: ResultRecord) -> bytes: ...

    def decode_result(self, blob: bytes) -> ResultRecord: ...

    def encode_spec(self, spec: JobSpec) -> bytes: ...

    def decode_spec(self, blob: bytes) -> JobSpec: ...

    def encode_language(self, language: LanguageRecord) -> bytes: ...

    def decode_language(self, blob: bytes) -> LanguageRecord: ...
