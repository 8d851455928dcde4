"""What the sandbox costs: a trivial program run plainly, in a fresh sandbox, in a slot's
sandbox made ahead of time (pooled), and a trivial python job through the whole of Sluice.

    .venv/bin/python bench/sandbox.py [--jobs 200] [--slots 2] [--rounds 5] [--no-platform]

Prints, in one run:
  per run of /bin/true (median, one at a time): plain, in a fresh bwrap (the sandbox made
    for the run, as every step was before the pool), in the slot's pooled sandbox (the step
    alone, and with the reset that readies the next one); target: pooled <= plain + 2 ms;
  per job (median, one at a time): plain, sandboxed, whole platform, with the ratios and the
    sandbox's overhead in ms (target: under 10 ms);
  throughput (jobs/s, all slots busy): raw sandboxed runs with N slots beside the whole
    platform with an N-slot worker (target: the platform keeps at least 0.8 of raw).
    Plain spawning of the same program on every core is measured in the same rounds, and
    the platform is set against it too (target: >= 0.4 of plain with every core given to
    slots). The platform's throughput is measured with two callers: one that watches every job's
    stream to its result (WatchJob per job, as an interactive caller does), and a batch
    caller that submits the jobs and collects their results with ListJobs. On one machine
    the caller's CPU competes with the sandbox too, so the two differ by what watching
    costs, the caller's side and the control plane's.
The throughput is measured in rounds: raw, watched, batch, again and again, with one raw
pool and one platform kept running (each idle while the other is measured), and raw once
more at the end. Each platform figure is set against the mean of the raw figures just
before and just after it. On a shared machine the speed drifts by 10-30% within a minute;
a ratio taken over a few seconds sees little of that drift, and the median over the rounds
is what to read (the spread shows how much the machine moved).
Needs root (the sandbox does); the platform part needs RabbitMQ (deploy/local/bootstrap.sh)
and is skipped, with the reason, when it cannot start. A benchmark, not a test: it asserts
nothing, it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

# Plain spawning forks this process, which holds gRPC's threads: without this, gRPC logs a
# line for every fork (its fork handlers are for children that use gRPC, ours do not).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from execution_plane.claim_admission import RECENT_RUNS  # noqa: E402 - after sys.path
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
TRUE = "/usr/bin/true"  # in the bash language's sandbox, which shows /usr/bin
LIMITS = ResourceLimits(
    wall_time_ms=10_000,
    cpu_time_ms=5_000,
    memory_bytes=256 * 1024 * 1024,
    max_processes=32,
    max_output_bytes=1024 * 1024,
)
WARMUP = 5


def _median_p90(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.9)] * 1000


async def _latencies(one: Callable[[], Awaitable[None]], jobs: int) -> tuple[float, float]:
    """Median and p90 in ms of `one` run one at a time, after a warm-up."""
    samples = []
    for i in range(jobs + WARMUP):
        start = time.perf_counter()
        await one()
        if i >= WARMUP:
            samples.append(time.perf_counter() - start)
    return _median_p90(samples)


# -- plain -----------------------------------------------------------------------------


def _program_dir() -> str:
    directory = tempfile.mkdtemp(prefix="sluice-bench-")
    Path(directory, "main.py").write_bytes(TRIVIAL)
    return directory


async def plain_per_job(jobs: int) -> tuple[float, float]:
    """The same program, same interpreter, started as a subprocess with piped output."""
    directory = _program_dir()

    async def one() -> None:
        process = await asyncio.create_subprocess_exec(
            PLAIN_PYTHON,
            "main.py",
            cwd=directory,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await process.communicate()

    return await _latencies(one, jobs)


async def _spawn(argv: list[str], cwd: str = "/", **kwargs: object) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        **kwargs,  # type: ignore[arg-type]
    )
    await process.communicate()


async def plain_throughput(jobs: int, slots: int) -> float:
    """Jobs/s of the trivial python job spawned plainly, `slots` at a time, each by a shell
    loop (a parent that costs nothing, unlike a fork of this process): what the machine
    does with no sandbox and no platform, the physical limit."""
    directory = _program_dir()
    each = [jobs // slots + (1 if i < jobs % slots else 0) for i in range(slots)]
    loop = f'i=0; while [ $i -lt "$1" ]; do {PLAIN_PYTHON} main.py; i=$((i+1)); done'
    start = time.perf_counter()
    await asyncio.gather(*(_spawn(["/bin/sh", "-c", loop, "sh", str(n)], cwd=directory)
                           for n in each))
    return jobs / (time.perf_counter() - start)


async def true_per_run(jobs: int) -> dict[str, tuple[float, float]]:
    """(median, p90) ms of /bin/true: plainly, in a fresh bwrap, in the pooled sandbox."""
    from execution_plane.sandbox.bwrap import INIT_PATH
    from execution_plane.sandbox.output import CollectingSink

    figures = {"plain": await _latencies(lambda: _spawn([TRUE]), jobs)}
    async with sandbox_pool(1) as pool:
        slot = pool.slots[0]
        bash = pool.available["bash"]
        # The same sandbox as the pool's, made anew for the one run, as the slot's uid.
        argv = pool._sandbox_argv(slot, bash)
        argv = [*argv[: argv.index("--")], "--", TRUE]
        assert INIT_PATH not in argv[-1]
        def as_slot() -> None:  # (uvloop takes no user=/group=)
            os.setgroups([])
            os.setresgid(slot.gid, slot.gid, slot.gid)
            os.setresuid(slot.uid, slot.uid, slot.uid)

        figures["fresh bwrap"] = await _latencies(
            lambda: _spawn(argv, preexec_fn=as_slot), jobs
        )

        async def step() -> None:
            outcome = await pool._step(
                slot, bash, [TRUE], LIMITS, b"", CollectingSink(), asyncio.Event()
            )
            if outcome.verdict is not Verdict.OK:
                raise RuntimeError(f"pooled /bin/true failed: {outcome}")

        steps: list[float] = []
        resets: list[float] = []
        for i in range(jobs + WARMUP):
            started = time.perf_counter()
            await step()
            ran = time.perf_counter()
            await slot.recycle(LIMITS.workdir_bytes)  # what the slot does before the next job
            if i >= WARMUP:
                steps.append(ran - started)
                resets.append(time.perf_counter() - started)
        figures["pooled, the step"] = _median_p90(steps)
        figures["pooled, step + reset"] = _median_p90(resets)
    return figures


# -- sandbox ---------------------------------------------------------------------------


async def _discard(stream: OutputStream, data: bytes) -> None:
    pass


def _spec() -> JobSpec:
    return JobSpec("python", [SourceFile("main.py", TRIVIAL)], b"", [], LIMITS)


async def _sandboxed(pool: SandboxPool) -> None:
    outcome = await pool.run_job(_spec(), _discard, asyncio.Event())
    if outcome.verdict is not Verdict.OK:
        raise RuntimeError(f"sandboxed job failed: {outcome}")


@contextlib.asynccontextmanager
async def sandbox_pool(slots: int) -> AsyncIterator[SandboxPool]:
    pool = SandboxPool(slots=slots)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


async def sandbox_per_job(jobs: int) -> tuple[float, float]:
    async with sandbox_pool(1) as pool:
        return await _latencies(lambda: _sandboxed(pool), jobs)


async def raw_throughput(pool: SandboxPool, jobs: int) -> float:
    """Jobs/s with every slot of the (started, warm) pool busy."""
    start = time.perf_counter()
    await asyncio.gather(*(_sandboxed(pool) for _ in range(jobs)))
    return jobs / (time.perf_counter() - start)


def _cpu_ticks() -> tuple[int, int]:
    """(idle + iowait, all) CPU ticks of the machine so far, from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)


