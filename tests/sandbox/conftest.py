"""Fixtures for tests that run programs through the real sandbox (no mocks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from execution_plane.sandbox import SandboxPool
from tests.sandbox.harness import Ran, RunJob, run


@pytest.fixture(scope="session")
async def pool() -> AsyncIterator[SandboxPool]:
    sandbox = SandboxPool(slots=2)
    await sandbox.start()
    yield sandbox
    await sandbox.close()


@pytest.fixture
def run_job(pool: SandboxPool) -> RunJob:
    async def run_on_pool(language: str, source: str | bytes, **kwargs: Any) -> Ran:
        return await run(pool, language, source, **kwargs)

    return run_on_pool
