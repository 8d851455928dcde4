"""Fixtures: the run's own RabbitMQ vhost, and real platforms inside it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sluice.client import SluiceClient
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.support.broker import RunVhost
from tests.support.platform import Platform


@pytest.fixture(scope="session")
def vhost() -> Iterator[RunVhost]:
    with RunVhost() as vhost:
        yield vhost


@pytest.fixture(scope="session")
def platform(vhost: RunVhost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Shared by the tests that do not break it: one control plane, one two-slot worker."""
    workdir = tmp_path_factory.mktemp("platform")
    stack = Platform(workdir, vhost.amqp_url(), prefix="shared",
                     extra_env={"SLUICE_WORKER_SLOTS": "2"})
    stack.start_control_plane()
    stack.start_worker()
    try:
        yield stack
    finally:
        stack.stop()


def wait_for_languages(stack: Platform, key: str, timeout_s: float = 60) -> None:
    async def poll() -> None:
        async with SluiceClient(stack.api_target, key, settings=stack.client_settings) as client:
            async with asyncio.timeout(timeout_s):
                while not await client.languages():
                    await asyncio.sleep(0.2)

    asyncio.run(poll())


@pytest.fixture(scope="session")
def tenant_key(platform: Platform) -> str:
    key = platform.create_tenant(f"team-a-{uuid.uuid4().hex[:6]}")
    wait_for_languages(platform, key)
    return key


@pytest.fixture(scope="session")
def other_tenant_key(platform: Platform) -> str:
    return platform.create_tenant(f"team-b-{uuid.uuid4().hex[:6]}")


@pytest.fixture
async def client(platform: Platform, tenant_key: str) -> AsyncIterator[SluiceClient]:
    async with SluiceClient(platform.api_target, tenant_key) as c:
        yield c


@pytest.fixture
async def other_client(platform: Platform, other_tenant_key: str) -> AsyncIterator[SluiceClient]:
    async with SluiceClient(platform.api_target, other_tenant_key) as c:
        yield c


def python_job(source: str, **fields: object) -> api.SubmitJobRequest:
    return api.SubmitJobRequest(language="python",
                                files=[pb.File(name="main.py", content=source.encode())],
                                **fields)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
