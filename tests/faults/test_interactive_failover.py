"""A control plane dies while interactive jobs run: their stdin goes on through the other.

Every job is attached through the second control plane's API, and the workers' streams
are spread over both gateways; the first control plane is SIGKILLed mid-conversation. The
attempts whose stream it held resume on the second gateway, which sends the stdin from the
byte each worker says it has: every line reaches its program once, in order, including the
lines sent while no gateway held the attempt. Jobs with test cases, mid-cases at the kill,
end with every case's result once, in order (the resumed stream sends the ones the store
lacks)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from sluice.client import Attachment, SluiceClient
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job, wait_for_languages
from tests.e2e.test_interactive import ECHO_UPPER, read_stdout_until, rest_of
from tests.support.broker import RunVhost
from tests.support.platform import Platform, free_port

JOBS = 6
CASE_JOBS = 6
CASES = 6
SLOW_CASE = "import sys, time\ntime.sleep(0.3)\nprint(sys.stdin.read().strip()[::-1])\n"
BEFORE = [b"one", b"two"]
AFTER = [b"three", b"four", b"five"]


async def _talk(attachment: Attachment, lines: list[bytes]) -> None:
    for line in lines:
        await attachment.send(line + b"\n")
        await read_stdout_until(attachment, line.upper() + b"\n", within_s=90)


async def _first_case(client: SluiceClient, job_id: str) -> None:
    async with asyncio.timeout(90):
        async for event in client.watch(job_id):
            if event.HasField("test_case_result"):
                return


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_stdin_survives_the_gateway_of_its_worker(store: str, vhost: RunVhost,
                                                        tmp_path: Path) -> None:
    second_api, second_gateway = free_port(), free_port()
    platform = Platform(tmp_path, vhost.amqp_url(), prefix=f"ia-{uuid.uuid4().hex[:6]}",
                        store=store, extra_env={"SLUICE_WORKER_SLOTS": str(JOBS + CASE_JOBS),
                                                "SLUICE_DEFAULT_WALL_TIME_MS": "60000"})
    platform.env["SLUICE_GATEWAY_TARGET"] = (
        f"ipv4:127.0.0.1:{platform.gateway_port},127.0.0.1:{second_gateway}")
    try:
        await asyncio.to_thread(platform.start_control_plane)
        second = await asyncio.to_thread(platform.start_another_control_plane,
                                         api_port=second_api, gateway_port=second_gateway)
        platform.start_worker()
        key = await asyncio.to_thread(platform.create_tenant, "interactive")
        await asyncio.to_thread(wait_for_languages, platform, key)
        async with SluiceClient(second, key) as client:
            jobs = [await client.submit(python_job(ECHO_UPPER, interactive=True))
                    for _ in range(JOBS)]
            case_jobs = [await client.submit(python_job(SLOW_CASE, test_cases=[
                pb.TestCase(name=f"case-{i}", stdin=f"abc{i}".encode(),
                            expected_stdout=f"{i}cba\n".encode()) for i in range(CASES)]))
                for _ in range(CASE_JOBS)]
            attachments = [await client.attach(job.id) for job in jobs]
            await asyncio.gather(*(_talk(a, BEFORE) for a in attachments))
            await asyncio.gather(*(_first_case(client, job.id) for job in case_jobs))
            await asyncio.to_thread(platform.kill, "control-plane")
            killed_at = time.monotonic()
            await asyncio.gather(*(_talk(a, AFTER) for a in attachments))
            answered_s = time.monotonic() - killed_at
            for attachment in attachments:
                await attachment.close_stdin()
            await asyncio.gather(*(rest_of(a) for a in attachments))
            expected = b"".join(line.upper() + b"\n" for line in BEFORE + AFTER) + b"eof\n"
            for job in jobs:
                done = await client.get(job.id)
                assert done.result.verdict == pb.VERDICT_OK, done.result
                assert done.result.stdout == expected
                assert done.attempt == 1  # went on, not run again
            for job in case_jobs:
                done = await client.wait(job.id, within_s=120)
                assert done.result.verdict == pb.VERDICT_OK, done.result
                assert [c.name for c in done.result.test_results] == [
                    f"case-{i}" for i in range(CASES)]
                assert done.attempt == 1
        resumed_lines = [line for line in platform.log("control-plane-2").splitlines()
                         if '"attempt_resumed"' in line]

        def resumed_of(of: list[pb.Job]) -> int:
            return sum(any(f'"job_id": "{job.id}"' in line for line in resumed_lines)
                       for job in of)

        print(f"{store}: {resumed_of(jobs)} of {JOBS} interactive attempts and "
              f"{resumed_of(case_jobs)} of {CASE_JOBS} mid-cases resumed on the other "
              f"gateway; answered {answered_s:.1f} s after the kill")
        # The workers' streams are spread over both gateways by round robin: some were on
        # the one killed (which of each kind is chance; the checks above hold either way).
        assert resumed_of(jobs) + resumed_of(case_jobs) >= 1
    finally:
        platform.stop()
