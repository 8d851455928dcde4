"""The four fault drills, each with the platform it runs against and the fault it inflicts.

A drill's platform reaches its own RabbitMQ node (PrivateBroker) through a TCP proxy, so
the broker can be restarted and the network cut without touching anyone else's run.
Used by tests/faults/test_drills.py (small, in CI) and bench/drill.py (larger, printing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sluice.client import SluiceClient
from tests.conftest import wait_for_languages
from tests.support.drills import DrillReport, run_drill
from tests.support.platform import Platform
from tests.support.private_broker import PrivateBroker
from tests.support.tcp_proxy import TcpProxy


@dataclass
class DrillStack:
    broker: PrivateBroker
    proxy: TcpProxy
    platform: Platform
    client: SluiceClient

    async def close(self) -> None:
        await self.client.close()
        await asyncio.to_thread(self.platform.stop)
        await self.proxy.close()


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


Fault = Callable[[DrillStack], Awaitable[None]]


async def kill_workers(stack: DrillStack) -> None:
    """SIGKILL each worker mid-stream and start a fresh one in its place."""
    for name in [n for n in stack.platform.processes if n.startswith("worker-")]:
        await asyncio.to_thread(stack.platform.kill, name)
        await asyncio.to_thread(stack.platform.start_worker)  # mints its token with the CLI
        await asyncio.sleep(1.0)


async def restart_broker(stack: DrillStack) -> None:
    await asyncio.to_thread(stack.broker.stop_app)
    await asyncio.sleep(2.0)
    await asyncio.to_thread(stack.broker.start_app)


async def cut_network(stack: DrillStack) -> None:
    await stack.proxy.cut()
    await asyncio.sleep(3.0)
    await stack.proxy.mend()


@dataclass(frozen=True)
class Drill:
    name: str
    fault: Fault
    env: dict[str, str] = field(default_factory=dict)
    recovery: bool = False
    job_sleep_s: float = 0.1
    job_share: float = 1.0  # of the run's job count: the poison drill's jobs run longer


DRILLS = {
    drill.name: drill for drill in (
        Drill("workers-killed", kill_workers),
        Drill("broker-restart", restart_broker),
        Drill("network-cut", cut_network),
        # One attempt only: every job a killed worker was running is dead-lettered at once,
        # and only the recovery service's replay can finish it.
        Drill("poison-replay", kill_workers, recovery=True, job_sleep_s=0.3, job_share=0.5,
              env={"SLUICE_MAX_ATTEMPTS": "1", "SLUICE_RECOVERY_INTERVAL_S": "1",
                   "SLUICE_RECOVERY_BACKOFF_S": "0"}),
    )
}


async def perform(drill: Drill, broker: PrivateBroker, workdir: Path, *, jobs: int,
                  rate: float = 50.0, workers: int = 2,
                  stacks: list[DrillStack] | None = None) -> tuple[DrillReport, DrillStack]:
    """Runs one drill on a new platform; the caller closes the stack (via `stacks`)."""
    stack = await make_stack(broker, workdir, workers=workers, env=drill.env,
                             recovery=drill.recovery)
    if stacks is not None:
        stacks.append(stack)

    async def fault() -> None:
        await drill.fault(stack)

    report = await run_drill(drill.name, stack.client, fault,
                             jobs=max(1, int(jobs * drill.job_share)), rate=rate,
                             sleep_s=drill.job_sleep_s)
    return report, stack
