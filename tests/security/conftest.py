"""Fixtures for the attack tests: real sandbox pools, with a secret in the worker's env."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from execution_plane.sandbox import SandboxPool
from tests.sandbox.harness import Ran, RunJob, run

# Put where a careless sandbox would leak it: the service's environment.
WORKER_SECRET = "sluice-canary-" + secrets.token_hex(8)


@pytest.fixture(scope="session")
async def pool() -> AsyncIterator[SandboxPool]:
    planted = {
        "SLUICE_TEST_SECRET": WORKER_SECRET,
        "SLUICE_AMQP_URL": f"amqp://guest:{WORKER_SECRET}@127.0.0.1:5672/",
    }
    saved = {name: os.environ.get(name) for name in planted}
    os.environ.update(planted)
    try:
        sandbox = SandboxPool(slots=2)
        await sandbox.start()  # the runners start now, with the secret in the environment
    finally:
        for name, value in saved.items():  # other tests' settings must not see it
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield sandbox
    await sandbox.close()


@pytest.fixture(scope="session")
async def solo_pool() -> AsyncIterator[SandboxPool]:
    """One slot, so consecutive jobs are known to share it."""
    sandbox = SandboxPool(slots=1)
    await sandbox.start()
    yield sandbox
    await sandbox.close()


@pytest.fixture
def run_job(pool: SandboxPool) -> RunJob:
    async def run_on_pool(language: str, source: str | bytes, **kwargs: Any) -> Ran:
        return await run(pool, language, source, **kwargs)

    return run_on_pool