async def idle_share(phase: Awaitable[float]) -> tuple[float, float]:
    """(the phase's jobs/s, the share of the machine's CPU time idle while it ran): whether
    a phase was held back by CPU (little idle) or by waiting."""
    idle, total = _cpu_ticks()
    throughput = await phase
    idle_after, total_after = _cpu_ticks()
    return throughput, (idle_after - idle) / max(total_after - total, 1)


# -- the whole platform ----------------------------------------------------------------


class PlatformUnavailable(RuntimeError):
    """The platform could not be started here; the message says why."""


@dataclass
class PlatformUnderTest:
    client: SluiceClient
    one: Callable[[], Awaitable[None]]  # one trivial job, submitted and watched to its end

    async def watched_throughput(self, jobs: int) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(self.one() for _ in range(jobs)))
        return jobs / (time.perf_counter() - start)

    async def batch_throughput(self, jobs: int) -> float:
        return await submitted_then_collected(self.client, jobs)


@contextlib.asynccontextmanager
async def running_platform(slots: int) -> AsyncIterator[PlatformUnderTest]:
    """A control plane and an N-slot worker on a vhost of their own, warmed up; raises
    PlatformUnavailable with the reason when it cannot run here."""
    try:
        from bench.platform_jobs import python_job_runner
        from sluice.client import SluiceClient
        from tests.support.broker import RunVhost
        from tests.support.platform import Platform
    except ImportError as exc:
        raise PlatformUnavailable(f"the platform is not importable ({exc})") from exc
    try:
        vhost = RunVhost()
        await asyncio.to_thread(vhost.__enter__)
    except Exception as exc:
        raise PlatformUnavailable(f"no RabbitMQ to run it on ({exc})") from exc
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="sluice-bench-platform-"))
    stack = Platform(
        workdir,
        vhost.amqp_url(),
        prefix=f"bench-{uuid.uuid4().hex[:6]}",
        # The watched phase holds a WatchJob stream per job in flight, hundreds at once.
        extra_env={"SLUICE_WORKER_SLOTS": str(slots), "SLUICE_LOG_LEVEL": "warning",
                   "SLUICE_MAX_WATCHES_PER_TENANT": "100000"},
    )
    try:
        try:
            await asyncio.to_thread(stack.start_control_plane)
            await asyncio.to_thread(stack.start_worker)
            key = await asyncio.to_thread(stack.create_tenant, f"bench-{uuid.uuid4().hex[:6]}")
        except Exception as exc:
            lines = [line for line in str(exc).splitlines() if line.strip()] or [""]
            raise PlatformUnavailable(
                f"the platform failed to start ({type(exc).__name__}: {lines[-1].strip()};"
                f" logs in {workdir})") from exc
        async with SluiceClient(stack.api_target, key) as client:
            one = await python_job_runner(client, TRIVIAL)
            # Enough runs for the worker to see that runs are short and claim ahead.
            await asyncio.gather(*(one() for _ in range(max(slots * WARMUP, RECENT_RUNS))))
            yield PlatformUnderTest(client, one)
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


