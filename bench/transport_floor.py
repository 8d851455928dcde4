"""The floor under the platform's CPU per job: the contract's RPCs and the broker alone.

    .venv/bin/python bench/transport_floor.py [--jobs 400] [--slots 2] [--rounds N]

A trivial job (bench/sandbox.py's, which prints nothing) costs, by contract, one SubmitJob
and one RunJob stream (claim, assignment, the result, its acceptance), plus one publish to a
quorum queue with its confirm, a delivery and an ack. A watching caller adds a WatchJob
stream (QUEUED, RUNNING, the result, SUCCEEDED); a batch caller instead lists the ended
jobs every half second, a page of up to 1,000 per ListJobs. This benchmark runs exactly that
traffic, for both callers, with handlers that do nothing else: no store, no key check, no
quotas, no logs, no metrics, no sandbox. Each role is its own process on uvloop, as the
services are.

It prints the CPU per job of each process (RabbitMQ's node included) and, beside the CPU
of a raw sandboxed run measured in the same run, the ratio of CPU per job the platform
would have if everything else it does per job were free. While the raw runs keep every core
busy, throughput follows CPU per job and that ratio caps the platform's throughput ratio;
when raw runs leave cores idle (a fast, quiet machine), the platform's work partly fills
the idle time and the measured throughput ratio can pass it. bench/platform_cpu.py prints what
the platform spends; the difference is what Sluice's own work (store, auth, quotas, logs)
costs on top of the floor.
With --rounds N it then runs the same floor around real sandboxed runs (the floor's worker
runs each job in a SandboxPool between its assignment and its result, claiming ahead as the
worker does) and measures its throughput in N rounds against raw runs, as bench/sandbox.py
measures the platform: the throughput ratio Sluice would reach if its own work cost nothing.
A benchmark, not a test: it asserts nothing, it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import grpc
import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.platform_cpu import rabbitmq_pid, sandbox_cpu, self_cpu_s, tree_cpu_s  # noqa: E402
from bench.sandbox import (  # noqa: E402
    TRIVIAL,
    WARMUP,
    _discard,
    _spec,
    raw_throughput,
    sandbox_pool,
)
from execution_plane.proto_mapping import result_message  # noqa: E402
from execution_plane.sandbox import SandboxPool  # noqa: E402
from sluice.v1 import execution_service_pb2 as api  # noqa: E402
from sluice.v1 import execution_service_pb2_grpc as api_grpc  # noqa: E402
from sluice.v1 import job_pb2 as pb  # noqa: E402
from sluice.v1 import worker_gateway_pb2 as gw  # noqa: E402
from sluice.v1 import worker_gateway_pb2_grpc as gw_grpc  # noqa: E402
from sluice.worker_credentials import gateway_stub  # noqa: E402

QUEUE = "floor.work"
READY = "ready"


# -- the control plane's part: SubmitJob, WatchJob, RunJob ---------------------------------


class FloorControlPlane(api_grpc.ExecutionServiceServicer, gw_grpc.WorkerGatewayServicer):
    """The public API's and the gateway's traffic, with the events kept in memory."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel) -> None:
        self._channel = channel
        self._events: dict[str, list[pb.JobEvent]] = {}
        self._ended: list[pb.Job] = []
        self._changed: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def _add(self, job_id: str, **event: object) -> None:
        events = self._events[job_id]
        events.append(pb.JobEvent(job_id=job_id, seq=len(events) + 1, **event))
        self._changed.pop(job_id, asyncio.Event()).set()

    async def SubmitJob(self, request: api.SubmitJobRequest,
                        context: grpc.aio.ServicerContext) -> api.SubmitJobResponse:
        job_id = uuid.uuid4().hex
        self._events[job_id] = []
        self._add(job_id, state_change=pb.StateChange(state=pb.JOB_STATE_QUEUED))
        await self._channel.default_exchange.publish(
            aio_pika.Message(job_id.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=QUEUE)
        return api.SubmitJobResponse(job=pb.Job(id=job_id, state=pb.JOB_STATE_QUEUED,
                                                language=request.language))

    async def WatchJob(self, request: api.WatchJobRequest,
                       context: grpc.aio.ServicerContext) -> None:
        sent = request.after_seq
        while True:
            changed = self._changed[request.job_id]
            events = self._events[request.job_id]
            for event in events[sent:]:
                await context.write(event)
                sent = event.seq
                if (event.HasField("state_change")
                        and event.state_change.state == pb.JOB_STATE_SUCCEEDED):
                    del self._events[request.job_id]
                    return
            await changed.wait()

    async def ListJobs(self, request: api.ListJobsRequest,
                       context: grpc.aio.ServicerContext) -> api.ListJobsResponse:
        start = int(request.page_token or 0)
        end = start + (request.page_size or 100)
        page = api.ListJobsResponse(jobs=self._ended[start:end])
        if end < len(self._ended):
            page.next_page_token = str(end)
        return page

    async def RunJob(self, request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        claim = (await context.read()).claim
        self._add(claim.job_id, state_change=pb.StateChange(state=pb.JOB_STATE_RUNNING,
                                                            attempt=1))
        await context.write(gw.RunJobResponse(assignment=gw.Assignment(
            job_id=claim.job_id, attempt=1, language="python")))
        while True:
            report = await context.read()
            if report is grpc.aio.EOF:
                return
            if report.HasField("output"):
                self._add(claim.job_id, output=report.output)
            elif report.HasField("result"):
                self._add(claim.job_id, result=report.result)
                self._add(claim.job_id, state_change=pb.StateChange(
                    state=pb.JOB_STATE_SUCCEEDED, attempt=1))
                ended = pb.Job(id=claim.job_id, state=pb.JOB_STATE_SUCCEEDED,
                               result=report.result)
                ended.end_time.GetCurrentTime()
                self._ended.append(ended)
                await context.write(gw.RunJobResponse(result_accepted=gw.ResultAccepted()))
                return


async def control_plane(amqp_url: str, port: int) -> None:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    server = grpc.aio.server()
    servicer = FloorControlPlane(channel)
    api_grpc.add_ExecutionServiceServicer_to_server(servicer, server)
    gw_grpc.add_WorkerGatewayServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(READY, flush=True)
    await server.wait_for_termination()


# -- the worker's part: consume, RunJob, ack --------------------------------------------


async def worker(amqp_url: str, port: int, slots: int, sandboxed: bool) -> None:
    """Consumes, claims, reports and acks as execution_plane/job_runner.py does. With
    `sandboxed`, each job runs for real in a SandboxPool between its assignment and its
    result, and, as the worker does while runs are short, every slot has its next job
    claimed ahead (the claim and the report are outside the slot)."""
    pool = None
    if sandboxed:
        # Started first, as the worker's is: its runners are forked before gRPC has threads.
        pool = SandboxPool(slots=slots)
        await pool.start()
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=4 * slots)
    queue = await channel.declare_queue(QUEUE, durable=True,
                                        arguments={"x-queue-type": "quorum"})
    grpc_channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    # Every gateway call carries a worker token by contract (the floor does not check it).
    gateway = gateway_stub(grpc_channel, "swt_floor")
    claimed = asyncio.Semaphore(2 * slots if sandboxed else slots)
    nothing_ran = pb.Result(verdict=pb.VERDICT_OK, exit_code=0)

    async def run(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        call = gateway.RunJob()
        async with claimed:
            await call.write(gw.RunJobRequest(claim=gw.Claim(
                job_id=message.body.decode(), worker_id="floor")))
            await call.read()  # the assignment
            result = nothing_ran
            if pool is not None:
                outcome = await pool.run_job(_spec(), _discard, asyncio.Event())
                result = result_message(outcome)
        await call.write(gw.RunJobRequest(result=result))
        await call.read()  # the acceptance
        call.cancel()  # as execution_plane/job_runner.py ends its stream
        await message.ack()

    tasks: set[asyncio.Task[None]] = set()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        task = asyncio.create_task(run(message))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await queue.consume(on_message)
    print(READY, flush=True)
    await asyncio.Event().wait()


# -- the caller, and the measurement ------------------------------------------------------


def _start(role: str, amqp_url: str, port: int, slots: int,
           sandboxed: bool = False) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--role", role, "--amqp", amqp_url, "--port", str(port),
         "--slots", str(slots), *(["--sandboxed"] if sandboxed else [])],
        stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    if process.stdout.readline().strip() != READY:
        raise RuntimeError(f"the floor's {role} did not start")
    return process


@dataclass
class FloorStack:
    processes: dict[str, subprocess.Popen[str]]
    stub: api_grpc.ExecutionServiceStub

    async def watched(self, count: int) -> float:
        """Jobs/s of `count` jobs, each submitted and followed by a WatchJob stream."""
        request = _request()

        async def one() -> None:
            job = (await self.stub.SubmitJob(request, metadata=METADATA, timeout=30)).job
            async for event in self.stub.WatchJob(api.WatchJobRequest(job_id=job.id),
                                                  metadata=METADATA):
                if event.HasField("result") and event.result.verdict != pb.VERDICT_OK:
                    raise RuntimeError(f"unexpected result {event.result}")

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        return count / (time.perf_counter() - start)

    async def batch(self, count: int) -> float:
        """Jobs/s of `count` jobs submitted at once and collected with ListJobs every half
        second, timed to the last job's end as the floor recorded it (as bench/sandbox.py
        times the platform's batch caller)."""
        request = _request()
        started = time.time()
        submitted = await asyncio.gather(*(
            self.stub.SubmitJob(request, metadata=METADATA, timeout=30) for _ in range(count)))
        wanted = {response.job.id for response in submitted}
        ends: dict[str, float] = {}
        while len(ends) < count:
            await asyncio.sleep(0.5)
            listing = api.ListJobsRequest(page_size=1000)
            while True:
                page = await self.stub.ListJobs(listing, metadata=METADATA, timeout=30)
                ends.update((job.id, job.end_time.ToNanoseconds() / 1e9)
                            for job in page.jobs if job.id in wanted)
                if not page.next_page_token:
                    break
                listing.page_token = page.next_page_token
        return count / (max(ends.values()) - started)

    async def run(self, caller: str, count: int) -> float:
        return await (self.batch(count) if caller == "batch" else self.watched(count))


METADATA = (("authorization", f"Bearer sk_{uuid.uuid4().hex}"),)


def _request() -> api.SubmitJobRequest:
    return api.SubmitJobRequest(language="python", files=[pb.File(name="main.py",
                                                                  content=TRIVIAL)])


@contextlib.asynccontextmanager
async def floor_stack(slots: int, sandboxed: bool) -> AsyncIterator[FloorStack]:
    from tests.support.broker import RunVhost
    from tests.support.platform import free_port

    vhost = RunVhost()
    await asyncio.to_thread(vhost.__enter__)
    port = free_port()
    processes: dict[str, subprocess.Popen[str]] = {}
    try:
        processes["control plane"] = await asyncio.to_thread(
            _start, "control-plane", vhost.amqp_url(), port, slots)
        processes["worker"] = await asyncio.to_thread(
            _start, "worker", vhost.amqp_url(), port, slots, sandboxed)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield FloorStack(processes, api_grpc.ExecutionServiceStub(channel))
    finally:
        for process in processes.values():
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, 10)
        await asyncio.to_thread(vhost.__exit__, None, None, None)


