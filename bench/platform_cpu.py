"""Where the platform's CPU goes per job: CPU ms per trivial job, per process.

    .venv/bin/python bench/platform_cpu.py [--jobs 400] [--slots 2] [--caller watched|batch]
        [--log-level warning] [--py-spy DIR]

Runs trivial jobs through a real control plane and an N-slot worker with every slot busy
(as bench/sandbox.py does) and reads each process's CPU time (user + system, its reaped
children included) from /proc before and after. CPU time is what the jobs and the platform
compete for on a small machine, and unlike wall time it hardly moves when other people load
the machine, so it shows what a change saves even when throughput figures are noisy.
--caller picks the caller bench/sandbox.py times: `watched` follows each job with a
WatchJob stream, `batch` submits every job and then collects them with ListJobs.
The local RabbitMQ node (beam.smp), when it runs here, is counted too: all of it.
The worker's figure includes the sandboxed programs (its children); the sandbox alone is
measured the same way in-process for comparison. With --py-spy, py-spy (if installed in the
venv) samples the control plane and the worker during the load and writes collapsed stacks.
A benchmark, not a test: it asserts nothing, it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.sandbox import TRIVIAL, WARMUP, _sandboxed, submitted_then_collected  # noqa: E402
from execution_plane.sandbox import SandboxPool  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """CPU seconds of a process and its live descendants, their reaped children included
    (a sandboxed program, once reaped, counts in its parent's children time)."""
    stats: dict[int, tuple[int, int]] = {}  # pid -> (ppid, CPU ticks)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # after the command's ")": state, ppid, ...; utime, stime, cutime, cstime at 11-14
        fields = stat[stat.rindex(")") + 2:].split()
        stats[int(entry)] = (int(fields[1]), sum(int(value) for value in fields[11:15]))
    total, members = 0, {root}
    for pid in sorted(stats):
        chain, parent = [], pid
        while parent in stats and parent not in members and parent > 1:
            chain.append(parent)
            parent = stats[parent][0]
        if parent in members:
            members.update(chain)
    for pid in members:
        total += stats.get(pid, (0, 0))[1]
    return total / TICK


def rabbitmq_pid() -> int | None:
    """The local RabbitMQ node's Erlang VM, if it runs on this machine."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == "beam.smp":
                    return int(entry)
            except OSError:
                continue
    return None


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of one process (threads of one name added up)."""
    threads: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = "main" if tid == str(pid) else stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        threads[name] = threads.get(name, 0) + (int(fields[11]) + int(fields[12])) / TICK
    return threads


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_py_spy(spy_dir: Path, pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    spy_dir.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return [
        subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
             "--nonblocking", "--output", str(spy_dir / f"{name.split()[0]}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name, pid in pids.items()
    ]


async def sandbox_cpu(jobs: int, slots: int) -> tuple[float, float]:
    """(CPU ms per job, jobs/s) of raw sandboxed runs in this process."""
    pool = SandboxPool(slots=slots)
    await pool.start()
    try:
        await asyncio.gather(*(_sandboxed(pool) for _ in range(slots * WARMUP)))
        cpu, start = tree_cpu_s(os.getpid()), time.perf_counter()
        own = self_cpu_s()
        await asyncio.gather(*(_sandboxed(pool) for _ in range(jobs)))
        elapsed = time.perf_counter() - start
        print(f"  the pool's own process: {(self_cpu_s() - own) * 1000 / jobs:6.2f} CPU ms per job")
        return (tree_cpu_s(os.getpid()) - cpu) * 1000 / jobs, jobs / elapsed
    finally:
        await pool.close()


async def platform_cpu(jobs: int, slots: int, caller: str, log_level: str,
                       spy_dir: Path | None) -> None:
    from bench.platform_jobs import python_job_runner
    from sluice.client import SluiceClient
    from tests.support.broker import RunVhost
    from tests.support.platform import Platform

    vhost = RunVhost()
    await asyncio.to_thread(vhost.__enter__)
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="sluice-bench-cpu-"))
    stack = Platform(
        workdir, vhost.amqp_url(), prefix=f"bench-{uuid.uuid4().hex[:6]}",
        extra_env={"SLUICE_WORKER_SLOTS": str(slots), "SLUICE_LOG_LEVEL": log_level},
    )
    try:
        await asyncio.to_thread(stack.start_control_plane)
        worker = await asyncio.to_thread(stack.start_worker)
        key = await asyncio.to_thread(stack.create_tenant, f"bench-{uuid.uuid4().hex[:6]}")
        sessions = {"control plane": stack.processes["control-plane"].pid,
                    "worker + sandbox": stack.processes[worker].pid}
        broker = rabbitmq_pid()
        async with SluiceClient(stack.api_target, key) as client:
            one = await python_job_runner(client, TRIVIAL)

            await asyncio.gather(*(one() for _ in range(slots * WARMUP * 4)))
            spies = []
            if spy_dir is not None:
                spies = await asyncio.to_thread(start_py_spy, spy_dir, sessions)
                await asyncio.sleep(1)
            before = {name: tree_cpu_s(pid) for name, pid in sessions.items()}
            threads_before = {name: thread_cpu_s(pid) for name, pid in sessions.items()}
            broker_before = tree_cpu_s(broker) if broker else 0.0
            client_before, start = self_cpu_s(), time.perf_counter()
            if caller == "batch":
                throughput = await submitted_then_collected(client, jobs)
            else:
                await asyncio.gather(*(one() for _ in range(jobs)))
                throughput = jobs / (time.perf_counter() - start)
            after = {name: tree_cpu_s(pid) for name, pid in sessions.items()}
            threads_after = {name: thread_cpu_s(pid) for name, pid in sessions.items()}
            client_cpu = self_cpu_s() - client_before
            broker_cpu = tree_cpu_s(broker) - broker_before if broker else None
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                await asyncio.to_thread(spy.wait, 60)
        print(f"whole platform, {caller} caller: {throughput:.1f} jobs/s; CPU ms per job:")
        for name in sessions:
            print(f"  {name:22} {(after[name] - before[name]) * 1000 / jobs:6.2f}")
            for thread, cpu in sorted(threads_after[name].items(), key=lambda item: -item[1]):
                used = (cpu - threads_before[name].get(thread, 0)) * 1000 / jobs
                if used >= 0.05:
                    print(f"    thread {thread:15} {used:6.2f}")
        print(f"  {'bench client':22} {client_cpu * 1000 / jobs:6.2f}")
        total = sum(after[name] - before[name] for name in sessions) + client_cpu
        if broker_cpu is None:
            print(f"  {'total':22} {total * 1000 / jobs:6.2f}  (RabbitMQ not on this machine)")
        else:
            # The whole node: anything else using it on this machine counts here too.
            print(f"  {'RabbitMQ (the node)':22} {broker_cpu * 1000 / jobs:6.2f}")
            print(f"  {'total':22} {(total + broker_cpu) * 1000 / jobs:6.2f}")
    finally:
        await asyncio.to_thread(stack.stop)
        await asyncio.to_thread(vhost.__exit__, None, None, None)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--caller", choices=("watched", "batch"), default="watched")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR")
    options = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f}")
    cpu_ms, throughput = await sandbox_cpu(options.jobs, options.slots)
    print(f"raw sandboxed runs: {throughput:.1f} jobs/s; CPU ms per job {cpu_ms:6.2f}")
    await platform_cpu(options.jobs, options.slots, options.caller, options.log_level,
                       options.py_spy)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    # On the loop the worker runs (sluice/service_loop.py): raw runs pay what the worker pays.
    uvloop.run(main())