# -- throughput rounds -----------------------------------------------------------------


@dataclass
class Round:
    raw_before: float
    watched: float
    batch: float
    raw_after: float
    watched_idle: float  # share of CPU time idle during the watched phase
    raw_after_idle: float
    plain: float  # plain spawning on every slot's core, just after raw_after

    @property
    def raw(self) -> float:
        return (self.raw_before + self.raw_after) / 2

    @property
    def drift(self) -> float:
        return abs(self.raw_after - self.raw_before) / self.raw


async def throughput_rounds(pool: SandboxPool, platform: PlatformUnderTest, jobs: int,
                            rounds: int, slots: int) -> list[Round]:
    measured: list[Round] = []
    raw = await raw_throughput(pool, jobs)
    for _ in range(rounds):
        watched, watched_idle = await idle_share(platform.watched_throughput(jobs))
        # (No idle figure for the batch phase: it ends waiting for the next ListJobs poll.)
        batch = await platform.batch_throughput(jobs)
        after, after_idle = await idle_share(raw_throughput(pool, jobs))
        plain = await plain_throughput(jobs, slots)
        measured.append(Round(raw, watched, batch, after, watched_idle, after_idle, plain))
        raw = after
    return measured


# -- report ----------------------------------------------------------------------------


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def print_rounds(measured: list[Round], slots: int) -> None:
    print(f"throughput, all {slots} slots busy, jobs/s; each platform figure against the mean"
          " of the raw figures around it")
    print("  round     raw before  watched (ratio)   batch (ratio)   raw after  raw drift"
          "   CPU idle: watched  raw")
    for number, r in enumerate(measured, 1):
        print(f"  {number:5d}   {r.raw_before:10.1f} {r.watched:8.1f} ({r.watched / r.raw:.2f})"
              f" {r.batch:9.1f} ({r.batch / r.raw:.2f}) {r.raw_after:11.1f} {r.drift:9.0%}"
              f" {r.watched_idle:18.0%} {r.raw_after_idle:4.0%}")
    watched = [r.watched / r.raw for r in measured]
    batch = [r.batch / r.raw for r in measured]
    print(f"  whole platform, watched: {_spread(watched)} of raw; target >= 0.80"
          "   (a WatchJob stream per job)")
    print(f"  whole platform, batch:   {_spread(batch)} of raw; target >= 0.80"
          "   (submitted, then collected by ListJobs)")
    print(f"  plain spawning, {slots} at a time: {_spread([r.plain for r in measured])} jobs/s;"
          f" raw sandboxed runs keep {_spread([r.raw_after / r.plain for r in measured])}")
    print(f"  whole platform against plain spawning: watched"
          f" {_spread([r.watched / r.plain for r in measured])},"
          f" batch {_spread([r.batch / r.plain for r in measured])}; target >= 0.40")
    steady = [r for r in measured if r.drift <= 0.1]
    if steady and len(steady) < len(measured):
        print(f"  the {len(steady)} rounds whose raw figures agree within 10%: watched"
              f" {_spread([r.watched / r.raw for r in steady])},"
              f" batch {_spread([r.batch / r.raw for r in steady])}")


