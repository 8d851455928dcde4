"""SubmitJob under a 15k/min burst: latency idle and while every worker slot spins.

    .venv/bin/python bench/burst.py [--rate 250] [--burst-s 20] [--idle-rate 20]
                                    [--idle-s 20] [--slots 2] [--heavy-cpu-s 1.0]
                                    [--soak MINUTES] [--log-level info]
                                    [--store sqlite|postgresql|both|postgresql://...]

Prints, in one run:
  idle: SubmitJob p50/p99 at --idle-rate submissions/s with no worker running (the
    control plane serves only these calls);
  burst: SubmitJob p50/p99 at --rate submissions/s (default 250/s, 15k/min) while another
    tenant's CPU-bound jobs keep every worker slot busy, with the rate achieved, the load
    generator's own lag and the CPU each service used;
  RabbitMQ alone at both rates (the same publish and confirm, just before each phase's
    figures are compared): the floor under SubmitJob's latency that is the broker's;
  the targets: burst p99 within 3x idle p99, and under 20 ms; PASS or FAIL for each.
With --soak MINUTES the burst rate is held that long instead of --burst-s, and every 10 s
it prints the queued jobs, that window's p50/p99 and each service's RSS (VmRSS): memory must
level off (the second half of the soak adds little), and the control plane must stay under
200 MB with 10,000 jobs queued (250/s reaches that in 40 s; the workers drain ~2 jobs/s).

The submissions come from a load generator in a subprocess (this file, `_load`), open-loop:
each call is sent at its scheduled time whether or not earlier ones have answered, over one
gRPC channel, and its latency is measured from its send to its answer. Its lag behind the
schedule is printed: a large lag means the client, not the platform, set the pace (it
shares the machine's cores with the platform). Every job submitted is CPU-bound (it spins
for --heavy-cpu-s), so the backlog keeps the slots busy for the whole burst.
--store picks the control plane's store: sqlite (a file of the run's own, the default),
postgresql (a database of the run's own on the local server, dropped after) or a
postgresql://USER@HOST/DB URL, used as it is (migrated first); both runs the whole
benchmark on SQLite and then on PostgreSQL, back to back in one run, and ends with the two
stores' figures side by side (compare them with each other, not with another run's).
Needs root for the sandbox and RabbitMQ (deploy/local/bootstrap.sh). A benchmark, not a
test: it asserts nothing, it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SELF = Path(__file__).resolve()
REPO = SELF.parents[1]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402 - needs the repo on sys.path first

from control_plane.job_publisher import JobPublisher  # noqa: E402
from control_plane.store.jobs import new_job_id  # noqa: E402
from sluice.client import SluiceClient, bearer  # noqa: E402
from sluice.topology import JobMessage, Topology  # noqa: E402
from sluice.v1 import execution_service_pb2 as api  # noqa: E402
from sluice.v1 import execution_service_pb2_grpc as api_grpc  # noqa: E402
from sluice.v1 import job_pb2 as pb  # noqa: E402
from tests.support.admin import AdminClient, NewTenant  # noqa: E402
from tests.support.broker import RunVhost  # noqa: E402
from tests.support.platform import Platform  # noqa: E402

RATIO_TARGET = 3.0
P99_TARGET_S = 0.020
RSS_TARGET_MB = 200.0
QUEUED_MARK = 10_000
SAMPLE_S = 10.0
FLOOR_S = 8.0  # how long the broker alone is measured at each rate
# Leveled off: the soak's second half grows RSS by at most this much (MB, or share).
LEVEL_MB, LEVEL_SHARE = 5.0, 0.05


def heavy_source(cpu_s: float) -> bytes:
    return (f"import time\nend = time.process_time() + {cpu_s}\n"
            "while time.process_time() < end:\n    pass\n").encode()


def heavy_job(cpu_s: float) -> api.SubmitJobRequest:
    return api.SubmitJobRequest(language="python", files=[pb.File(name="main.py",
                                                                  content=heavy_source(cpu_s))])


# -- the load generator (a subprocess) ---------------------------------------------------


async def generate(config: dict[str, object]) -> None:
    """Open loop: call i is sent at begin + i / rate, each in its own task. Every second
    prints a JSON line of [scheduled offset s, lag s, latency s, status code name]."""
    rate = float(config["rate"])  # type: ignore[arg-type]
    count = int(float(config["seconds"]) * rate)  # type: ignore[arg-type]
    request = heavy_job(float(config["cpu_s"]))  # type: ignore[arg-type]
    metadata = bearer(str(config["key"]))
    records: list[list[object]] = []
    async with grpc.aio.insecure_channel(str(config["target"])) as channel:
        stub = api_grpc.ExecutionServiceStub(channel)
        for _ in range(int(config["warmup"])):  # type: ignore[call-overload]
            await stub.SubmitJob(request, metadata=metadata, timeout=30)
        loop = asyncio.get_running_loop()
        begin = loop.time() + 0.05

        async def one(scheduled: float) -> None:
            sent = loop.time()
            try:
                await stub.SubmitJob(request, metadata=metadata, timeout=30)
                code = "OK"
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
            records.append([round(scheduled - begin, 4), sent - scheduled,
                            loop.time() - sent, code])

        async def flush() -> None:
            while True:
                await asyncio.sleep(1.0)
                batch, records[:] = list(records), []
                if batch:
                    print(json.dumps(batch), flush=True)

        flusher = asyncio.create_task(flush())
        tasks: set[asyncio.Task[None]] = set()
        for i in range(count):
            scheduled = begin + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
        flusher.cancel()
    if records:
        print(json.dumps(records), flush=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime}), flush=True)


# -- the benchmark -----------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    rate: float
    seconds: float
    records: list[tuple[float, float, float, str]] = field(default_factory=list)
    client_cpu_s: float = 0.0
    wall_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # service -> share of one core
    cp_ms_per_call: float = 0.0  # control-plane CPU per SubmitJob

    def ok_latencies(self) -> list[float]:
        return sorted(r[2] for r in self.records if r[3] == "OK")

    def errors(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records:
            if record[3] != "OK":
                counts[record[3]] = counts.get(record[3], 0) + 1
        return counts


def quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU of the process (not its children: a worker's jobs are not its own)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def services(stack: Platform) -> dict[str, int]:
    return {name: process.pid for name, process in stack.processes.items()
            if process.poll() is None}


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def queued_and_running(admin: AdminClient, tenants: list[NewTenant]) -> tuple[int, int]:
    queued = running = 0
    for tenant in tenants:
        usage = (await admin.get_quota(tenant.id)).usage
        queued += usage.queued_jobs
        running += usage.running_jobs
    return queued, running


class Soak:
    """Every SAMPLE_S during the burst: queued jobs, that window's latency, RSS of each
    service; remembers the control plane's RSS when the backlog first reaches QUEUED_MARK."""

    def __init__(self, stack: Platform, admin: AdminClient, tenants: list[NewTenant],
                 phase: Phase, verbose: bool) -> None:
        self._stack, self._admin, self._tenants = stack, admin, tenants
        self._phase, self._verbose = phase, verbose
        self.samples: list[tuple[float, int, dict[str, float]]] = []
        self.rss_at_mark: tuple[int, float] | None = None

    async def run(self, started: float) -> None:
        seen = 0  # records already shown: each line covers the answers since the last
        while True:
            await asyncio.sleep(max(0.0, started + len(self.samples) * SAMPLE_S + SAMPLE_S
                                    - time.monotonic()))
            elapsed = time.monotonic() - started
            queued, _ = await queued_and_running(self._admin, self._tenants)
            rss = {name: rss_mb(pid) for name, pid in services(self._stack).items()}
            self.samples.append((elapsed, queued, rss))
            if self.rss_at_mark is None and queued >= QUEUED_MARK:
                self.rss_at_mark = (queued, rss.get("control-plane", float("nan")))
            if self._verbose:
                records = self._phase.records
                window = sorted(r[2] for r in records[seen:] if r[3] == "OK")
                seen = len(records)
                rss_text = ", ".join(f"{name} {mb:.1f}" for name, mb in sorted(rss.items()))
                print(f"  t={elapsed:5.0f}s queued {queued:6d}  submit p50 "
                      f"{ms(quantile(window, 0.5)):>8} p99 {ms(quantile(window, 0.99)):>8}"
                      f"  RSS MB: {rss_text}  load {load_avg()}", flush=True)


