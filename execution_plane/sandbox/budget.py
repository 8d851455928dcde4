"""The compile step within the job's limits, and its usage charged with the run's.

The tenant's ceilings are the job's resolved limits. Compiling is work done for the job
(and a tenant steers it: a compiler's time and memory follow its input), so it runs within
those ceilings rather than looser ones of its own, and the Result's usage, which the store
charges to the tenant, counts it. The run keeps the job's limits whole, as a job without a
compile step would: a program's limits are the program's, whatever the compiler took. So
a compiled job's usage.cpu_time_ms can reach twice its cpu_time_ms (compile and run each
within it); the test cases of DESIGN's second stage (one compile, one run per case, each
with the job's limits) sum the same way.
"""

from __future__ import annotations

from dataclasses import replace

from execution_plane.sandbox.contract import ResourceLimits, ResourceUsage


def compile_limits(caps: ResourceLimits, job: ResourceLimits) -> ResourceLimits:
    """The compile step's limits: the registry's caps, lowered to the job's own.

    Processes stay the registry's: they are the toolchain's needs (gcc's driver runs cc1,
    as and ld), not the program's, and a compiler whose options nobody can choose does not
    fork at its input's bidding. Output is the compiler's messages, kept for
    compile_output under its own cap, not the program's output.
    """
    return replace(
        caps,
        wall_time_ms=min(caps.wall_time_ms, job.wall_time_ms),
        cpu_time_ms=min(caps.cpu_time_ms, job.cpu_time_ms),
        memory_bytes=min(caps.memory_bytes, job.memory_bytes),
        workdir_bytes=job.workdir_bytes,
    )


def total_usage(compiled: ResourceUsage, ran: ResourceUsage) -> ResourceUsage:
    """What the whole job used: the tenant is charged for the compile step's CPU too."""
    return ResourceUsage(
        cpu_time_ms=compiled.cpu_time_ms + ran.cpu_time_ms,
        wall_time_ms=compiled.wall_time_ms + ran.wall_time_ms,
        peak_memory_bytes=max(compiled.peak_memory_bytes, ran.peak_memory_bytes),
    )
