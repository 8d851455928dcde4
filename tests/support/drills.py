"""Fault drills: submit a stream of jobs, break something on purpose, count what survives.

Shared by tests/faults (small sizes, in CI) and bench/drill.py (larger, printing figures).
A job is *accepted* when SubmitJob answered with it; the promise is that every accepted job
reaches one terminal state, once, with its own output.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from sluice.client import SluiceClient
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb

Fault = Callable[[], Awaitable[None]]


@dataclass
class DrillReport:
    name: str
    accepted: int = 0
    refused: int = 0  # SubmitJob said UNAVAILABLE: not accepted, so not the platform's to run
    succeeded: int = 0
    wrong_output: int = 0
    duplicated: int = 0  # more than one terminal state, or a second run after success
    lost: int = 0  # accepted but not terminal in time
    recovered: int = 0  # needed a second attempt or a replay, and finished
    seconds_to_drain: float = 0.0  # from the end of the fault until every job was terminal
    seconds_to_api: float = -1.0  # from the end of the fault until SubmitJob accepted again
    seconds_to_run: float = -1.0  # from the end of the fault until a worker started a job
    problems: list[str] = field(default_factory=list)
    start_times: list[float] = field(default_factory=list)  # each job's last start, wall clock

    HEADER = (f"{'drill':<18}{'accepted':>9}{'refused':>8}{'ok':>6}{'wrong':>6}"
              f"{'dup':>5}{'lost':>5}{'recovered':>10}{'api s':>7}{'runs s':>7}{'drain s':>9}")

    def row(self) -> str:
        return (f"{self.name:<18}{self.accepted:>9}{self.refused:>8}{self.succeeded:>6}"
                f"{self.wrong_output:>6}{self.duplicated:>5}{self.lost:>5}{self.recovered:>10}"
                f"{self.seconds_to_api:>7.1f}{self.seconds_to_run:>7.1f}"
                f"{self.seconds_to_drain:>9.1f}")


def drill_job(index: int, tag: str, sleep_s: float) -> api.SubmitJobRequest:
    script = f'echo "{tag} job {index}"\nsleep {sleep_s}\necho "{tag} done {index}"\n'
    return api.SubmitJobRequest(language="bash",
                                files=[pb.File(name="main.sh", content=script.encode())],
                                labels={"drill": tag})


def expected_output(index: int, tag: str) -> bytes:
    return f"{tag} job {index}\n{tag} done {index}\n".encode()


async def _submit_all(client: SluiceClient, count: int, rate: float, tag: str, sleep_s: float,
                      accepted: dict[str, int], report: DrillReport) -> None:
    async def one(index: int) -> None:
        try:
            job = await client.submit(drill_job(index, tag, sleep_s), deadline_s=30)
            accepted[job.id] = index
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                report.problems.append(f"submit {index}: {exc.code().name} {exc.details()}")
            report.refused += 1

    start = time.monotonic()
    tasks = []
    for index in range(count):
        delay = start + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)


async def _verify(client: SluiceClient, accepted: dict[str, int], tag: str,
                  report: DrillReport, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    pending = set(accepted)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            job = await client.get(job_id)
            if job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED,
                             pb.JOB_STATE_CANCELLED):
                pending.discard(job_id)
        if pending:
            await asyncio.sleep(0.5)
    report.lost = len(pending)
    for job_id in pending:
        job = await client.get(job_id)
        report.problems.append(f"job {job_id} still {pb.JobState.Name(job.state)}"
                               f" ({job.state_reason})")
    for job_id, index in accepted.items():
        if job_id in pending:
            continue
        job = await client.get(job_id)
        if job.HasField("start_time"):
            report.start_times.append(job.start_time.ToNanoseconds() / 1e9)
        events = await all_events(client, job_id)
        terminal = [e for e in events if e.HasField("state_change")
                    and e.state_change.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED,
                                                 pb.JOB_STATE_CANCELLED)]
        runs = [e for e in events if e.HasField("state_change")
                and e.state_change.state == pb.JOB_STATE_RUNNING]
        if len(terminal) != 1 or any(e.seq > terminal[0].seq for e in runs):
            report.duplicated += 1
            report.problems.append(f"job {job_id}: {len(terminal)} terminal states")
        if job.state == pb.JOB_STATE_SUCCEEDED and job.result.stdout == expected_output(
                index, tag):
            report.succeeded += 1
        else:
            report.wrong_output += 1
            report.problems.append(f"job {job_id}: {pb.JobState.Name(job.state)} "
                                   f"{job.result.stdout!r} {job.state_reason}")
        if len(runs) > 1:
            report.recovered += 1


_FINAL = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)


async def all_events(client: SluiceClient, job_id: str) -> list[pb.JobEvent]:
    """A watch ends at DEAD_LETTERED too; a replayed job's life goes on after it."""
    events: list[pb.JobEvent] = []
    while True:
        more = [e async for e in client.watch(job_id, events[-1].seq if events else 0)]
        if not more:
            return events
        events.extend(more)
        last = more[-1]
        if last.HasField("state_change") and last.state_change.state in _FINAL:
            return events


async def _probe_after(client: SluiceClient, tag: str, within_s: float) -> str | None:
    """Submits a probe until one is accepted: the API takes jobs again. It is then checked
    with the others, so a job submitted after the fault must run too."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            return (await client.submit(drill_job(-1, tag, 0), deadline_s=10)).id
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.1)
    return None


async def run_drill(name: str, client: SluiceClient, fault: Fault, *, jobs: int,
                    rate: float = 50.0, sleep_s: float = 0.1, fault_after_s: float = 1.0,
                    drain_within_s: float = 180.0) -> DrillReport:
    """Submits `jobs` jobs at `rate`/s; `fault` runs `fault_after_s` into the stream."""
    report = DrillReport(name)
    tag = f"{name}-{time.time_ns()}"
    accepted: dict[str, int] = {}
    submitting = asyncio.create_task(
        _submit_all(client, jobs, rate, tag, sleep_s, accepted, report))
    await asyncio.sleep(fault_after_s)
    await fault()
    fault_ended = time.monotonic()
    fault_ended_wall = time.time()
    probe = await _probe_after(client, tag, drain_within_s)
    if probe is not None:
        accepted[probe] = -1
        report.seconds_to_api = time.monotonic() - fault_ended
    else:
        report.problems.append("SubmitJob never accepted a job after the fault")
    await submitting
    report.accepted = len(accepted)
    await _verify(client, accepted, tag, report, drain_within_s)
    starts = [t for t in report.start_times if t >= fault_ended_wall]
    if starts:
        report.seconds_to_run = min(starts) - fault_ended_wall
    else:
        report.problems.append("no job started after the fault")
    report.seconds_to_drain = time.monotonic() - fault_ended
    return report
