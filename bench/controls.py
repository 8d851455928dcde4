"""How long an operator's runtime control takes to act, on a real platform.

    .venv/bin/python bench/controls.py [--rounds 10] [--report-interval-s 2.0]

Prints, in one run (one worker with two slots, reporting every --report-interval-s):
  for SetWorkerSlots (down, then back up), DrainWorker and ResumeWorker: the time from the
    call's answer to the first ListWorkers that shows the worker applied it (its report),
    median and slowest of --rounds, each control sent at a random point of the worker's
    report cycle; the expectation is up to one report interval, half of one on average;
  for a pause: a job submitted to a paused tenant that waits, and the time from
    ResumeTenant's answer to the job RUNNING (the hold releaser's sweep and a claim).
Needs root for the sandbox and RabbitMQ (deploy/local/bootstrap.sh). A benchmark, not a
test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sluice.client import SluiceClient  # noqa: E402 - needs the repo on sys.path first
from sluice.v1 import admin_service_pb2 as adm  # noqa: E402
from sluice.v1 import execution_service_pb2 as api  # noqa: E402
from sluice.v1 import job_pb2 as pb  # noqa: E402
from tests.support.admin import AdminClient  # noqa: E402
from tests.support.broker import RunVhost  # noqa: E402
from tests.support.platform import Platform  # noqa: E402

JOB = api.SubmitJobRequest(language="python",
                           files=[pb.File(name="main.py", content=b"print('go')\n")])


async def applied_after(admin: AdminClient, check: Callable[[adm.Worker], bool]) -> float:
    started = time.perf_counter()
    async with asyncio.timeout(120):
        while True:
            workers = (await admin.stub.ListWorkers(adm.ListWorkersRequest(),
                                                    metadata=admin.metadata)).workers
            if workers and workers[0].applied and check(workers[0]):
                return time.perf_counter() - started
            await asyncio.sleep(0.01)


def line(name: str, samples: list[float]) -> str:
    return (f"{name:<22} median {statistics.median(samples) * 1000:7.0f} ms   "
            f"slowest {max(samples) * 1000:7.0f} ms   ({len(samples)} rounds)")


async def control(admin: AdminClient, method: str, request: object, interval_s: float,
                  check: Callable[[adm.Worker], bool]) -> float:
    # Anywhere in the worker's report cycle, not just after a report.
    await asyncio.sleep(random.uniform(0, interval_s))
    await getattr(admin.stub, method)(request, metadata=admin.metadata)
    return await applied_after(admin, check)


async def measure(platform: Platform, rounds: int, interval_s: float) -> None:
    async with AdminClient(platform.api_target, platform.admin_key) as admin:
        worker = "worker-1"
        await applied_after(admin, lambda w: True)
        figures: dict[str, list[float]] = {"slots 2 -> 1": [], "slots 1 -> 2": [], "drain": [],
                                           "undrain": []}
        steps = [
            ("slots 2 -> 1", "SetWorkerSlots",
             adm.SetWorkerSlotsRequest(worker_id=worker, slots=1), 1),
            ("slots 1 -> 2", "SetWorkerSlots", adm.SetWorkerSlotsRequest(worker_id=worker), 2),
            ("drain", "DrainWorker", adm.DrainWorkerRequest(worker_id=worker), 0),
            ("undrain", "ResumeWorker", adm.ResumeWorkerRequest(worker_id=worker), 2),
        ]
        for _ in range(rounds):
            for name, method, request, active in steps:
                figures[name].append(await control(
                    admin, method, request, interval_s,
                    lambda w, active=active: w.active_slots == active))
        for name, samples in figures.items():
            print(line(name, samples))

        tenant = await admin.create_tenant("paused")
        resumed: list[float] = []
        async with SluiceClient(platform.api_target, tenant.key) as client:
            for _ in range(rounds):
                await admin.stub.PauseTenant(adm.PauseTenantRequest(tenant_id=tenant.id),
                                             metadata=admin.metadata)
                job = await client.submit(JOB)
                async with asyncio.timeout(60):
                    while not (await client.get(job.id)).state_reason:
                        await asyncio.sleep(0.05)
                await admin.stub.ResumeTenant(adm.ResumeTenantRequest(tenant_id=tenant.id),
                                              metadata=admin.metadata)
                started = time.perf_counter()
                async with asyncio.timeout(60):
                    while (await client.get(job.id)).state == pb.JOB_STATE_QUEUED:
                        await asyncio.sleep(0.01)
                resumed.append(time.perf_counter() - started)
                await client.wait(job.id)
        print(line("resume -> running", resumed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--report-interval-s", type=float, default=2.0)
    args = parser.parse_args()
    with RunVhost() as vhost, tempfile.TemporaryDirectory() as workdir:
        platform = Platform(Path(workdir), vhost.amqp_url(), prefix="bench-controls",
                            extra_env={"SLUICE_WORKER_SLOTS": "2",
                                       "SLUICE_WORKER_REPORT_INTERVAL_S":
                                           str(args.report_interval_s)})
        try:
            platform.start_control_plane()
            platform.start_worker()
            print(f"one worker, 2 slots, reporting every {args.report_interval_s} s")
            asyncio.run(measure(platform, args.rounds, args.report_interval_s))
        finally:
            platform.stop()


if __name__ == "__main__":
    main()
