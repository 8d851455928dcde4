"""What the worker hands the sandbox and what it gets back.

The worker speaks protobuf to the control plane; the sandbox speaks these plain types, so
the sandbox can be tested (and benchmarked) without a broker or a gateway in sight.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
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


@dataclass(frozen=True)
class JobSpec:
    language: str
    files: list[SourceFile]  # the first is the entry point
    stdin: bytes
    args: list[str]
    limits: ResourceLimits


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


@dataclass(frozen=True)
class LanguageInfo:
    id: str  # e.g. "python"
    name: str  # e.g. "Python"
    version: str  # e.g. "3.11.2"
    file_name: str  # default entry-point name, e.g. "main.py"
    compiled: bool


# Called with each chunk as the program produces it (already cut to the output cap).
OutputSink = Callable[[OutputStream, bytes], Awaitable[None]]
