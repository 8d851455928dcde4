"""The control-plane failover drill: two control planes on one store, two workers whose
SLUICE_GATEWAY_TARGET lists both gateways, jobs watched through both APIs; one control
plane is SIGKILLed while the jobs stream. Every accepted job must end once with its own
output, and every watcher of the dead replica must go on at the other, by after_seq, with
no gap and no duplicate.

Shared by tests/faults/test_control_plane_failover.py (100 jobs) and bench/failover.py
(more, printing figures). The store is the Platform's, whichever backend it uses.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from sluice.client import SluiceClient
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import wait_for_languages
from tests.support.admin import TERMINAL_ACTIONS, AdminClient
from tests.support.platform import Platform, free_port

LINES = 6
LINE_SLEEP_S = 0.3
WORKER_SLOTS = 4
# Watchers of the killed replica that must still be streaming when it dies.
STREAMING_AT_KILL = 4
_FINAL = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED,
          pb.JOB_STATE_DEAD_LETTERED)


def failover_job(index: int, tag: str) -> api.SubmitJobRequest:
    script = (f'for k in $(seq 1 {LINES}); do echo "{tag} job {index} line $k"; '
              f"sleep {LINE_SLEEP_S}; done\n")
    return api.SubmitJobRequest(language="bash",
                                files=[pb.File(name="main.sh", content=script.encode())],
                                labels={"drill": "failover"})


def expected_output(index: int, tag: str) -> bytes:
    return "".join(f"{tag} job {index} line {k}\n" for k in range(1, LINES + 1)).encode()


@dataclass
class Watcher:
    """One job's WatchJob, started on one replica and moved to the other if it dies."""
    job_id: str
    index: int
    replica: int
    events: list[pb.JobEvent] = field(default_factory=list)
    moves: int = 0
    done: bool = False

    @property
    def streaming(self) -> bool:
        return not self.done and any(e.HasField("output") for e in self.events)


@dataclass
class FailoverReport:
    accepted: int = 0
    succeeded: int = 0
    wrong_output: int = 0
    duplicated: int = 0  # a terminal state twice, or an attempt started twice
    lost: int = 0  # not terminal in time
    rerun: int = 0  # needed another attempt (the lease-loss path) and finished
    resumed_streams: int = 0  # attempts that went on over another gateway (worker logs)
    watchers_moved: int = 0  # watchers of the killed replica that went on at the other
    streaming_at_kill: int = 0  # of those, the ones mid-output when it died
    seconds_to_drain: float = 0.0
    problems: list[str] = field(default_factory=list)

    HEADER = (f"{'accepted':>9}{'ok':>6}{'wrong':>6}{'dup':>5}{'lost':>5}{'rerun':>6}"
              f"{'resumed':>8}{'moved':>6}{'mid-out':>8}{'drain s':>9}")

    def row(self) -> str:
        return (f"{self.accepted:>9}{self.succeeded:>6}{self.wrong_output:>6}"
                f"{self.duplicated:>5}{self.lost:>5}{self.rerun:>6}{self.resumed_streams:>8}"
                f"{self.watchers_moved:>6}{self.streaming_at_kill:>8}"
                f"{self.seconds_to_drain:>9.1f}")


async def _follow(watcher: Watcher, clients: list[SluiceClient], within_s: float) -> None:
    async with asyncio.timeout(within_s):
        while True:
            after = watcher.events[-1].seq if watcher.events else 0
            try:
                async for event in clients[watcher.replica].watch(watcher.job_id, after,
                                                                  reconnect=False):
                    watcher.events.append(event)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
            last = watcher.events[-1] if watcher.events else None
            if (last is not None and last.HasField("state_change")
                    and last.state_change.state in _FINAL):
                watcher.done = True
                return
            # The replica went away mid-stream: on at the other, from the last seq seen.
            watcher.replica = 1 - watcher.replica
            watcher.moves += 1


def _check_watch(watcher: Watcher, tag: str, report: FailoverReport) -> None:
    seqs = [event.seq for event in watcher.events]
    if seqs != list(range(1, len(seqs) + 1)):
        report.problems.append(f"job {watcher.job_id}: watched seqs {seqs} have a gap or a"
                               " duplicate")
    terminal = [e for e in watcher.events
                if e.HasField("state_change") and e.state_change.state in _FINAL]
    if len(terminal) != 1:
        report.duplicated += 1
        report.problems.append(f"job {watcher.job_id}: {len(terminal)} terminal events")
    starts = [i for i, e in enumerate(watcher.events)
              if e.HasField("state_change") and e.state_change.state == pb.JOB_STATE_RUNNING]
    last_run = watcher.events[starts[-1]:] if starts else []
    streamed = b"".join(e.output.data for e in last_run
                        if e.HasField("output") and e.output.stream == pb.OUTPUT_STREAM_STDOUT)
    if streamed != expected_output(watcher.index, tag):
        report.problems.append(f"job {watcher.job_id}: watched output {streamed!r}")


