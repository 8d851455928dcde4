"""What the worker hands the sandbox and what it gets back.

The worker speaks protobuf to the control plane; the sandbox speaks these plain types, so
the sandbox can be tested (and benchmarked) without a broker or a gateway in sight.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field


class OutputStream(enum.Enum):
    STDOUT = 1
    STDERR = 2


class Verdict(enum.Enum):
    """Mirrors sluice.v1.Verdict by name (VERDICT_<name>)."""

    OK = "OK"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    SIGNALED = "SIGNALED"
    TIME_LIMIT_EXCEEDED = "TIME_LIMIT_EXCEEDED"
    MEMORY_LIMIT_EXCEEDED = "MEMORY_LIMIT_EXCEEDED"
    OUTPUT_LIMIT_EXCEEDED = "OUTPUT_LIMIT_EXCEEDED"
    COMPILE_ERROR = "COMPILE_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    CANCELLED = "CANCELLED"
    WRONG_ANSWER = "WRONG_ANSWER"  # a test case's output differs from what it expects


class Comparison(enum.Enum):
    """Mirrors sluice.v1.Comparison by name (COMPARISON_<name>)."""

    EXACT = "EXACT"
    IGNORE_TRAILING_WHITESPACE = "IGNORE_TRAILING_WHITESPACE"


@dataclass(frozen=True)
class ResourceLimits:
    """Limits of one run. Every field is already resolved (no zero = default here)."""

    wall_time_ms: int
    cpu_time_ms: int
    memory_bytes: int
    max_processes: int
    max_output_bytes: int  # stdout + stderr together; the kept part is streamed
    max_file_bytes: int = 16 * 1024 * 1024
    max_open_files: int = 256
    workdir_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class SourceFile:
    name: str
    content: bytes


# An interactive run's stdin: chunks as the caller sends them; the end of the iteration
# closes the program's stdin (EOF).
StdinSource = AsyncIterator[bytes]


@dataclass(frozen=True)
class TestCaseSpec:
    name: str
    stdin: bytes
    args: list[str]  # empty: the job's
    expected_stdout: bytes | None  # None: any output is right


@dataclass(frozen=True)
class JobSpec:
    language: str
    files: list[SourceFile]  # the first is the entry point
    stdin: bytes | StdinSource
    args: list[str]
    limits: ResourceLimits
    # Compiled once, then one run per case (stdin is then empty).
    test_cases: list[TestCaseSpec] = field(default_factory=list)
    comparison: Comparison = Comparison.EXACT


@dataclass
class ResourceUsage:
    cpu_time_ms: int = 0
    wall_time_ms: int = 0
    peak_memory_bytes: int = 0


@dataclass
class JobOutcome:
    verdict: Verdict
    exit_code: int = 0
    signal: str = ""  # e.g. "SIGKILL"; empty unless verdict is SIGNALED (or a kill caused it)
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    compile_output: str = ""
    usage: ResourceUsage = field(default_factory=ResourceUsage)
    detail: str = ""  # one line for INTERNAL_ERROR and friends, for logs and the caller


@dataclass
class TestCaseOutcome:
    """How one test case ended; stdout and stderr are the part kept for its result."""

    name: str
    outcome: JobOutcome
    stdout: bytes = b""
    stderr: bytes = b""


@dataclass(frozen=True)
class LanguageInfo:
    id: str  # e.g. "python"
    name: str  # e.g. "Python"
    version: str  # e.g. "3.11.2"
    file_name: str  # default entry-point name, e.g. "main.py"
    compiled: bool


# Called with each chunk as the program produces it (already cut to the output cap).
OutputSink = Callable[[OutputStream, bytes], Awaitable[None]]
# Called with each test case's outcome as it ends, in order.
TestCaseSink = Callable[[TestCaseOutcome], Awaitable[None]]
