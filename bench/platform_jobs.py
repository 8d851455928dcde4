"""One job through the whole platform, as both platform benchmarks (sandbox.py,
platform_cpu.py) time it; and the quantiles the newer benchmarks report."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sluice.client import SluiceClient
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb


async def python_job_runner(client: SluiceClient,
                            source: bytes) -> Callable[[], Awaitable[None]]:
    """Waits until a worker has registered its languages, then returns a function that
    submits one python job of `source` and waits for its OK result."""
    request = api.SubmitJobRequest(language="python",
                                   files=[pb.File(name="main.py", content=source)])
    async with asyncio.timeout(120):
        while not await client.languages():
            await asyncio.sleep(0.2)

    async def one() -> None:
        job = await client.submit(request)
        result = await client.result(job.id, within_s=120)
        if result.verdict != pb.VERDICT_OK:
            raise RuntimeError(f"platform job failed: {result}")

    return one


def quantile(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted samples (nearest rank)."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
