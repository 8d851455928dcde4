"""What the sandbox costs: a trivial python job run plainly, in the sandbox, and through Sluice.

    .venv/bin/python bench/sandbox.py [--jobs 200] [--slots 2] [--no-platform]

Prints, in one run:
  per job (median, one at a time): plain, sandboxed, whole platform, with the ratios and the
    sandbox's overhead in ms (target: under 10 ms);
  throughput (jobs/s, all slots busy): raw sandboxed runs with N slots beside the whole
    platform with an N-slot worker (target: the platform keeps at least 0.8 of raw); raw is
    measured before and after the platform and the ratio taken against their mean, so a
    change in the machine's load between the two shows instead of skewing the ratio.
    The platform's throughput is measured with two callers: one that watches every job's
    stream to its result (WatchJob per job, as an interactive caller does), and a batch
    caller that submits the jobs and collects their results with ListJobs. On one machine
    the caller's CPU competes with the sandbox too, so the two differ by what watching
    costs, the caller's side and the control plane's.
Needs root (the sandbox does); the platform part needs RabbitMQ (deploy/local/bootstrap.sh)
and is skipped, with the reason, when it cannot start. A benchmark, not a test: it asserts
nothing, it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from execution_plane.sandbox import (  # noqa: E402 - needs the repo on sys.path first
    JobSpec,
    OutputStream,
    ResourceLimits,
    SandboxPool,
    SourceFile,
    Verdict,
)

if TYPE_CHECKING:
    from sluice.client import SluiceClient

TRIVIAL = b"pass\n"
PLAIN_PYTHON = "/usr/bin/python3"  # what the sandbox's python language runs
LIMITS = ResourceLimits(
    wall_time_ms=10_000,
    cpu_time_ms=5_000,
    memory_bytes=256 * 1024 * 1024,
    max_processes=32,
    max_output_bytes=1024 * 1024,
)
WARMUP = 5


@dataclass
class Figures:
    per_job_ms: float  # median latency of one job run alone
    per_job_p90_ms: float
    throughput: float  # jobs/s with every slot busy
    # the platform's, with a batch caller (submit all, collect with ListJobs)
    collected_throughput: float = 0.0


def _median_p90(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.9)] * 1000


# -- plain -----------------------------------------------------------------------------


def _program_dir() -> str:
    directory = tempfile.mkdtemp(prefix="sluice-bench-")
    Path(directory, "main.py").write_bytes(TRIVIAL)
    return directory


async def plain_per_job(jobs: int) -> tuple[float, float]:
    """The same program, same interpreter, started as a subprocess with piped output."""
    directory = _program_dir()
    samples = []
    for i in range(jobs + WARMUP):
        start = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            PLAIN_PYTHON,
            "main.py",
            cwd=directory,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await process.communicate()
        if i >= WARMUP:
            samples.append(time.perf_counter() - start)
    return _median_p90(samples)


# -- sandbox ---------------------------------------------------------------------------


async def _discard(stream: OutputStream, data: bytes) -> None:
    pass


def _spec() -> JobSpec:
    return JobSpec("python", [SourceFile("main.py", TRIVIAL)], b"", [], LIMITS)


async def _sandboxed(pool: SandboxPool) -> None:
    outcome = await pool.run_job(_spec(), _discard, asyncio.Event())
    if outcome.verdict is not Verdict.OK:
        raise RuntimeError(f"sandboxed job failed: {outcome}")


async def sandbox_figures(jobs: int, slots: int) -> Figures:
    pool = SandboxPool(slots=1)
    await pool.start()
    try:
        samples = []
        for i in range(jobs + WARMUP):
            start = time.perf_counter()
            await _sandboxed(pool)
            if i >= WARMUP:
                samples.append(time.perf_counter() - start)
    finally:
        await pool.close()
    median, p90 = _median_p90(samples)

    return Figures(median, p90, await raw_throughput(jobs, slots))


async def raw_throughput(jobs: int, slots: int) -> float:
    pool = SandboxPool(slots=slots)
    await pool.start()
    try:
        await asyncio.gather(*(_sandboxed(pool) for _ in range(slots * WARMUP)))
        start = time.perf_counter()
        await asyncio.gather(*(_sandboxed(pool) for _ in range(jobs)))
        return jobs / (time.perf_counter() - start)
    finally:
        await pool.close()


# -- the whole platform ----------------------------------------------------------------


async def platform_figures(jobs: int, slots: int) -> Figures | str:
    """Trivial jobs through the API, the broker, an N-slot worker and back.

    Returns the figures, or why the platform could not be measured here.
    """
    try:
        from bench.platform_jobs import python_job_runner
        from sluice.client import SluiceClient
        from tests.support.broker import RunVhost
        from tests.support.platform import Platform
    except ImportError as exc:
        return f"the platform is not importable ({exc})"
    try:
        vhost = RunVhost()
        await asyncio.to_thread(vhost.__enter__)
    except Exception as exc:
        return f"no RabbitMQ to run it on ({exc})"
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="sluice-bench-platform-"))
    stack = Platform(
        workdir,
        vhost.amqp_url(),
        prefix=f"bench-{uuid.uuid4().hex[:6]}",
        extra_env={"SLUICE_WORKER_SLOTS": str(slots), "SLUICE_LOG_LEVEL": "warning"},
    )
    try:
        await asyncio.to_thread(stack.start_control_plane)
        await asyncio.to_thread(stack.start_worker)
        key = await asyncio.to_thread(stack.create_tenant, f"bench-{uuid.uuid4().hex[:6]}")
        async with SluiceClient(stack.api_target, key) as client:
            one = await python_job_runner(client, TRIVIAL)

            samples = []
            for i in range(jobs + WARMUP):
                start = time.perf_counter()
                await one()
                if i >= WARMUP:
                    samples.append(time.perf_counter() - start)
            await asyncio.gather(*(one() for _ in range(slots * WARMUP)))
            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(jobs)))
            throughput = jobs / (time.perf_counter() - start)
            collected = await submitted_then_collected(client, jobs)
        median, p90 = _median_p90(samples)
        return Figures(median, p90, throughput, collected)
    except Exception as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()] or [""]
        return f"the platform failed ({type(exc).__name__}: {lines[-1].strip()}; logs in {workdir})"
    finally:
        await asyncio.to_thread(stack.stop)
        await asyncio.to_thread(vhost.__exit__, None, None, None)


async def submitted_then_collected(client: SluiceClient, jobs: int) -> float:
    """Jobs/s for a batch caller: submits every job, then lists the finished ones every
    half second until all are; timed from the first submit to the last job's end_time as the
    store recorded it (same machine, same clock), so the polling adds no error."""
    from sluice.v1 import execution_service_pb2 as api
    from sluice.v1 import job_pb2 as pb

    run = uuid.uuid4().hex[:12]
    request = api.SubmitJobRequest(language="python", labels={"bench-run": run},
                                   files=[pb.File(name="main.py", content=TRIVIAL)])
    started = time.time()
    await asyncio.gather(*(client.submit(request) for _ in range(jobs)))
    ended: dict[str, pb.Job] = {}
    async with asyncio.timeout(300):
        while len(ended) < jobs:
            await asyncio.sleep(0.5)
            listing = api.ListJobsRequest(page_size=1000, labels={"bench-run": run},
                                          states=[pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED])
            while True:
                page = await client.stub.ListJobs(listing, metadata=client.metadata, timeout=30)
                ended.update((job.id, job) for job in page.jobs)
                if not page.next_page_token:
                    break
                listing.page_token = page.next_page_token
    failed = [job for job in ended.values() if job.result.verdict != pb.VERDICT_OK]
    if failed:
        raise RuntimeError(f"{len(failed)} platform jobs failed, e.g. {failed[0]}")
    last_end = max(job.end_time.ToNanoseconds() for job in ended.values()) / 1e9
    return jobs / (last_end - started)


# -- report ----------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs per measurement")
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-platform", action="store_true", help="skip the platform part")
    options = parser.parse_args()
    jobs, slots = options.jobs, options.slots

    plain_median, plain_p90 = await plain_per_job(jobs)
    sandbox = await sandbox_figures(jobs, slots)
    platform = (
        "skipped (--no-platform)" if options.no_platform else await platform_figures(jobs, slots)
    )
    # Raw throughput again after the platform's: on a shared machine the load moves between
    # the two, and the ratio is only worth as much as the two raw figures agree.
    raw_after = await raw_throughput(jobs, slots) if isinstance(platform, Figures) else None

    print(f"trivial python job ({PLAIN_PYTHON} main.py), {jobs} jobs per figure, {slots} slots")
    print()
    print("per job, one at a time        median     p90    ratio to plain")
    print(f"  plain                     {plain_median:7.1f} ms {plain_p90:6.1f} ms   1.00")
    print(
        f"  sandbox                   {sandbox.per_job_ms:7.1f} ms {sandbox.per_job_p90_ms:6.1f} ms"
        f"   {sandbox.per_job_ms / plain_median:.2f}"
        f"   (+{sandbox.per_job_ms - plain_median:.1f} ms; target < 10 ms)"
    )
    if isinstance(platform, Figures):
        print(
            f"  whole platform            {platform.per_job_ms:7.1f} ms"
            f" {platform.per_job_p90_ms:6.1f} ms   {platform.per_job_ms / plain_median:.2f}"
            f"   ({platform.per_job_ms / sandbox.per_job_ms:.2f}x the sandbox)"
        )
    else:
        print(f"  whole platform            {platform}")
    print()
    print(f"throughput, all {slots} slots busy")
    print(f"  raw sandboxed runs        {sandbox.throughput:7.1f} jobs/s")
    if isinstance(platform, Figures) and raw_after is not None:
        raw = (sandbox.throughput + raw_after) / 2
        print(
            f"  whole platform, watched   {platform.throughput:7.1f} jobs/s"
            f"   ({platform.throughput / raw:.2f} of raw; target >= 0.80)"
            "   a WatchJob stream per job"
        )
        print(
            f"  whole platform, batch     {platform.collected_throughput:7.1f} jobs/s"
            f"   ({platform.collected_throughput / raw:.2f} of raw; target >= 0.80)"
            "   submitted, then collected by ListJobs"
        )
        drift = abs(raw_after - sandbox.throughput) / raw
        print(
            f"  raw sandboxed runs again  {raw_after:7.1f} jobs/s"
            f"   (ratio against the mean of the two raw figures; they differ by {drift:.0%}"
            f"{': the machine was busy, do not trust the ratio' if drift > 0.2 else ''})"
        )
    else:
        print(f"  whole platform            {platform}")


if __name__ == "__main__":
    # On the loop the worker runs (sluice/service_loop.py): raw runs pay what the worker pays.
    uvloop.run(main())