async def run_load(stack: Platform, key: str, phase: Phase, cpu_s_each: float,
                   warmup: int) -> None:
    """Runs the load generator for the phase; records each call, and the CPU each service
    used meanwhile (the warm-up calls included, so they are counted per call too)."""
    config = {"target": stack.api_target, "key": key, "rate": phase.rate,
              "seconds": phase.seconds, "cpu_s": cpu_s_each, "warmup": warmup}
    before = {name: cpu_s(pid) for name, pid in services(stack).items()}
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SELF), "_load", json.dumps(config),
        stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    async for line in process.stdout:
        data = json.loads(line)
        if isinstance(data, dict):
            phase.client_cpu_s = data["cpu_s"]
        else:
            phase.records.extend(tuple(r) for r in data)  # type: ignore[misc]
    if await process.wait() != 0:
        raise RuntimeError(f"the load generator exited {process.returncode}")
    phase.wall_s = time.monotonic() - started
    used = {name: cpu_s(pid) - before[name]
            for name, pid in services(stack).items() if name in before}
    phase.cpu = {name: seconds / phase.wall_s for name, seconds in used.items()}
    phase.cp_ms_per_call = used["control-plane"] / (len(phase.records) + warmup) * 1000


async def broker_floor(amqp_url: str, rate: float, seconds: float) -> list[float]:
    """Publish-and-confirm alone, as SubmitJob does it (same publisher, quorum queues of a
    topology of its own that nothing consumes), open-loop at `rate`: the part of SubmitJob's
    latency that is RabbitMQ's, on this machine, now."""
    publisher = JobPublisher(amqp_url, Topology(f"burst-floor-{uuid.uuid4().hex[:6]}"))
    await publisher.start()
    latencies: list[float] = []
    try:
        async def one() -> None:
            sent = time.perf_counter()
            await publisher.publish(JobMessage(new_job_id(), "t_floor"))
            latencies.append(time.perf_counter() - sent)

        for _ in range(10):
            await one()
        latencies.clear()
        tasks = []
        begin = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    finally:
        await publisher.close()
    return sorted(latencies)