async def floor_cpu(jobs: int, slots: int, caller: str) -> dict[str, float]:
    """CPU ms per job of each process of the floor, all jobs in flight at once."""
    async with floor_stack(slots, sandboxed=False) as stack:
        await stack.run(caller, max(jobs // 4, 20))
        broker = rabbitmq_pid()
        before = {name: tree_cpu_s(process.pid) for name, process in stack.processes.items()}
        broker_before = tree_cpu_s(broker) if broker else 0.0
        client_before = self_cpu_s()
        throughput = await stack.run(caller, jobs)
        figures = {name: (tree_cpu_s(process.pid) - before[name]) * 1000 / jobs
                   for name, process in stack.processes.items()}
        figures["caller"] = (self_cpu_s() - client_before) * 1000 / jobs
        if broker:
            figures["RabbitMQ (the node)"] = (tree_cpu_s(broker) - broker_before) * 1000 / jobs
        print(f"transport floor, {caller} caller: {throughput:.0f} jobs/s with nothing to run")
        return figures


async def print_floor_cpu(jobs: int, slots: int) -> None:
    sandbox_ms, raw_throughput = await sandbox_cpu(jobs, slots)
    print(f"raw sandboxed runs: {raw_throughput:.1f} jobs/s; CPU ms per job {sandbox_ms:6.2f}")
    for caller in ("watched", "batch"):
        figures = await floor_cpu(jobs, slots, caller)
        print("  CPU ms per job, the contract's traffic and nothing else:")
        for name, cpu_ms in figures.items():
            print(f"    {name:22} {cpu_ms:6.2f}")
        floor_ms = sum(figures.values())
        print(f"    {'total':22} {floor_ms:6.2f}")
        ceiling = sandbox_ms / (sandbox_ms + floor_ms)
        budget = sandbox_ms / 0.8 - sandbox_ms - floor_ms
        print(f"  raw CPU per job / (raw + this floor): {ceiling:.2f}  (the cap on the throughput"
              " ratio while every core is busy, if Sluice's own work were free)")
        print(f"  CPU ms per job left at a ratio of 0.8 for the store, auth, quotas, logs and"
              f" metrics: {budget:.2f}")


async def print_sandboxed_rounds(jobs: int, slots: int, rounds: int) -> None:
    """The floor around real sandboxed runs, in rounds against raw runs (as bench/sandbox.py
    measures the platform): the throughput ratio Sluice would reach if its own work cost
    nothing."""
    async with sandbox_pool(slots) as pool, floor_stack(slots, sandboxed=True) as stack:
        await raw_throughput(pool, slots * WARMUP)
        for caller in ("watched", "batch"):
            await stack.run(caller, slots * WARMUP)
        print(f"the floor around real sandboxed runs ({slots} slots, {jobs} jobs a figure),"
              " jobs/s; each floor figure against the mean of the raw figures around it")
        print("  round     raw before  watched (ratio)   batch (ratio)   raw after")
        watched_ratios, batch_ratios = [], []
        raw = await raw_throughput(pool, jobs)
        for number in range(1, rounds + 1):
            watched = await stack.watched(jobs)
            batch = await stack.batch(jobs)
            after = await raw_throughput(pool, jobs)
            mean = (raw + after) / 2
            watched_ratios.append(watched / mean)
            batch_ratios.append(batch / mean)
            print(f"  {number:5d}   {raw:10.1f} {watched:8.1f} ({watched / mean:.2f})"
                  f" {batch:9.1f} ({batch / mean:.2f}) {after:11.1f}")
            raw = after
        for caller, ratios in (("watched", watched_ratios), ("batch", batch_ratios)):
            print(f"  floor, {caller + ':':8} median {statistics.median(ratios):.2f}"
                  f" (min {min(ratios):.2f}, max {max(ratios):.2f}) of raw: the ceiling on the"
                  " platform's ratio (target >= 0.80)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=0,
                        help="also run the floor around real sandboxed runs, in this many"
                             " throughput rounds against raw runs")
    parser.add_argument("--role", choices=("control-plane", "worker"), help=argparse.SUPPRESS)
    parser.add_argument("--amqp", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sandboxed", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.role == "control-plane":
        await control_plane(options.amqp, options.port)
        return
    if options.role == "worker":
        await worker(options.amqp, options.port, options.slots, options.sandboxed)
        return

    print(f"load before: {os.getloadavg()[0]:.2f}")
    await print_floor_cpu(options.jobs, options.slots)
    if options.rounds:
        await print_sandboxed_rounds(options.jobs, options.slots, options.rounds)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    uvloop.run(main())
