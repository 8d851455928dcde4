"""Fault drills against a real RabbitMQ node of the test's own: kill workers, restart the
broker, cut the network, poison jobs. Every accepted job must finish once, correctly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sluice.client import SluiceClient
from tests.conftest import wait_for_languages
from tests.support.drills import DrillReport, run_drill
from tests.support.platform import Platform
from tests.support.private_broker import PrivateBroker
from tests.support.tcp_proxy import TcpProxy

JOBS = 200


@dataclass
class DrillStack:
    broker: PrivateBroker
    proxy: TcpProxy
    platform: Platform
    client: SluiceClient


@pytest.fixture(scope="module")
def broker() -> AsyncIterator[PrivateBroker]:
    node = PrivateBroker()
    node.start()
    yield node
    node.stop()


async def make_stack(broker: PrivateBroker, workdir: Path, *, workers: int = 2,
                     env: dict[str, str] | None = None, recovery: bool = False) -> DrillStack:
    proxy = TcpProxy("127.0.0.1", broker.port)
    await proxy.start()
    # Every service reaches the broker through the proxy, so a drill can cut them all off.
    platform = Platform(workdir, f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
                        prefix=workdir.name,
                        extra_env={"SLUICE_LEASE_TIMEOUT_MS": "3000", "SLUICE_WORKER_SLOTS": "2",
                                   "SLUICE_MAX_ATTEMPTS": "5", **(env or {})})
    await asyncio.to_thread(platform.start_control_plane)
    for _ in range(workers):
        platform.start_worker()
    if recovery:
        platform.start_recovery()
    key = await asyncio.to_thread(platform.create_tenant, "drill-team")
    await asyncio.to_thread(wait_for_languages, platform, key)
    return DrillStack(broker, proxy, platform, SluiceClient(platform.api_target, key))


@pytest.fixture
async def stacks(broker: PrivateBroker, tmp_path: Path) -> AsyncIterator[list[DrillStack]]:
    made: list[DrillStack] = []
    yield made
    for stack in made:
        await stack.client.close()
        await asyncio.to_thread(stack.platform.stop)
        await stack.proxy.close()


def assert_nothing_lost(report: DrillReport) -> None:
    print(DrillReport.HEADER)
    print(report.row())
    assert report.accepted > 0
    assert report.lost == 0, report.problems[:10]
    assert report.duplicated == 0, report.problems[:10]
    assert report.wrong_output == 0, report.problems[:10]
    assert report.succeeded == report.accepted


async def test_drill_workers_killed(broker: PrivateBroker, tmp_path: Path,
                                    stacks: list[DrillStack]) -> None:
    stack = await make_stack(broker, tmp_path, workers=2)
    stacks.append(stack)

    async def kill_workers() -> None:
        for name in ("worker-1", "worker-2"):
            await asyncio.to_thread(stack.platform.kill, name)
            stack.platform.start_worker()
            await asyncio.sleep(1.0)

    report = await run_drill("workers-killed", stack.client, kill_workers, jobs=JOBS)
    assert_nothing_lost(report)
    assert report.refused == 0  # the API never depended on the workers


async def test_drill_broker_restart(broker: PrivateBroker, tmp_path: Path,
                                    stacks: list[DrillStack]) -> None:
    stack = await make_stack(broker, tmp_path)
    stacks.append(stack)

    async def restart_broker() -> None:
        await asyncio.to_thread(broker.stop_app)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(broker.start_app)

    report = await run_drill("broker-restart", stack.client, restart_broker, jobs=JOBS)
    assert_nothing_lost(report)
    # A job submitted after the restart ran: consumers and publishers came back by
    # themselves, no service was restarted.
    assert report.seconds_to_recover >= 0


async def test_drill_network_cut(broker: PrivateBroker, tmp_path: Path,
                                 stacks: list[DrillStack]) -> None:
    stack = await make_stack(broker, tmp_path)
    stacks.append(stack)

    async def cut_network() -> None:
        await stack.proxy.cut()
        await asyncio.sleep(3.0)
        await stack.proxy.mend()

    report = await run_drill("network-cut", stack.client, cut_network, jobs=JOBS)
    assert_nothing_lost(report)
    assert report.seconds_to_recover >= 0


async def test_drill_poisoned_jobs_dead_letter_and_are_replayed(
        broker: PrivateBroker, tmp_path: Path, stacks: list[DrillStack]) -> None:
    # One attempt only: every job a killed worker was running is dead-lettered at once,
    # and only the recovery service's replay can finish it.
    stack = await make_stack(broker, tmp_path, workers=2, recovery=True, env={
        "SLUICE_MAX_ATTEMPTS": "1", "SLUICE_RECOVERY_INTERVAL_S": "1",
        "SLUICE_RECOVERY_BACKOFF_S": "0"})
    stacks.append(stack)

    async def kill_workers() -> None:
        for name in ("worker-1", "worker-2"):
            await asyncio.to_thread(stack.platform.kill, name)
            stack.platform.start_worker()
            await asyncio.sleep(1.0)

    report = await run_drill("poison-replay", stack.client, kill_workers, jobs=JOBS // 2,
                             sleep_s=0.3)
    assert_nothing_lost(report)
    log = stack.platform.log("recovery")
    assert '"replayed"' in log or "dead_letter_replayed" in log
    assert report.rerun > 0  # some jobs really were dead-lettered and came back