def report_phase(phase: Phase) -> None:
    ok = phase.ok_latencies()
    lags = sorted(r[1] for r in phase.records)
    achieved = len(phase.records) / phase.seconds if phase.seconds else 0.0
    errors = phase.errors()
    print(f"  {phase.name:5}  {len(ok)} OK of {len(phase.records)} at {achieved:.0f}/s "
          f"(asked {phase.rate:g}/s)  p50 {ms(quantile(ok, 0.5))}  p90 "
          f"{ms(quantile(ok, 0.9))}  p99 {ms(quantile(ok, 0.99))}  max "
          f"{ms(ok[-1] if ok else float('nan'))}"
          + (f"  errors {errors}" if errors else ""))
    print(f"         load generator: lag behind schedule p99 {ms(quantile(lags, 0.99))}, "
          f"max {ms(lags[-1] if lags else float('nan'))}; its CPU "
          f"{phase.client_cpu_s / phase.wall_s * 100:.0f}% of a core")
    print("         CPU (share of one core): " + ", ".join(
        f"{name} {share * 100:.0f}%" for name, share in sorted(phase.cpu.items()))
          + f"; control plane {phase.cp_ms_per_call:.2f} ms CPU per SubmitJob")


@dataclass(frozen=True)
class StoreFigures:
    store: str
    idle: tuple[float, float]  # SubmitJob p50, p99 (seconds)
    burst: tuple[float, float]
    passed: bool


