"""The execution-plane sandbox: bubblewrap + cgroups + rlimits + seccomp, behind SandboxPool."""

from execution_plane.sandbox.contract import (
    JobOutcome,
    JobSpec,
    LanguageInfo,
    OutputSink,
    OutputStream,
    ResourceLimits,
    ResourceUsage,
    SourceFile,
    Verdict,
)
from execution_plane.sandbox.pool import SandboxPool, SandboxUnavailable

__all__ = [
    "JobOutcome",
    "JobSpec",
    "LanguageInfo",
    "OutputSink",
    "OutputStream",
    "ResourceLimits",
    "ResourceUsage",
    "SandboxPool",
    "SandboxUnavailable",
    "SourceFile",
    "Verdict",
]
