"""Fair share: tenant B's job latency alone, and while tenant A floods the platform.

    .venv/bin/python bench/fairness.py [--flood 2000] [--slots 2] [--heavy-cpu-s 1.0]
                                       [--samples 5] [--rate 250]

Prints, in one run:
  the heavy job's run time (one of A's CPU-bound jobs, start to end in the store), alone and
    during the flood (the jobs B waits behind: both cores are busy then, so they run longer);
  B's latency (submit to result, a trivial job) alone, then while A has thousands of heavy
    jobs queued, with the target: within 2x of alone plus one heavy job's run time (during
    the flood); PASS when B's slowest job meets it;
  A's SubmitJob latency while it floods at --rate submissions/s (the quota checks run in
    the transaction that stores each job).
A and B are picked on different shard queues: tenants that hash onto the same shard share
its FIFO (README, "Fair share"). Needs root for the sandbox and RabbitMQ
(deploy/local/bootstrap.sh). A benchmark, not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sluice.client import SluiceClient  # noqa: E402 - needs the repo on sys.path first
from sluice.v1 import execution_service_pb2 as api  # noqa: E402
from sluice.v1 import job_pb2 as pb  # noqa: E402
from tests.support.admin import AdminClient, NewTenant  # noqa: E402
from tests.support.broker import RunVhost  # noqa: E402
from tests.support.platform import Platform  # noqa: E402

LIGHT = b"print('b')\n"


def heavy_source(cpu_s: float) -> bytes:
    return (f"import time\nend = time.process_time() + {cpu_s}\n"
            "while time.process_time() < end:\n    pass\n").encode()


def job(source: bytes) -> api.SubmitJobRequest:
    return api.SubmitJobRequest(language="python", files=[pb.File(name="main.py",
                                                                  content=source)])


def seconds(ts_end: object, ts_start: object) -> float:
    return (ts_end.ToNanoseconds() - ts_start.ToNanoseconds()) / 1e9  # type: ignore[attr-defined]


async def latency(client: SluiceClient, request: api.SubmitJobRequest) -> float:
    started = time.perf_counter()
    submitted = await client.submit(request)
    done = await client.wait(submitted.id, within_s=600)
    if done.state != pb.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"B's job ended {pb.JobState.Name(done.state)}: {done.result}")
    return time.perf_counter() - started


async def b_latencies(client: SluiceClient, samples: int) -> list[float]:
    return [await latency(client, job(LIGHT)) for _ in range(samples)]


async def flood(client: SluiceClient, count: int, rate: float, request: api.SubmitJobRequest
                ) -> list[float]:
    """Submits `count` jobs paced at `rate` a second; returns each SubmitJob's latency."""
    latencies: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        await client.submit(request, deadline_s=30)
        latencies.append(time.perf_counter() - started)

    tasks = []
    begin = time.perf_counter()
    for i in range(count):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies


async def tenant_on_another_shard(admin: AdminClient, than: NewTenant) -> NewTenant:
    while True:
        tenant = await admin.create_tenant("bench-b")
        if tenant.shard != than.shard:
            return tenant


def ms(value: float) -> str:
    return f"{value * 1000:8.0f} ms"


async def run(options: argparse.Namespace) -> int:
    vhost = RunVhost()
    await asyncio.to_thread(vhost.__enter__)
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="sluice-bench-fairness-"))
    stack = Platform(workdir, vhost.amqp_url(), prefix=f"fair-{uuid.uuid4().hex[:6]}",
                     extra_env={"SLUICE_WORKER_SLOTS": str(options.slots),
                                "SLUICE_LOG_LEVEL": "warning"})
    try:
        await asyncio.to_thread(stack.start_control_plane)
        await asyncio.to_thread(stack.start_worker)
        admin_key = await asyncio.to_thread(stack.create_tenant, "bench-ops", admin=True)
        async with AdminClient(stack.api_target, admin_key) as admin:
            a = await admin.create_tenant("bench-a")
            b = await tenant_on_another_shard(admin, a)
            await admin.set_quota(a.id, max_queued_jobs=options.flood + 100,
                                  submit_burst=options.flood + 100)
            async with (SluiceClient(stack.api_target, a.key) as flooder,
                        SluiceClient(stack.api_target, b.key) as client):
                async with asyncio.timeout(120):
                    while not await client.languages():
                        await asyncio.sleep(0.2)
                heavy = job(heavy_source(options.heavy_cpu_s))
                await b_latencies(client, 2)  # warm-up
                one_heavy = await flooder.wait((await flooder.submit(heavy)).id, within_s=120)
                heavy_run_s = seconds(one_heavy.end_time, one_heavy.start_time)
                alone = await b_latencies(client, options.samples)

                submit_latencies = await flood(flooder, options.flood, options.rate, heavy)
                queued_before = (await admin.get_quota(a.id)).usage.queued_jobs
                during = await b_latencies(client, options.samples)
                queued_after = (await admin.get_quota(a.id)).usage.queued_jobs
                finished = await flooder.stub.ListJobs(
                    api.ListJobsRequest(states=[pb.JOB_STATE_SUCCEEDED], page_size=100),
                    metadata=flooder.metadata)
                heavy_during_s = statistics.median(
                    seconds(j.end_time, j.start_time) for j in finished.jobs
                    if j.id != one_heavy.id)
    finally:
        await asyncio.to_thread(stack.stop)
        await asyncio.to_thread(vhost.__exit__, None, None, None)

    alone_median = statistics.median(alone)
    target = 2 * alone_median + heavy_during_s
    worst = max(during)
    submit_sorted = sorted(submit_latencies)
    p99 = submit_sorted[min(len(submit_sorted) - 1, int(len(submit_sorted) * 0.99))]
    print(f"fair share: {options.slots}-slot worker; tenant A on shard {a.shard}, "
          f"B on shard {b.shard}; {options.samples} samples of B each")
    print(f"  heavy job (A's, {options.heavy_cpu_s:g} CPU-s), run time   {ms(heavy_run_s)} alone,"
          f" {ms(heavy_during_s).strip()} during the flood")
    print(f"  B alone                 median {ms(alone_median)}   max {ms(max(alone))}")
    print(f"  B while A floods        median {ms(statistics.median(during))}   max {ms(worst)}"
          f"   (A queued: {queued_before} before, {queued_after} after)")
    print(f"  target (2 x alone + one heavy job)      {ms(target)}"
          f"   (with the heavy job's run time alone: {ms(2 * alone_median + heavy_run_s).strip()})")
    print(f"  {'PASS' if worst <= target else 'FAIL'}: B's slowest job during the flood took "
          f"{worst / target:.2f} of the target")
    print(f"  A's flood: {options.flood} SubmitJob at {options.rate:g}/s, latency "
          f"p50 {ms(statistics.median(submit_sorted)).strip()}, p99 {ms(p99).strip()}")
    return 0 if worst <= target else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=2000, help="A's heavy jobs (default 2000)")
    parser.add_argument("--slots", type=int, default=2, help="worker slots (default 2)")
    parser.add_argument("--heavy-cpu-s", type=float, default=1.0,
                        help="CPU-seconds each of A's jobs burns (default 1.0)")
    parser.add_argument("--samples", type=int, default=10, help="B's jobs per figure")
    parser.add_argument("--rate", type=float, default=250.0,
                        help="A's submissions per second (default 250)")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