async def run(options: argparse.Namespace) -> int:
    stores = ["sqlite", "postgresql"] if options.store == "both" else [options.store]
    figures = [await run_store(options, store) for store in stores]
    if len(figures) > 1:
        print(f"stores side by side (one run, back to back): SubmitJob p50/p99 at "
              f"{options.idle_rate:g}/s idle and {options.rate:g}/s burst")
        for f in figures:
            print(f"  {f.store:10}  idle p50 {ms(f.idle[0])} p99 {ms(f.idle[1])}  "
                  f"burst p50 {ms(f.burst[0])} p99 {ms(f.burst[1])}")
    return 0 if all(f.passed for f in figures) else 1


async def run_store(options: argparse.Namespace, store: str) -> StoreFigures:
    soak_s = options.soak * 60 if options.soak else 0.0
    burst_s = soak_s or options.burst_s
    idle = Phase("idle", options.idle_rate, options.idle_s)
    burst = Phase("burst", options.rate, burst_s)
    vhost = RunVhost()
    await asyncio.to_thread(vhost.__enter__)
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="sluice-bench-burst-"))
    stack = Platform(workdir, vhost.amqp_url(), prefix=f"burst-{uuid.uuid4().hex[:6]}",
                     extra_env={"SLUICE_WORKER_SLOTS": str(options.slots),
                                "SLUICE_LOG_LEVEL": options.log_level},
                     store=store)
    soak: Soak | None = None
    floors: dict[str, list[float]] = {}
    loads: dict[str, str] = {"start": load_avg()}
    try:
        await asyncio.to_thread(stack.start_control_plane)
        first_worker = await asyncio.to_thread(stack.start_worker)
        await asyncio.to_thread(stack.start_recovery)
        admin_key = await asyncio.to_thread(stack.create_tenant, "bench-ops", admin=True)
        async with AdminClient(stack.api_target, admin_key) as admin:
            submitter = await admin.create_tenant("bench-burst")
            heavy = await admin.create_tenant("bench-heavy")
            planned = int(idle.rate * idle.seconds + burst.rate * burst.seconds) + 1000
            await admin.set_quota(submitter.id, submit_rate_per_s=options.rate * 2,
                                  submit_burst=max(2000, int(options.rate * 4)),
                                  max_queued_jobs=planned,
                                  cpu_seconds_per_day=int(planned * options.heavy_cpu_s) + 10)
            async with SluiceClient(stack.api_target, heavy.key) as heavy_client:
                async with asyncio.timeout(120):  # the worker announces its languages
                    while not await heavy_client.languages():
                        await asyncio.sleep(0.2)
                # Idle: no worker at all (the languages it announced stay in the store).
                await asyncio.to_thread(stack.kill, first_worker, signal.SIGTERM)
                await run_load(stack, submitter.key, idle, options.heavy_cpu_s, warmup=20)
                loads["idle"] = load_avg()
                floors["idle"] = await broker_floor(vhost.amqp_url(), idle.rate, FLOOR_S)

                await asyncio.to_thread(stack.start_worker)
                for _ in range(options.slots * 4):
                    await heavy_client.submit(heavy_job(options.heavy_cpu_s))
                async with asyncio.timeout(120):  # every slot spinning
                    while (await queued_and_running(admin, [submitter, heavy]))[1] \
                            < options.slots:
                        await asyncio.sleep(0.2)
                floors["burst"] = await broker_floor(vhost.amqp_url(), burst.rate, FLOOR_S)
                started = time.monotonic()
                soak = Soak(stack, admin, [submitter, heavy], burst, verbose=bool(soak_s))
                sampler = asyncio.create_task(soak.run(started))
                try:
                    await run_load(stack, submitter.key, burst, options.heavy_cpu_s, warmup=5)
                finally:
                    sampler.cancel()
                loads["burst"] = load_avg()
                _, running = await queued_and_running(admin, [submitter, heavy])
    finally:
        await asyncio.to_thread(stack.stop)
        await asyncio.to_thread(vhost.__exit__, None, None, None)

    idle_p99 = quantile(idle.ok_latencies(), 0.99)
    burst_p99 = quantile(burst.ok_latencies(), 0.99)
    ratio = burst_p99 / idle_p99
    print(f"burst: SubmitJob with {options.slots} worker slots busy with "
          f"{options.heavy_cpu_s:g}-CPU-s jobs ({running} running at the end); "
          f"log level {options.log_level}; store {stack.store}")
    report_phase(idle)
    report_phase(burst)
    print("  RabbitMQ alone (publish + confirm, SubmitJob's publisher, no store, no gRPC): "
          + "; ".join(f"{name} rate p50 {ms(quantile(f, 0.5))} p99 {ms(quantile(f, 0.99))}"
                      for name, f in floors.items()))
    print(f"  load average (1/5/15 min): start {loads['start']}, after idle {loads['idle']}, "
          f"after burst {loads['burst']}")
    ratio_ok = ratio <= RATIO_TARGET
    p99_ok = burst_p99 < P99_TARGET_S
    print(f"  {'PASS' if ratio_ok else 'FAIL'}: burst p99 is {ratio:.2f}x idle p99 "
          f"(target at most {RATIO_TARGET:g}x)")
    print(f"  {'PASS' if p99_ok else 'FAIL'}: burst p99 {ms(burst_p99)} "
          f"(target under {ms(P99_TARGET_S)})")
    passed = ratio_ok and p99_ok
    if soak is not None and soak_s:
        passed = report_soak(soak) and passed
    idle_ok, burst_ok = idle.ok_latencies(), burst.ok_latencies()
    return StoreFigures(stack.store, (quantile(idle_ok, 0.5), idle_p99),
                        (quantile(burst_ok, 0.5), burst_p99), passed)


