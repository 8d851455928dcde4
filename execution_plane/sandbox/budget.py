"""One budget per job: the compile step and the run step share the job's limits.

The tenant's ceilings are the job's resolved limits. Compiling is work done for the job
(and a tenant could steer it: a compiler's run time follows its input), so it runs within
those ceilings rather than looser ones of its own, its CPU is charged with the run's, and
the run gets what the compile left. The Result's usage is then the whole job's, and never
more than its limits allow (give or take the CPU poll's granularity).
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


def run_limits(job: ResourceLimits, spent: ResourceUsage) -> ResourceLimits:
    """The run step's limits: the job's, less the time the compile step used."""
    return replace(
        job,
        wall_time_ms=max(1, job.wall_time_ms - spent.wall_time_ms),
        cpu_time_ms=max(1, job.cpu_time_ms - spent.cpu_time_ms),
    )


def total_usage(compiled: ResourceUsage, ran: ResourceUsage) -> ResourceUsage:
    """What the whole job used: the tenant is charged for the compile step's CPU too."""
    return ResourceUsage(
        cpu_time_ms=compiled.cpu_time_ms + ran.cpu_time_ms,
        wall_time_ms=compiled.wall_time_ms + ran.wall_time_ms,
        peak_memory_bytes=max(compiled.peak_memory_bytes, ran.peak_memory_bytes),
    )
