"""Running programs through the real sandbox in tests, and checking the host afterwards."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from execution_plane.sandbox import (
    JobOutcome,
    JobSpec,
    OutputStream,
    ResourceLimits,
    SandboxPool,
    SourceFile,
    Verdict,
)

# The compile step runs within the job's limits: these leave a compiler the room it had
# under its own caps (20 s of CPU), which the cgroup v2 guest needs (it emulates its CPU:
# a cold gcc there takes 5 s). Tests of time limits set their own.
DEFAULT_LIMITS = ResourceLimits(
    wall_time_ms=30_000,
    cpu_time_ms=20_000,
    memory_bytes=256 * 1024 * 1024,
    max_processes=32,
    max_output_bytes=1024 * 1024,
)


@dataclass
class Ran:
    outcome: JobOutcome
    stdout: bytes = b""
    stderr: bytes = b""
    chunks: list[tuple[OutputStream, bytes]] = field(default_factory=list)


RunJob = Callable[..., Awaitable[Ran]]


async def run(
    pool: SandboxPool,
    language: str,
    source: str | bytes,
    stdin: bytes = b"",
    args: list[str] | None = None,
    file_name: str | None = None,
    cancelled: asyncio.Event | None = None,
    extra_files: list[SourceFile] | None = None,
    **limits: int,
) -> Ran:
    """Run one program; limits not given are DEFAULT_LIMITS."""
    info = {lang.id: lang for lang in pool.languages()}.get(language)
    name = file_name or (info.file_name if info else "main")
    content = source.encode() if isinstance(source, str) else source
    spec = JobSpec(
        language=language,
        files=[SourceFile(name, content), *(extra_files or [])],
        stdin=stdin,
        args=args or [],
        limits=ResourceLimits(**{**DEFAULT_LIMITS.__dict__, **limits}),
    )
    chunks: list[tuple[OutputStream, bytes]] = []

    async def sink(stream: OutputStream, data: bytes) -> None:
        chunks.append((stream, data))

    outcome = await pool.run_job(spec, sink, cancelled or asyncio.Event())
    return Ran(
        outcome=outcome,
        stdout=b"".join(d for s, d in chunks if s is OutputStream.STDOUT),
        stderr=b"".join(d for s, d in chunks if s is OutputStream.STDERR),
        chunks=chunks,
    )


def processes_of_uids(uids: set[int], include_zombies: bool = True) -> list[int]:
    """Host pids whose real or effective uid is one of `uids`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("State:") and "Z" in line and not include_zombies:
                        break
                    if line.startswith("Uid:"):
                        real, effective = (int(x) for x in line.split()[1:3])
                        if real in uids or effective in uids:
                            found.append(int(entry))
                        break
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def living_processes_of_uids(uids: set[int]) -> list[int]:
    return processes_of_uids(uids, include_zombies=False)


async def assert_host_untouched(pool: SandboxPool) -> None:
    """Nothing of any job is left on the host, and the pool still runs jobs.

    What a slot keeps between jobs is its own: the sandbox made ahead of time (bwrap, its
    init) and the zygote waiting in the run cgroup for the next step, nothing else."""
    await pool.wait_released()  # a slot is wiped just after its job's outcome is returned
    uids = {slot.uid for slot in pool.slots}
    for slot in pool.slots:
        assert slot.alive, f"slot {slot.index}: runner died"
        zygote = slot.sandbox.zygote_pid if slot.sandbox and slot.sandbox.ready else -1
        assert await slot.cgroup.wait_empty(zygote, within=2.0), (
            f"slot {slot.index}: tasks left in its run cgroup: {slot.cgroup.pids()}"
        )
        assert os.listdir(slot.work_dir) == [], f"slot {slot.index}: work dir not wiped"
    own = set().union(*(slot.own_pids() for slot in pool.slots))

    def of_jobs() -> list[int]:
        return [pid for pid in processes_of_uids(uids) if pid not in own]

    # init reaps the orphans it inherits while it runs and before the next step, which
    # may be just after the run's result: give the last zombies a moment, not a pass.
    deadline = time.monotonic() + 2.0
    while of_jobs() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert of_jobs() == [], "a sandbox uid still owns host processes of a job"
    ran = await run(pool, "python", "print('still fine')")
    assert ran.outcome.verdict is Verdict.OK, ran.outcome
    assert ran.stdout == b"still fine\n"
