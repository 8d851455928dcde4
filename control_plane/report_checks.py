"""What a worker reports, checked against the job's limits rather than taken on trust.

A worker holds a token, not the platform's confidence: a compromised one could stream more
output than the job may keep or report a day of CPU to drain a tenant's quota. The sandbox
never produces either, so the gateway cuts output at max_output_bytes (stdout and stderr
together, as the sandbox counts them) and clamps the usage to what the limits let a run use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sluice.v1 import job_pb2 as pb

# How far a real run may go past its limits before the sandbox stops it: the CPU poll
# (50 ms) on every core, the kill, and bwrap's own start and end around the program.
CPU_MARGIN_MS = 1_000
WALL_MARGIN_MS = 5_000
STEPS_PER_JOB = 2  # compile, then run (execution_plane/sandbox/budget.py)
COMPILE_STEPS = 1


@dataclass
class OutputAllowance:
    """The output an attempt may still store; one per RunJob stream."""

    left: int
    truncated: dict[int, bool] = field(default_factory=dict)

    def take(self, stream: int, data: bytes) -> bytes:
        """The part of the chunk to store (possibly empty)."""
        kept = data[: max(self.left, 0)]
        self.left -= len(kept)
        if len(kept) < len(data):
            self.truncated[stream] = True
        return kept

    @property
    def cut(self) -> bool:
        return bool(self.truncated)

    def apply(self, result: pb.Result) -> None:
        """Marks what the gateway cut: the streams as truncated and, when the worker said
        OK, the verdict the sandbox gives a program that writes too much."""
        if not self.cut:
            return
        result.stdout_truncated |= self.truncated.get(pb.OUTPUT_STREAM_STDOUT, False)
        result.stderr_truncated |= self.truncated.get(pb.OUTPUT_STREAM_STDERR, False)
        if result.verdict == pb.VERDICT_OK:
            result.verdict = pb.VERDICT_OUTPUT_LIMIT_EXCEEDED


def clamp_usage(result: pb.Result, limits: pb.Limits, runs: int = 1) -> dict[str, int]:
    """Caps the reported usage at what the job's limits allow its steps (the CPU charged to
    the tenant is the capped figure); returns the reported values that were over, by field.
    runs: the program's sandboxed runs, one per test case (one without test cases)."""
    # A compiled job's usage is its compile's plus its runs', each bounded by the limits.
    steps = COMPILE_STEPS + runs
    ceilings = {
        "cpu_time_ms": steps * limits.cpu_time_ms + runs * CPU_MARGIN_MS,
        "wall_time_ms": steps * limits.wall_time_ms + runs * WALL_MARGIN_MS,
        "peak_memory_bytes": limits.memory_bytes,
    }
    over: dict[str, int] = {}
    for name, ceiling in ceilings.items():
        reported = getattr(result.usage, name)
        if reported > ceiling:
            over[name] = reported
            setattr(result.usage, name, ceiling)
    return over
