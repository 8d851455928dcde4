"""WatchJob across control planes: how soon a watcher on one hears an event written
through another.

    .venv/bin/python bench/watch_replicas.py [--samples 100] [--store postgresql]

Two control planes on one store (no worker once the languages are known: the events are a
queued job's cancellation).
For each sample a job is submitted through the first, watched through the second (its
first event read), then cancelled through the first; the figure is the time from sending
CancelJob to the watcher receiving the job's final event, so it includes the cancel call
itself. On PostgreSQL the store's notification of each event wakes the watcher (target:
p99 within 100 ms); on SQLite the watcher's poll of the store does, about once a second.
A benchmark, not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
from tests.support.broker import RunVhost  # noqa: E402
from tests.support.platform import Platform  # noqa: E402

TARGET_S = 0.100
CANCEL_CALLS: list[float] = []  # CancelJob's own latency, part of each sample
AFTER_ANSWER: list[float] = []  # the rest: from CancelJob's answer to the watcher's event


def quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_sample(first: SluiceClient, second: SluiceClient) -> float:
    job = await first.submit(api.SubmitJobRequest(
        language="python", files=[pb.File(name="main.py", content=b"pass")]))
    events = second.watch(job.id).__aiter__()
    await events.__anext__()  # QUEUED: the watch is open and has read the store
    started = time.perf_counter()
    await first.cancel(job.id)
    cancelled = time.perf_counter()
    async for event in events:
        if event.HasField("state_change") and event.state_change.state == pb.JOB_STATE_CANCELLED:
            heard = time.perf_counter()
            CANCEL_CALLS.append(cancelled - started)
            AFTER_ANSWER.append(heard - cancelled)
            return heard - started
    raise AssertionError(f"the watch of {job.id} ended without its cancellation")


async def run(options: argparse.Namespace) -> int:
    vhost = RunVhost()
    await asyncio.to_thread(vhost.__enter__)
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="sluice-bench-watch-"))
    stack = Platform(workdir, vhost.amqp_url(), prefix=f"watch-{uuid.uuid4().hex[:6]}",
                     extra_env={"SLUICE_LOG_LEVEL": "warning"}, store=options.store)
    try:
        await asyncio.to_thread(stack.start_control_plane)
        second_target = await asyncio.to_thread(stack.start_another_control_plane)
        key = await asyncio.to_thread(stack.create_tenant, "bench-watch")
        # A worker announces the languages, then goes: the jobs stay queued until cancelled.
        worker = await asyncio.to_thread(stack.start_worker)
        async with (SluiceClient(stack.api_target, key) as first,
                    SluiceClient(second_target, key) as second):
            async with asyncio.timeout(120):
                while not await first.languages():
                    await asyncio.sleep(0.2)
            await asyncio.to_thread(stack.kill, worker)
            for _ in range(5):  # warm-up: connections, prepared statements
                await one_sample(first, second)
            latencies = sorted([await one_sample(first, second)
                                for _ in range(options.samples)])
    finally:
        await asyncio.to_thread(stack.stop)
        await asyncio.to_thread(vhost.__exit__, None, None, None)
    p50, p90, p99 = (quantile(latencies, q) for q in (0.5, 0.9, 0.99))
    over = sum(latency > TARGET_S for latency in latencies)
    print(f"watch across control planes, store {stack.store}, {len(latencies)} samples: "
          f"p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms; {over} over {TARGET_S * 1000:.0f} ms; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    calls = sorted(CANCEL_CALLS)
    rest = sorted(AFTER_ANSWER)
    print(f"  of which CancelJob itself: p50 {quantile(calls, 0.5) * 1000:.1f} ms, "
          f"p99 {quantile(calls, 0.99) * 1000:.1f} ms; from its answer to the watcher's "
          f"event: p50 {quantile(rest, 0.5) * 1000:.1f} ms, "
          f"p99 {quantile(rest, 0.99) * 1000:.1f} ms")
    passed = p99 <= TARGET_S
    print(f"  {'PASS' if passed else 'FAIL'}: p99 within {TARGET_S * 1000:.0f} ms")
    return 0 if passed else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--store", default="postgresql",
                        help="postgresql (default: a database of the run's own), sqlite, "
                             "or a postgresql://... URL")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
