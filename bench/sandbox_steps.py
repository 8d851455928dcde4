"""Where a sandboxed job's time goes: the median of each step of one job, one at a time.

    .venv/bin/python bench/sandbox_steps.py [--jobs 100] [--null]

Wraps the sandbox's own functions with timers (nothing is replaced) and runs the trivial
python job of bench/sandbox.py, or with --null a program that does nothing
(`ld.so --version`), which leaves only the sandbox's own cost. Needs root, like the
sandbox. A benchmark, not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from execution_plane.sandbox import cgroups, pool, slot, warm  # noqa: E402 - repo on sys.path first
from execution_plane.sandbox.output import CollectingSink  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import sandbox as job_bench  # noqa: E402 - bench/sandbox.py: the same job and limits

NULL_PROGRAM = ["/usr/lib64/ld-linux-x86-64.so.2", "--version"]  # mounted for every language
WARMUP = 5
timings: dict[str, list[int]] = collections.defaultdict(list)
order: list[str] = []  # steps in the order of the job, for the printout


def _timed(owner: Any, name: str, label: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)
    order.append(label)
    if asyncio.iscoroutinefunction(original):

        @functools.wraps(original)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return await original(*args, **kwargs)
            finally:
                timings[label].append(time.perf_counter_ns() - start)

        setattr(owner, name, timed_async)
    else:

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return original(*args, **kwargs)
            finally:
                timings[label].append(time.perf_counter_ns() - start)

        setattr(owner, name, timed)


def _instrument() -> None:
    group = cgroups.SlotCgroupV1 if cgroups.locate_bases()[0] == 1 else cgroups.SlotCgroupV2
    _timed(pool.SandboxPool, "run_job", "run_job (all of it)")
    _timed(pool.workdir, "write_files", "  write the files (in a thread)")
    _timed(pool, "run_step", "  one step")
    _timed(group, "prepare", "    cgroup limits and counters")
    _timed(warm.WarmSandbox, "launch", "    the zygote exec's the program")
    _timed(warm.WarmSandbox, "wait_exit", "    the program, to its exit")
    _timed(group, "kill_all", "    cgroup sweep (freeze/kill/thaw)")
    _timed(group, "wait_empty", "    cgroup empty")
    _timed(pool.SandboxPool, "_release", "  reset the slot (after the outcome)")
    _timed(slot.Slot, "reset_workdir", "    fresh /work tmpfs")
    _timed(slot.Slot, "reset_tmp", "    fresh /tmp tmpfs")
    _timed(warm.WarmSandbox, "prepare", "    init checks, forks; zygote joins")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--null", action="store_true", help="a program that does nothing")
    options = parser.parse_args()
    _instrument()
    sandbox = pool.SandboxPool(slots=1)
    await sandbox.start()
    language = sandbox.available["python"]

    async def one() -> None:
        if options.null:
            await sandbox._step(
                sandbox.slots[0],
                language,
                NULL_PROGRAM,
                job_bench.LIMITS,
                b"",
                CollectingSink(),
                asyncio.Event(),
            )
        else:
            await job_bench._sandboxed(sandbox)

    try:
        for _ in range(WARMUP):
            await one()
        await sandbox.wait_released()
        timings.clear()
        for _ in range(options.jobs):
            await one()
            await sandbox.wait_released()  # the reset, timed apart from the job
    finally:
        await sandbox.close()
    what = "a program that does nothing" if options.null else "the trivial python job"
    print(f"{what}, {options.jobs} runs, one at a time; median per step")
    for label in order:
        if samples := timings.get(label):
            print(f"  {label:38s} {statistics.median(samples) / 1e6:7.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