async def _check_trail(admin: AdminClient, job_id: str, report: FailoverReport) -> None:
    trail = await admin.audit(job_id=job_id)
    started = [int(e.detail["attempt"]) for e in trail if e.action == "started"]
    ended = [e.action for e in trail if e.action in TERMINAL_ACTIONS]
    if len(set(started)) != len(started) or ended != ["succeeded"]:
        report.duplicated += 1
        report.problems.append(f"job {job_id}: started attempts {started}, ended {ended}")
    if len(started) > 1:
        report.rerun += 1


async def run_failover_drill(workdir: Path, amqp_url: str, *, prefix: str, jobs: int,
                             drain_within_s: float = 240.0,
                             store: str | None = None) -> FailoverReport:
    report = FailoverReport()
    second_api, second_gateway = free_port(), free_port()
    platform = Platform(workdir, amqp_url, prefix=prefix, store=store,
                        extra_env={"SLUICE_WORKER_SLOTS": str(WORKER_SLOTS),
                                   # every job is watched at once, all by one tenant
                                   "SLUICE_MAX_WATCHES_PER_TENANT": str(2 * jobs)})
    platform.env["SLUICE_GATEWAY_TARGET"] = (
        f"ipv4:127.0.0.1:{platform.gateway_port},127.0.0.1:{second_gateway}")
    clients: list[SluiceClient] = []
    try:
        await asyncio.to_thread(platform.start_control_plane)
        second = await asyncio.to_thread(platform.start_another_control_plane,
                                         api_port=second_api, gateway_port=second_gateway)
        workers = [platform.start_worker(), platform.start_worker()]
        key = await asyncio.to_thread(platform.create_tenant, "failover")
        await asyncio.to_thread(wait_for_languages, platform, key)
        clients = [SluiceClient(platform.api_target, key), SluiceClient(second, key)]

        tag = f"failover-{time.time_ns()}"
        watchers = []
        for index in range(jobs):
            job = await clients[index % 2].submit(failover_job(index, tag))
            watchers.append(Watcher(job.id, index, index % 2))
        report.accepted = len(watchers)
        following = [asyncio.create_task(_follow(w, clients, drain_within_s))
                     for w in watchers]

        # Killed while its watchers are mid-output (and so the workers' streams on its
        # gateway are mid-job).
        async with asyncio.timeout(120):
            while sum(w.streaming for w in watchers if w.replica == 0) < STREAMING_AT_KILL:
                await asyncio.sleep(0.05)
        mid_output = [w for w in watchers if w.replica == 0 and not w.done]
        report.streaming_at_kill = sum(w.streaming for w in mid_output)
        await asyncio.to_thread(platform.kill, "control-plane")
        killed_at = time.monotonic()

        outcomes = await asyncio.gather(*following, return_exceptions=True)
        report.seconds_to_drain = time.monotonic() - killed_at
        for watcher, outcome in zip(watchers, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                report.lost += 1
                report.problems.append(f"job {watcher.job_id}: watch failed: {outcome!r}")
                continue
            _check_watch(watcher, tag, report)
        report.watchers_moved = sum(w.moves > 0 for w in mid_output)
        not_moved = [w.job_id for w in mid_output if w.moves == 0 and w.streaming]
        if not_moved:
            report.problems.append(f"watchers of the killed replica never moved: {not_moved}")

        async with AdminClient(second, platform.admin_key) as admin:
            for watcher in watchers:
                job = await clients[1].get(watcher.job_id)
                if job.state not in _FINAL:
                    report.lost += 1
                    report.problems.append(f"job {job.id} still {pb.JobState.Name(job.state)}")
                    continue
                if (job.state == pb.JOB_STATE_SUCCEEDED
                        and job.result.stdout == expected_output(watcher.index, tag)):
                    report.succeeded += 1
                else:
                    report.wrong_output += 1
                    report.problems.append(f"job {job.id}: {pb.JobState.Name(job.state)}"
                                           f" {job.result.stdout!r} {job.state_reason}")
                await _check_trail(admin, watcher.job_id, report)
        report.resumed_streams = sum(platform.log(name).count('"gateway_stream_resumed"')
                                     for name in workers)
        return report
    finally:
        for client in clients:
            await client.close()
        await asyncio.to_thread(platform.stop)