async def print_raw_only(pool: SandboxPool, jobs: int, slots: int, why_no_platform: str
                         ) -> None:
    print(f"  whole platform            {why_no_platform}")
    print()
    print(f"throughput, all {slots} slots busy")
    print(f"  raw sandboxed runs        {await raw_throughput(pool, jobs):7.1f} jobs/s")
    print(f"  plain spawning            {await plain_throughput(jobs, slots):7.1f} jobs/s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs per measurement")
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds")
    parser.add_argument("--no-platform", action="store_true", help="skip the platform part")
    options = parser.parse_args()
    jobs, slots = options.jobs, options.slots

    trues = await true_per_run(jobs)
    plain_median, plain_p90 = await plain_per_job(jobs)
    sandbox_median, sandbox_p90 = await sandbox_per_job(jobs)

    print(f"{TRUE}, {jobs} runs per figure, one at a time    median     p90   over plain")
    for label, (median, p90) in trues.items():
        print(f"  {label:40s} {median:7.2f} ms {p90:6.2f} ms"
              f" {median - trues['plain'][0]:+7.2f} ms")
    print("  target: pooled (the step) <= plain + 2 ms")
    print()

    print(f"trivial python job ({PLAIN_PYTHON} main.py), {jobs} jobs per figure, {slots} slots")
    print()
    print("per job, one at a time        median     p90    ratio to plain")
    print(f"  plain                     {plain_median:7.1f} ms {plain_p90:6.1f} ms   1.00")
    print(
        f"  sandbox                   {sandbox_median:7.1f} ms {sandbox_p90:6.1f} ms"
        f"   {sandbox_median / plain_median:.2f}"
        f"   (+{sandbox_median - plain_median:.1f} ms; target < 10 ms)"
    )
    async with sandbox_pool(slots) as pool:
        await raw_throughput(pool, slots * WARMUP)  # warm-up
        if options.no_platform:
            await print_raw_only(pool, jobs, slots, "skipped (--no-platform)")
            return
        try:
            async with running_platform(slots) as platform:
                median, p90 = await _latencies(platform.one, jobs)
                print(
                    f"  whole platform            {median:7.1f} ms {p90:6.1f} ms"
                    f"   {median / plain_median:.2f}   ({median / sandbox_median:.2f}x the"
                    " sandbox)"
                )
                print()
                print_rounds(
                    await throughput_rounds(pool, platform, jobs, options.rounds, slots), slots
                )
        except PlatformUnavailable as exc:
            await print_raw_only(pool, jobs, slots, str(exc))


if __name__ == "__main__":
    # On the loop the worker runs (sluice/service_loop.py): raw runs pay what the worker pays.
    uvloop.run(main())
