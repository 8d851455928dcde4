"""The store's tests run against both backends: SQLite (a file of the test's own) and
PostgreSQL (a database of the test's own on the development server, dropped after)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from control_plane.store.backend import Backend, backend_for
from tests.support.postgres import TestDatabase

OpenBackend = Callable[[], Awaitable[Backend]]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with TestDatabase() as database:
        yield database.url


@pytest.fixture
async def open_backend(store_url: str) -> AsyncIterator[OpenBackend]:
    """Opens backends on the test's store (each one a control plane of its own); closes
    them at the end."""
    opened: list[Backend] = []

    async def open_one() -> Backend:
        backend = backend_for(store_url)
        await backend.open()
        opened.append(backend)
        return backend

    yield open_one
    for backend in opened:
        await backend.close()


@pytest.fixture
async def db(open_backend: OpenBackend) -> Backend:
    return await open_backend()