def report_soak(soak: Soak) -> bool:
    passed = True
    if soak.rss_at_mark is None:
        print(f"  FAIL: the backlog never reached {QUEUED_MARK} jobs (soak longer)")
        passed = False
    else:
        queued, mb = soak.rss_at_mark
        ok = mb < RSS_TARGET_MB
        passed = passed and ok
        print(f"  {'PASS' if ok else 'FAIL'}: control plane RSS {mb:.1f} MB with {queued} jobs "
              f"queued (target under {RSS_TARGET_MB:g} MB)")
    if len(soak.samples) < 4:
        print("  FAIL: too few samples to tell whether memory levels off (soak longer)")
        return False
    middle = soak.samples[len(soak.samples) // 2]
    last = soak.samples[-1]
    for name in sorted(last[2]):
        start_mb = soak.samples[0][2].get(name, float("nan"))
        mid_mb, end_mb = middle[2].get(name, float("nan")), last[2][name]
        growth = end_mb - mid_mb
        ok = growth <= max(LEVEL_MB, LEVEL_SHARE * mid_mb)
        passed = passed and ok
        print(f"  {'PASS' if ok else 'FAIL'}: {name} RSS {start_mb:.1f} MB at "
              f"t={soak.samples[0][0]:.0f}s, {mid_mb:.1f} at t={middle[0]:.0f}s, {end_mb:.1f} at "
              f"t={last[0]:.0f}s: {growth:+.1f} MB over the second half (levels off: at most "
              f"+{LEVEL_MB:g} MB or +{LEVEL_SHARE:.0%})")
    return passed


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_load":
        asyncio.run(generate(json.loads(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=250.0,
                        help="burst submissions per second (default 250: 15k/min)")
    parser.add_argument("--burst-s", type=float, default=20.0, help="burst length (default 20)")
    parser.add_argument("--idle-rate", type=float, default=20.0,
                        help="idle-phase submissions per second (default 20)")
    parser.add_argument("--idle-s", type=float, default=20.0, help="idle length (default 20)")
    parser.add_argument("--slots", type=int, default=2, help="worker slots (default 2)")
    parser.add_argument("--heavy-cpu-s", type=float, default=1.0,
                        help="CPU-seconds each job burns (default 1.0)")
    parser.add_argument("--soak", type=float, default=0.0, metavar="MINUTES",
                        help="hold the burst rate this long, printing RSS every 10 s")
    parser.add_argument("--log-level", default="info",
                        help="the services' SLUICE_LOG_LEVEL (default info, as deployed)")
    parser.add_argument("--store", default="sqlite",
                        help="sqlite (default), postgresql (a database of the run's own), "
                             "both (one after the other, in one run) or a postgresql://... URL")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
