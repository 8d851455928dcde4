"""The store's boundary with its database: what a store function gets, and what runs it.

Store functions are synchronous `fn(tx)`, run atomically by `Backend.run(fn)`; `tx` is
this module's Tx whichever database is behind it, so no driver type reaches a caller:
SQLite (control_plane/store/database.py, the embedded default) or PostgreSQL
(control_plane/store/postgres.py, for several control planes on several machines).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from control_plane.store.dialect import Dialect

if TYPE_CHECKING:
    from sluice.settings import Settings

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]
# Called on the event loop with (job id, seq) of an event stored by any process; job id
# None when some may have been missed (the listener reconnected): wake every watcher.
JobEventCallback = Callable[[str | None, int], None]
# Called on the event loop with the id of a job whose stdin any process stored; None when
# some may have been missed.
JobStdinCallback = Callable[[str | None], None]


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """One transaction. SQL uses `?` (or `:name` with a mapping) placeholders."""

    dialect: Dialect

    def execute(self, sql: str, params: Params = ()) -> Cursor: ...

    def executemany(self, sql: str, params: Sequence[Params]) -> None: ...


class Backend(Protocol):
    dialect: Dialect
    # What open() applied (control_plane/store/migrations.py's Migration), oldest first.
    migrations_applied: list[Any]

    async def open(self) -> None:
        """Connects and brings the schema up to date (migrations, under a lock)."""

    async def run(self, fn: Callable[[Tx], T]) -> T:
        """Runs fn(tx) atomically; returns once committed."""

    async def close(self) -> None: ...

    async def listen_job_events(self, on_event: JobEventCallback,
                                on_stdin: JobStdinCallback | None = None) -> None:
        """Calls on_event for every job event written by any process (and on_stdin for
        every piece of an interactive job's stdin), until cancelled; returns at once when
        this backend cannot tell (the caller polls instead)."""


def backend_for(url: str, *, pool_size: int = 8) -> Backend:
    """The backend SLUICE_STORE_URL names: sqlite:///PATH or postgresql://USER@HOST/DB."""
    if url.startswith("sqlite:///"):
        from pathlib import Path

        from control_plane.store.database import Database

        return Database(Path(url[len("sqlite:///"):]))
    if url.startswith(("postgresql://", "postgres://")):
        from control_plane.store.postgres import PostgresDatabase

        return PostgresDatabase(url, pool_size=pool_size)
    raise ValueError(f"SLUICE_STORE_URL={url!r}: give sqlite:///PATH or "
                     "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB")


async def open_store(settings: Settings) -> Backend:
    """The store SLUICE_STORE_URL names, open and migrated."""
    backend = backend_for(settings.store_url, pool_size=settings.store_pool_size)
    await backend.open()
    return backend


def redacted(url: str) -> str:
    """The store URL fit for a log line: without its password."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)
